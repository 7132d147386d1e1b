#if canImport(Glibc)
import Glibc
#endif

/// A datagram socket bound at a path, standing in for systemd's `NOTIFY_SOCKET` in these tests.
final class NotifySocket {
    let path: String
    private let fd: Int32

    /// Binds a fresh socket at `path` (removed first, and again by ``close()``).
    init(path: String) throws {
        self.path = path
        self.fd = try Self.bindDatagram(path: path)
    }

    /// A datagram socket bound at `path` (an old file there removed first), close-on-exec.
    static func bindDatagram(path: String) throws -> Int32 {
        unlink(path)
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw NotifySocketError(message: "socket: errno \(errno)") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard bound == 0 else {
            let error = errno
            Glibc.close(fd)
            throw NotifySocketError(message: "bind \(path): errno \(error)")
        }
        return fd
    }

    /// Every datagram waiting now, oldest first, as text (never blocks).
    func received() -> [String] {
        var messages: [String] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(self.fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            guard count > 0 else { return messages }
            messages.append(String(decoding: buffer.prefix(count), as: UTF8.self))
        }
    }

    func close() {
        Glibc.close(self.fd)
        unlink(self.path)
    }
}

struct NotifySocketError: Error, CustomStringConvertible {
    var message: String
    var description: String { self.message }
}
