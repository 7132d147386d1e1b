import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A blocking raw-socket HTTP/1.1 client, for tests that must send what no well-behaved client sends
/// (raw 0xFF bytes, 100 KB headers) or must not hold a Swift concurrency thread while a request waits.
public enum RawHTTP {
    /// Connects to 127.0.0.1:`port` and sends `GET target` with a `Host`, the extra `headers` (whole
    /// lines, without CRLF) and `Connection: close`.
    /// - Returns: the connected socket; the caller closes it.
    public static func send(port: UInt16, target: [UInt8], headers: [[UInt8]] = []) throws -> Int32 {
        let fd = try WireClient.connect(port: port)
        var request = Array("GET ".utf8) + target + Array(" HTTP/1.1\r\nHost: 127.0.0.1\r\n".utf8)
        for header in headers { request += header + Array("\r\n".utf8) }
        request += Array("Connection: close\r\n\r\n".utf8)
        _ = WireClient.send(fd, request)
        return fd
    }

    /// `send(port:target:headers:)` for a plain text target.
    public static func send(port: UInt16, _ target: String) throws -> Int32 {
        try self.send(port: port, target: Array(target.utf8))
    }

    /// The status code of the answer on `fd`, or `nil` when the server closed without an HTTP answer
    /// (what a server may do with an oversized request).
    /// - Throws: `TestFailure` when nothing arrives within `timeout` seconds.
    public static func statusCode(_ fd: Int32, timeout: Int = 5) throws -> Int? {
        let received = try self.receive(fd, upTo: 64, timeout: timeout)
        guard received.count >= 12, received.starts(with: Array("HTTP/1.".utf8)) else { return nil }
        return Int(String(decoding: received[9..<12], as: UTF8.self))
    }

    /// The status code of the answer on `fd`, or -1 when there is none within 5 s.
    public static func status(_ fd: Int32) -> Int {
        ((try? self.statusCode(fd)) ?? nil) ?? -1
    }

    /// The whole answer on `fd`, read until the server closes (at most 1 MiB, 5 s per read).
    public static func response(_ fd: Int32) -> String {
        String(decoding: (try? self.receive(fd, upTo: 1 << 20, timeout: 5)) ?? [], as: UTF8.self)
    }

    /// Reads until `limit` bytes arrived or the server closed.
    /// - Throws: `TestFailure` when a read waits longer than `timeout` seconds.
    private static func receive(_ fd: Int32, upTo limit: Int, timeout: Int) throws -> [UInt8] {
        var time = timeval(tv_sec: timeout, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &time, socklen_t(MemoryLayout<timeval>.size))
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while received.count < limit {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count > 0 {
                received += buffer[0..<count]
                continue
            }
            if count < 0 && errno == EINTR { continue }
            if count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                throw TestFailure("no answer within \(timeout) s")
            }
            break
        }
        return received
    }
}
