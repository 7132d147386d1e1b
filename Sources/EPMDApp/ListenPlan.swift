import EPMDPosix
import EPMDServer

/// Which addresses to listen on, by C epmd's rules (reference §9.1).
public enum ListenPlan {
    /// Why an address list is refused (exit 1).
    public enum PlanError: Error, Equatable, CustomStringConvertible {
        case cannotParse(String)
        case tooMany

        public var description: String {
            switch self {
            case .cannotParse(let token): "cannot parse IP address \"\(token)\""
            case .tooMany: "cannot listen on more than 16 IP addresses"
            }
        }
    }

    /// The maximum number of listening sockets (`MAX_LISTEN_SOCKETS`).
    public static let maximumSockets = 16

    /// - Parameters:
    ///   - addresses: the `-address` / `ERL_EPMD_ADDRESS` list, if any.
    ///   - port: the port to bind.
    /// - Returns: the addresses, each with whether a bind failure is fatal.
    /// - Throws: `PlanError` for an unparsable literal or too many addresses.
    public static func make(
        addresses: String?,
        port: UInt16
    ) throws(PlanError) -> [(address: SocketAddress, required: Bool)] {
        let tokens = (addresses ?? "").split { $0 == "," || $0 == " " }.map(String.init)
        guard !tokens.isEmpty else {
            // No list: every IPv4 and IPv6 address (IPv6 with IPV6_V6ONLY).
            return [(.anyIPv4(port: port), true), (.anyIPv6(port: port), false)]
        }
        // With a list: the loopback addresses always come first, and their failure is not fatal.
        var plan: [(address: SocketAddress, required: Bool)] = [
            (.loopbackIPv4(port: port), false),
            (.loopbackIPv6(port: port), false),
        ]
        for token in tokens {
            guard let address = SocketAddress(literal: token, port: port) else { throw .cannotParse(token) }
            if plan.contains(where: { $0.address == address }) { continue }
            plan.append((address, true))
            if plan.count > self.maximumSockets { throw .tooMany }
        }
        return plan
    }
}
