#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// One datagram to a Unix socket by path: systemd's `sd_notify`, without libsystemd.
public enum NotifyDatagram {
    /// Sends `message` as one datagram to the `AF_UNIX` socket at `path`.
    /// - Parameters:
    ///   - message: the datagram's bytes (for systemd, newline-separated assignments such as `READY=1`).
    ///   - path: a file system path, or `@name` for the abstract namespace (as `NOTIFY_SOCKET` writes it).
    ///   - waits: whether to wait (at most 2 s) when the receiver's queue is full; false: fail with
    ///     EAGAIN at once (for the periodic messages of the epoll loop, which must never block).
    /// - Returns: whether the whole datagram was sent.
    /// - Throws: `SystemError` from `socket` or `sendto`; ENAMETOOLONG when the path does not fit.
    @inline(never)
    @discardableResult
    public static func send(_ message: [UInt8], to path: String, waits: Bool = true) throws(SystemError) -> Bool {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var pathBytes = Array(path.utf8)
        let abstract = pathBytes.first == UInt8(ascii: "@")
        if abstract { pathBytes[0] = 0 }
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard !pathBytes.isEmpty, pathBytes.count < capacity else { throw SystemError("sendto", errno: ENAMETOOLONG) }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: pathBytes) }
        // Abstract names are not NUL-terminated: their length is exact.
        let length = socklen_t(MemoryLayout<sa_family_t>.size + pathBytes.count + (abstract ? 0 : 1))
        let fd = try System.syscall("socket") {
            Glibc.socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        }
        defer { System.close(fd) }
        if waits {
            // At most 2 s behind a full queue: a wedged receiver must not hold the sender (the epmd loop).
            var timeout = timeval(tv_sec: 2, tv_usec: 0)
            _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        }
        let flags = Int32(MSG_NOSIGNAL) | (waits ? 0 : Int32(MSG_DONTWAIT))
        let sent = try withUnsafePointer(to: &address) { pointer throws(SystemError) in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress throws(SystemError) in
                let result = message.withUnsafeBytes { raw in
                    Result { () throws(SystemError) in
                        try System.syscall("sendto") {
                            sendto(fd, raw.baseAddress, raw.count, flags, socketAddress, length)
                        }
                    }
                }
                return try result.get()
            }
        }
        return sent == message.count
    }
}
