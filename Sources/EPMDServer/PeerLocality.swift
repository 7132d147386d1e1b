import EPMDPosix

/// C epmd's `local_peer` rule, decided once at accept: the peer is 127.0.0.0/8 or ::1 (or an
/// IPv4-mapped loopback), or the peer's address equals the socket's own local address.
public enum PeerLocality {
    /// - Parameters:
    ///   - peer: the accepted peer address.
    ///   - local: the socket's local address, asked for only when the peer is not loopback.
    /// - Returns: whether the peer may send ALIVE2, DUMP, KILL and STOP.
    public static func isLocal(peer: SocketAddress, local: () -> SocketAddress?) -> Bool {
        if peer.isLoopback || peer.mappedIPv4?.isLoopback == true { return true }
        guard case .other = peer else {
            guard let local = local() else { return false }
            let peerHost = peer.mappedIPv4?.hostBytes ?? peer.hostBytes
            let localHost = local.mappedIPv4?.hostBytes ?? local.hostBytes
            return peerHost == localHost
        }
        return false
    }
}
