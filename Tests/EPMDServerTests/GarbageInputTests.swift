import EPMDProtocol
import EPMDRegistry
import EPMDServer
import GatewayTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Random input, bounded and seeded: nothing a peer sends may crash the decoder or the server, and
/// no garbage may disturb another connection's registration.
@Suite(.timeLimit(.minutes(1))) struct GarbageInputTests {
    /// A small deterministic generator (SplitMix64), so a failure can be replayed.
    struct SplitMix: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            self.state &+= 0x9E37_79B9_7F4A_7C15
            var z = self.state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    /// Mostly well-framed bodies with a valid or random code, sometimes a random length prefix.
    static func garbage(_ random: inout SplitMix) -> [UInt8] {
        let codes: [UInt8] = [120, 122, 110, 100, 107, 115, 0, 255, 97]
        let bodyLength = Int.random(in: 1...64, using: &random)
        var body = (0..<bodyLength).map { _ in UInt8.random(in: 0...255, using: &random) }
        if Bool.random(using: &random), let code = codes.randomElement(using: &random) { body[0] = code }
        if Int.random(in: 0..<4, using: &random) == 0 {
            return [UInt8.random(in: 0...255, using: &random), UInt8.random(in: 0...255, using: &random)] + body
        }
        return [UInt8(body.count >> 8), UInt8(body.count & 0xFF)] + body
    }

    @Test("100,000 random inputs: the decoder and the state machine always decide, never trap")
    func decoder() {
        var random = SplitMix(state: 0x5EED)
        var served = 0
        var closed = 0
        for _ in 0..<100_000 {
            let bytes = Self.garbage(&random)
            var machine = EPMDConnectionStateMachine(
                isLocalPeer: Bool.random(using: &random),
                relaxedCommandCheck: true
            )
            // Delivered in one or two pieces.
            let split = Int.random(in: 0...bytes.count, using: &random)
            var decision = machine.received(Array(bytes[..<split]))
            if decision == .awaitMore { decision = machine.received(Array(bytes[split...])) }
            switch decision {
            case .serve: served += 1
            case .close: closed += 1
            case .awaitMore: break
            }
            _ = try? EPMDRequest.decode(Array(bytes.dropFirst(2)))
        }
        #expect(served > 500)
        #expect(closed > 500)
    }

    @Test("2,000 garbage connections leave a registration untouched and the server serving")
    func liveServer() throws {
        let harness = try ServerHarness(relaxed: false, packetTimeout: 1)
        defer { harness.stop() }
        let (fd, reply) = try WireClient.register(port: harness.port, name: "survivor", nodePort: 4711)
        defer { close(fd) }
        #expect(reply.prefix(2) == [0x76, 0])
        var random = SplitMix(state: 0xBAD_C0DE)
        for _ in 0..<2000 {
            let connection = try WireClient.connect(port: harness.port)
            var bytes = Self.garbage(&random)
            // Never a KILL (it would end the server, by design) and never a valid ALIVE2 (it would
            // register a random name): everything else goes.
            if bytes.count > 2, bytes[2] == 107 || bytes[2] == 120 { bytes[2] = 0 }
            WireClient.send(connection, bytes)
            close(connection)
        }
        #expect(
            try Poll.blockingUntil(timeout: .seconds(5)) {
                try WireClient.names(port: harness.port).text == "name survivor at port 4711\n"
            } != nil
        )
        let lookup = try #require(try WireClient.request(port: harness.port, [122] + Array("survivor".utf8)).untilClose)
        #expect(lookup.prefix(4) == [0x77, 0, 0x12, 0x67])
        let statistics = harness.server.statistics
        #expect(statistics.accepted >= 2003)
        #expect(statistics.malformed.values.reduce(0, +) > 0)
    }
}
