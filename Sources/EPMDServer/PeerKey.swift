import EPMDPosix

/// A peer's address without its port, as a dictionary key: what the per-address cap counts by.
/// An IPv4-mapped IPv6 peer (`::ffff:a.b.c.d`) is the IPv4 address it maps; the IPv6 scope is
/// ignored. Loopback addresses are addresses like any other (127.0.0.1 and 127.0.0.2 differ).
/// Made without allocating (once per accept).
enum PeerKey: Hashable, Sendable {
    case v4(UInt32)
    case v6(high: UInt64, low: UInt64)
    case other

    /// The words of `::ffff:0.0.0.0` and the mask of its prefix, in memory order.
    private static let mappedPrefix = SocketAddress.IPv6Words(
        high: 0,
        low: UInt64(0xFFFF_0000).littleEndian
    )
    private static let mappedMask = UInt64(0xFFFF_FFFF).littleEndian

    init(_ peer: SocketAddress) {
        switch peer {
        case .v4(let address, _):
            self = .v4(address)
        case .v6(let address, _, _):
            if address.high == Self.mappedPrefix.high, address.low & Self.mappedMask == Self.mappedPrefix.low {
                // Bytes 12...15 of the address: the IPv4 address, in memory order.
                self = .v4(withUnsafeBytes(of: address.low) { $0.loadUnaligned(fromByteOffset: 4, as: UInt32.self) })
            } else {
                self = .v6(high: address.high, low: address.low)
            }
        case .other:
            self = .other
        }
    }
}
