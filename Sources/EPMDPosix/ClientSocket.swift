#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A blocking TCP client connection (the `-names`/`-kill`/`-stop` client modes, and tests). The
/// descriptor is closed when the value goes away.
public struct ClientSocket: ~Copyable {
    /// The connected descriptor (blocking, close-on-exec).
    public let descriptor: Int32

    private init(descriptor: Int32) {
        self.descriptor = descriptor
    }

    deinit { System.close(self.descriptor) }

    /// Connects to `address`, blocking until the connection is made or refused.
    /// - Parameter address: the peer.
    /// - Returns: the connected socket.
    /// - Throws: `SystemError` from `socket` or `connect`.
    @inline(never)
    public static func connect(to address: SocketAddress) throws(SystemError) -> ClientSocket {
        let fd = try System.syscall("socket") {
            Glibc.socket(address.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        }
        let socket = ClientSocket(descriptor: fd)
        while true {
            let result = address.withSockaddr { Glibc.connect(fd, $0, $1) }
            if result == 0 { return socket }
            let code = errno
            // A connect interrupted by a signal goes on in the background; waiting for it again
            // reports EISCONN once it is made (or the real failure).
            if code == EINTR || code == EALREADY { continue }
            if code == EISCONN { return socket }
            throw SystemError("connect", errno: code)
        }
    }

    /// Sends all of `bytes` (without SIGPIPE), retrying partial sends.
    /// - Throws: `SystemError` when the peer is gone or the send fails.
    @inline(never)
    public func sendAll(_ bytes: [UInt8]) throws(SystemError) {
        var offset = 0
        while offset < bytes.count {
            let start = offset
            let result = bytes.withUnsafeBytes { raw in
                Result { () throws(SystemError) in
                    try System.syscall("send") {
                        Glibc.send(
                            self.descriptor,
                            raw.baseAddress.map { $0 + start },
                            raw.count - start,
                            Int32(MSG_NOSIGNAL)
                        )
                    }
                }
            }
            let sent = try result.get()
            guard sent > 0 else { throw SystemError("send", errno: EPIPE) }
            offset += sent
        }
    }

    /// One `read(2)` of at most `count` bytes.
    /// - Returns: what arrived; empty at end of stream.
    /// - Throws: `SystemError` when the read fails.
    @inline(never)
    public func read(upTo count: Int) throws(SystemError) -> [UInt8] {
        guard count > 0 else { return [] }
        var buffer = [UInt8](repeating: 0, count: count)
        let result = buffer.withUnsafeMutableBytes { raw in
            Result { () throws(SystemError) in
                try System.syscall("read") { Glibc.read(self.descriptor, raw.baseAddress, raw.count) }
            }
        }
        let received = try result.get()
        buffer.removeSubrange(received...)
        return buffer
    }

    /// Reads until the peer closes (or a read fails, which ends the stream as well).
    /// - Returns: every byte that arrived.
    public func readToEnd() -> [UInt8] {
        var result: [UInt8] = []
        while let chunk = try? self.read(upTo: 65536), !chunk.isEmpty {
            result += chunk
        }
        return result
    }
}
