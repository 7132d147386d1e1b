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
/// message text is the compatible surface.
public struct EPMDLogHandler: LogHandler {
    /// Where the lines go.
    public enum Sink: Sendable, Equatable {
        /// stderr, in C epmd's format.
        case standardError
        /// stderr when it is the journal: `<N>epmd: <message>\n`.
        case journal
        /// syslog (daemon mode), as C epmd logs with `-daemon`.
        case syslog
    }

    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    public let sink: Sink

    /// - Parameters:
    ///   - sink: where lines go.
    ///   - debugLevel: how many `-d` flags were given.
    public init(sink: Sink, debugLevel: Int) {
        self.sink = sink
        self.logLevel = Self.threshold(debugLevel: debugLevel)
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

    /// The sink for stderr in this environment: `journal` when `JOURNAL_STREAM` names stderr's device and inode.
    public static func standardErrorSink(environment: [String: String]) -> Sink {
        guard let stream = environment["JOURNAL_STREAM"], let identity = System.fileIdentity(2) else {
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
        case .standardError:
            try? System.writeAll(2, Array("epmd: \(System.ctimeNow()): \(event.message)\r\n".utf8))
        case .journal:
            try? System.writeAll(2, Array("<\(Self.priority(event.level))>epmd: \(event.message)\n".utf8))
        case .syslog:
            System.syslog(priority: Self.priority(event.level), "\(event.message)")
        }
    }

    /// The syslog priority of a level (also journald's `<N>`).
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
