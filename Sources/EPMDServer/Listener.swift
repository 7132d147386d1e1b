#if canImport(Glibc)
import EPMDPosix
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Why the listening sockets could not be set up.
public enum ListenerError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The port is already in use: another epmd runs there (C epmd then exits 0, which `erl` relies on).
    case addressInUse(port: UInt16)
    /// A required address could not be bound.
    case bindFailed(SocketAddress, SystemError)
    /// Nothing could be bound at all.
    case nothingBound

    public var description: String {
        switch self {
        case .addressInUse(let port): "there is already a epmd running at port \(port)"
        case .bindFailed(let address, let error): "failed to bind socket \(address): \(error)"
        case .nothingBound: "could not listen on any address"
        }
    }
}

/// Opens the listening sockets the way C epmd does: SO_REUSEADDR, IPV6_V6ONLY on IPv6, non-blocking,
/// `listen(SOMAXCONN)`. Families the kernel does not support are skipped.
public enum Listener {
    /// Binds every address of the plan.
    /// - Parameters:
    ///   - plan: addresses and whether each is required.
    ///   - log: where to report the optional addresses that failed.
    /// - Returns: the listening descriptors and the port actually bound (differs only for port 0).
    /// - Throws: `ListenerError`.
    public static func bind(
        _ plan: [(address: SocketAddress, required: Bool)],
        log: (String) -> Void
    ) throws(ListenerError) -> (fds: [Int32], port: UInt16) {
        var fds: [Int32] = []
        var boundPort: UInt16?
        for entry in plan {
            var address = entry.address
            if let boundPort, address.port == 0 { address = address.withPort(boundPort) }
            do {
                let fd = try self.open(address)
                fds.append(fd)
                if boundPort == nil { boundPort = (try? System.localAddress(fd))?.port ?? address.port }
            } catch {
                if error.errno == EADDRINUSE {
                    for fd in fds { System.close(fd) }
                    throw .addressInUse(port: address.port)
                }
                if error.errno == EAFNOSUPPORT || error.errno == EPROTONOSUPPORT {
                    log("address family of \(address) not supported, skipped")
                    continue
                }
                if entry.required {
                    for fd in fds { System.close(fd) }
                    throw .bindFailed(address, error)
                }
                log("failed to bind \(address): \(error.message) (ignored)")
            }
        }
        guard !fds.isEmpty, let boundPort else { throw .nothingBound }
        return (fds, boundPort)
    }

    private static func open(_ address: SocketAddress) throws(SystemError) -> Int32 {
        let fd = try System.socket(family: address.family)
        do {
            try System.setSocketOption(fd, level: SOL_SOCKET, name: SO_REUSEADDR, value: 1)
            if address.family == AF_INET6 {
                try System.setSocketOption(fd, level: Int32(IPPROTO_IPV6), name: IPV6_V6ONLY, value: 1)
            }
            try System.setNonBlocking(fd)
            try System.bind(fd, address)
            try System.listen(fd, backlog: SOMAXCONN)
            return fd
        } catch {
            System.close(fd)
            throw error
        }
    }
}

extension SocketAddress {
    func withPort(_ port: UInt16) -> SocketAddress {
        switch self {
        case .v4(let address, _): .v4(address: address, port: port)
        case .v6(let address, _, let scope): .v6(address: address, port: port, scope: scope)
        case .other: .other
        }
    }
}
