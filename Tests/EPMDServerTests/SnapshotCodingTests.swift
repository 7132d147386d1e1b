import EPMDPosix
import EPMDProtocol
import EPMDRegistry
import EPMDServer
import Testing

/// A connection snapshot as bytes (the descriptor travels beside it).
@Suite struct SnapshotCodingTests {
    static let node = RegisteredNode(
        request: Alive2Request(port: 4242, name: Array("kept".utf8), extra: [1, 0, 2]),
        creation: 1_700_000_001,
        connection: ConnectionID(77),
        fd: 12,
        registeredAt: 1_700_000_000.5,
        peer: "127.0.0.1",
        sequence: 9
    )

    static var samples: [EPMDConnectionSnapshot] {
        let partial = EPMDConnectionStateMachine(
            isLocalPeer: true,
            relaxedCommandCheck: true,
            namesLocalOnly: false,
            state: .receiving,
            buffered: [0, 5, 122, 102]
        )
        var kept = EPMDConnectionStateMachine(isLocalPeer: true, relaxedCommandCheck: false)
        _ = kept.received([0, 14] + Alive2Request(port: 1, name: [97], extra: []).encode())
        kept.replyStarted(keep: true)
        _ = kept.replyWritten()
        var replying = EPMDConnectionStateMachine(isLocalPeer: false, relaxedCommandCheck: false, namesLocalOnly: true)
        replying.replyStarted(keep: false)
        let v6 = SocketAddress(literal: "fe80::1", port: 5555) ?? .other
        return [
            EPMDConnectionSnapshot(
                id: ConnectionID(76),
                fd: 11,
                peer: .loopbackIPv4(port: 40_000),
                machine: partial,
                acceptedAt: 123_456_789
            ),
            EPMDConnectionSnapshot(
                id: ConnectionID(77),
                fd: 12,
                peer: .loopbackIPv6(port: 40_001),
                machine: kept,
                registration: Self.node,
                acceptedAt: 5
            ),
            EPMDConnectionSnapshot(
                id: ConnectionID(78),
                fd: 13,
                peer: v6,
                machine: replying,
                pendingReply: [0, 0, 17, 17] + Array("name a at port 1\n".utf8),
                acceptedAt: 6
            ),
            .fresh(fd: 14, peer: .other, isLocalPeer: false, relaxedCommandCheck: false, acceptedAt: 7),
        ]
    }

    @Test("every state, address family, partial buffer, registration and pending reply round-trips")
    func roundTrip() throws {
        for snapshot in Self.samples {
            var writer = ByteWriter()
            snapshot.encode(into: &writer)
            var reader = ByteReader(writer.bytes)
            let decoded = try EPMDConnectionSnapshot(from: &reader, fd: snapshot.fd)
            #expect(decoded == snapshot)
            #expect(decoded.machine.buffered == snapshot.machine.buffered)
            try reader.expectEnd()
        }
    }

    @Test("a registration on a connection that is not kept, and damaged bytes, throw and never trap")
    func refusals() throws {
        var bad = Self.samples[0]
        bad.registration = Self.node
        var writer = ByteWriter()
        bad.encode(into: &writer)
        var reader = ByteReader(writer.bytes)
        #expect(throws: StateDecodingError.self) { try EPMDConnectionSnapshot(from: &reader, fd: 3) }

        for snapshot in Self.samples {
            var writer = ByteWriter()
            snapshot.encode(into: &writer)
            let bytes = writer.bytes
            for length in 0..<bytes.count {
                var reader = ByteReader(Array(bytes.prefix(length)))
                #expect(throws: StateDecodingError.self) { try EPMDConnectionSnapshot(from: &reader, fd: 3) }
            }
            for index in bytes.indices {
                var damaged = bytes
                damaged[index] ^= 0xA5
                var reader = ByteReader(damaged)
                _ = try? EPMDConnectionSnapshot(from: &reader, fd: 3)
            }
        }
    }
}
