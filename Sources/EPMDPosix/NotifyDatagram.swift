import CEPMDSystem

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// One datagram to a Unix socket by path: systemd's `sd_notify` and `sd_pid_notify_with_fds`, without
/// libsystemd.
public enum NotifyDatagram {
    /// The most descriptors one message can carry (systemd's and the kernel's `SCM_MAX_FD` limit).
    public static let maximumDescriptors = 253

    /// Sends `message` as one datagram to the `AF_UNIX` socket at `path`.
    /// - Parameters:
    ///   - message: the datagram's bytes (for systemd, newline-separated assignments such as `READY=1`).
    ///   - path: a file system path, or `@name` for the abstract namespace (as `NOTIFY_SOCKET` writes it).
    ///   - descriptors: descriptors passed with it (`SCM_RIGHTS`, e.g. for `FDSTORE=1`), at most
    ///     ``maximumDescriptors``; the caller keeps its own copies open or closes them.
    ///   - waits: whether to wait (at most 2 s) when the receiver's queue is full; false: fail with
    ///     EAGAIN at once (for the periodic messages of the epoll loop, which must never block).
    /// - Returns: whether the whole datagram was sent.
    /// - Throws: `SystemError` from `socket` or `sendmsg`; ENAMETOOLONG when the path does not fit,
    ///   EINVAL for too many descriptors.
    @inline(never)
    @discardableResult
    public static func send(
        _ message: [UInt8],
        to path: String,
        descriptors: [Int32] = [],
        waits: Bool = true
    ) throws(SystemError) -> Bool {
        guard descriptors.count <= self.maximumDescriptors else { throw SystemError("sendmsg", errno: EINVAL) }
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
                    descriptors.withUnsafeBufferPointer { passed in
                        Result { () throws(SystemError) in
                            try System.syscall("sendmsg", foreignDescriptor: true) {
                                cepmd_send_with_descriptors(
                                    fd,
                                    raw.baseAddress,
                                    raw.count,
                                    socketAddress,
                                    length,
                                    passed.baseAddress,
                                    Int32(passed.count),
                                    flags
                                )
                            }
                        }
                    }
                }
                return try result.get()
            }
        }
        return sent == message.count
    }

    /// One datagram received on `fd` (a bound datagram socket, e.g. a test's stand-in for systemd's
    /// notification socket), with the descriptors it carried (close-on-exec, the caller's to close).
    /// - Parameters:
    ///   - fd: the socket.
    ///   - waits: block until one arrives; false: nil at once when none is waiting.
    /// - Returns: the bytes and descriptors, or nil when none was waiting.
    /// - Throws: `SystemError` from `recvmsg`.
    @inline(never)
    public static func receive(
        on fd: Int32,
        waits: Bool = false
    ) throws(SystemError) -> (
        bytes: [UInt8], descriptors: [Int32]
    )? {
        var buffer = [UInt8](repeating: 0, count: 65_536)
        var descriptors = [Int32](repeating: -1, count: self.maximumDescriptors)
        var count: Int32 = 0
        let flags = waits ? 0 : Int32(MSG_DONTWAIT)
        let received = try buffer.withUnsafeMutableBytes { raw in
            descriptors.withUnsafeMutableBufferPointer { passed in
                Result { () throws(SystemError) in
                    try System.nonBlockingSyscall("recvmsg") {
                        cepmd_receive_with_descriptors(
                            fd,
                            raw.baseAddress,
                            raw.count,
                            passed.baseAddress,
                            Int32(passed.count),
                            &count,
                            flags
                        )
                    }
                }
            }
        }.get()
        guard let received else { return nil }
        return (Array(buffer.prefix(received)), Array(descriptors.prefix(Int(count))))
    }
}
