import EPMDPosix

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
            guard pid == ProcessControl.processID else { return [] }
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
        guard let path = environment["NOTIFY_SOCKET"], !path.isEmpty else { return false }
        return (try? NotifyDatagram.send(Array(state.utf8), to: path)) ?? false
    }
}
