import EPMDPosix
import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A swift-log handler that writes C epmd's own lines, so `-d` output stays what operators and OTP's
/// tests know: `epmd: <ctime>: <message>\r\n` on stderr, `epmd: <message>` to syslog in daemon mode.
/// When stderr is the journal (`JOURNAL_STREAM` names it), each line carries journald's `<N>` priority
/// prefix instead of a time stamp (the journal stamps lines itself).
///
/// epmd's debug levels map onto swift-log's: messages C epmd prints always are `notice` or above,
/// `-d` adds `info`, `-d -d` adds `debug`, a third `-d` adds `trace`. Metadata is not printed: the
/// message text is the compatible surface. Each line is one `write(2)`, so lines from several
/// threads never interleave.
public struct EPMDLogHandler: LogHandler {
    /// Where the lines go.
    public enum Sink: Sendable, Equatable {
        /// stderr, in C epmd's format.
        case standardError
        /// stderr when it is the journal: `<N>epmd: <message>\n`.
        case journal
        /// syslog (daemon mode), as C epmd logs with `-daemon`: `epmd: <message>` at ``syslogPriority``.
        case syslog
    }

    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    /// Where lines go.
    public let sink: Sink
    /// The descriptor the `standardError` and `journal` sinks write to (2, except in tests).
    public let descriptor: Int32

    /// - Parameters:
    ///   - sink: where lines go.
    ///   - debugLevel: how many `-d` flags were given.
    ///   - descriptor: the descriptor for the stderr sinks; 2 unless a test reads the lines back.
    public init(sink: Sink, debugLevel: Int, descriptor: Int32 = 2) {
        self.sink = sink
        self.logLevel = Self.threshold(debugLevel: debugLevel)
        self.descriptor = descriptor
    }

    /// The lowest level printed with `debugLevel` times `-d`.
    public static func threshold(debugLevel: Int) -> Logger.Level {
        switch debugLevel {
        case ..<1: .notice
        case 1: .info
        case 2: .debug
        default: .trace
        }
    }

    /// The sink for stderr in this environment: `journal` when `JOURNAL_STREAM` names the device and
    /// inode of `descriptor` (systemd's rule: stderr may since have been redirected elsewhere).
    /// - Parameters:
    ///   - environment: the process environment.
    ///   - descriptor: the stderr descriptor (2, except in tests).
    public static func standardErrorSink(environment: [String: String], descriptor: Int32 = 2) -> Sink {
        guard let stream = environment["JOURNAL_STREAM"], let identity = System.fileIdentity(descriptor) else {
            return .standardError
        }
        return stream == "\(identity.device):\(identity.inode)" ? .journal : .standardError
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { self.metadata[key] }
        set { self.metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        switch self.sink {
        case .standardError, .journal:
            let line = Self.line(
                event.message.description,
                level: event.level,
                sink: self.sink,
                time: System.ctimeNow()
            )
            try? System.writeAll(self.descriptor, line)
        case .syslog:
            System.syslog(priority: Self.syslogPriority, event.message.description)
        }
    }

    /// The bytes written for one message.
    /// - Parameters:
    ///   - message: the message text.
    ///   - level: its level (the journal's `<N>`).
    ///   - sink: `standardError` or `journal` (syslog formats its own lines: `epmd: <message>`).
    ///   - time: the `ctime` text without its newline, for `standardError`.
    /// - Returns: `epmd: <time>: <message>\r\n` for stderr, as C epmd's `dbg_printf`;
    ///   `<N>epmd: <message>\n` for the journal; `epmd: <message>` for syslog.
    public static func line(_ message: String, level: Logger.Level, sink: Sink, time: String) -> [UInt8] {
        switch sink {
        case .standardError: Array("epmd: \(time): \(message)\r\n".utf8)
        case .journal: Array("<\(self.priority(level))>epmd: \(message)\n".utf8)
        case .syslog: Array("epmd: \(message)".utf8)
        }
    }

    /// The priority of every syslog line: C epmd's `dbg_printf` logs all of them at `LOG_ERR` in daemon
    /// mode, whatever their level (the level decides only whether a line is written).
    public static let syslogPriority: Int32 = LOG_ERR

    /// The syslog priority of a level: journald's `<N>`.
    public static func priority(_ level: Logger.Level) -> Int32 {
        switch level {
        case .trace, .debug: LOG_DEBUG
        case .info: LOG_INFO
        case .notice: LOG_NOTICE
        case .warning: LOG_WARNING
        case .error: LOG_ERR
        case .critical: LOG_CRIT
        }
    }
}
