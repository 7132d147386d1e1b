import EPMDPosix
import EPMDServer
import Testing

@Suite struct PeerLocalityTests {
    static func address(_ literal: String) throws -> SocketAddress {
        try #require(SocketAddress(literal: literal, port: 1234))
    }

    @Test(
        "loopback peers are local without asking for the local address",
        arguments: ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"]
    )
    func loopback(peer: String) throws {
        let peer = try Self.address(peer)
        #expect(PeerLocality.isLocal(peer: peer) { nil })
    }

    @Test("other peers are local only when they equal the socket's own address")
    func sameAddress() throws {
        #expect(PeerLocality.isLocal(peer: try Self.address("10.0.0.5")) { try? Self.address("10.0.0.5") })
        #expect(!PeerLocality.isLocal(peer: try Self.address("10.0.0.5")) { try? Self.address("10.0.0.6") })
        #expect(PeerLocality.isLocal(peer: try Self.address("::ffff:10.0.0.5")) { try? Self.address("10.0.0.5") })
        #expect(PeerLocality.isLocal(peer: try Self.address("fd00::5")) { try? Self.address("fd00::5") })
        #expect(!PeerLocality.isLocal(peer: try Self.address("fd00::5")) { try? Self.address("fd00::6") })
        #expect(!PeerLocality.isLocal(peer: try Self.address("10.0.0.5")) { nil })
        #expect(!PeerLocality.isLocal(peer: .other) { try? Self.address("10.0.0.5") })
    }
}
