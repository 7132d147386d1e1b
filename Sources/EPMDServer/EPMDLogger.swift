import CEPMDSystem
import EPMDPosix

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// epmd's logging: level-gated messages to stderr as `epmd: <ctime>: <msg>\r\n`, or to syslog
/// when running as a daemon. Level 0 is always printed; `-d` raises the level by one each time.
public struct EPMDLogger: Sendable {
    public enum Sink: Sendable {
        case standardError
        case syslog
        case none
    }

    public var level: Int
    public var sink: Sink

    public init(level: Int = 0, sink: Sink = .standardError) {
        self.level = level
        self.sink = sink
    }

    /// Logs `message()` if `level` is at or below the configured debug level.
    public func log(_ level: Int, _ message: @autoclosure () -> String) {
        guard level <= self.level else { return }
        switch self.sink {
        case .none:
            return
        case .syslog:
            cepmd_syslog(LOG_ERR, message())
        case .standardError:
            var now = time(nil)
            var buffer = [CChar](repeating: 0, count: 64)
            let stamp: String
            if ctime_r(&now, &buffer) != nil {
                stamp = String(
                    decoding: buffer.prefix { $0 != 0 && $0 != 10 }.map { UInt8(bitPattern: $0) },
                    as: UTF8.self
                )
            } else {
                stamp = "?"
            }
            let line = "epmd: \(stamp): \(message())\r\n"
            try? System.writeAll(2, Array(line.utf8))
        }
    }
}
