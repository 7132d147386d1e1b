#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

extension System {
    /// The address of a connected socket's peer (`getpeername`), e.g. of a connection systemd's fd store
    /// gave back.
    /// - Throws: `SystemError` (ENOTCONN, ENOTSOCK, EBADF: a descriptor the caller was given, not its own).
    @inline(never)
    public static func peerAddress(_ fd: Int32) throws(SystemError) -> SocketAddress {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = try withUnsafeMutablePointer(to: &storage) { pointer throws(SystemError) in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address throws(SystemError) in
                try self.syscall("getpeername", foreignDescriptor: true) { getpeername(fd, address, &length) }
            }
        }
        return SocketAddress(storage: storage)
    }
}
