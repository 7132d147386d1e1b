import EPMDServer

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// systemd without libsystemd: socket activation (`LISTEN_FDS`) and readiness (`NOTIFY_SOCKET`).
public enum Systemd {
    /// The first passed descriptor.
    public static let firstDescriptor: Int32 = 3

    /// The descriptors passed by socket activation, as `sd_listen_fds(0)` reads them.
    /// - Returns: the descriptors, `[]` when none were passed, `nil` when the variables are malformed.
    public static func listenDescriptors(environment: [String: String]) -> [Int32]? {
        guard let countText = environment["LISTEN_FDS"] else { return [] }
        if let pidText = environment["LISTEN_PID"] {
            guard let pid = Int32(pidText) else { return nil }
            guard pid == getpid() else { return [] }
        }
        guard let count = Int32(countText), count >= 0 else { return nil }
        return (0..<count).map { self.firstDescriptor + $0 }
    }

    /// Sends a state string to the service manager; does nothing outside systemd.
    /// - Parameters:
    ///   - state: newline-separated assignments such as `READY=1`.
    ///   - environment: where to find `NOTIFY_SOCKET`.
    /// - Returns: whether a datagram was sent.
    @discardableResult
    public static func notify(_ state: String, environment: [String: String]) -> Bool {
        guard var path = environment["NOTIFY_SOCKET"], !path.isEmpty else { return false }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let abstract = path.hasPrefix("@")
        if abstract { path.removeFirst() }
        var pathBytes = Array(path.utf8)
        if abstract { pathBytes.insert(0, at: 0) }
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard pathBytes.count < capacity else { return false }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: pathBytes)
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + pathBytes.count + (abstract ? 0 : 1))
        let message = Array(state.utf8)
        let sent = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
                message.withUnsafeBytes {
                    sendto(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), socketAddress, length)
                }
            }
        }
        return sent == message.count
    }
}
