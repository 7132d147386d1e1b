import EPMDPosix
import EPMDProtocol
import EPMDRegistry
import EPMDServer
import Testing

/// The request policy as a pure function: a request, a connection's context and a registry in; the
/// reply, whether the connection stays, the counts and the effects out. No sockets, no loop.
@Suite struct EPMDRequestPolicyTests {
    static let prefix: [UInt8] = [0, 0, 0x11, 0x11]

    static func context(_ id: UInt64 = 1, relaxed: Bool = false) throws -> EPMDRequestPolicy.Context {
        EPMDRequestPolicy.Context(
            connection: ConnectionID(id),
            fd: Int32(id + 10),
            peer: try #require(SocketAddress(literal: "127.0.0.1", port: 5000)),
            relaxedCommandCheck: relaxed,
            portPrefix: Self.prefix
        )
    }

    static func registry() -> NodeRegistry { NodeRegistry(clock: { 1_000 }) }

    static func alive(_ name: String, port: UInt16 = 4711, high: UInt16 = 6) -> EPMDRequest {
        .alive2(Alive2Request(port: port, highestVersion: high, lowestVersion: 5, name: Array(name.utf8)))
    }

    @Test("ALIVE2: registers, keeps the connection, replies with the creation, and says so as an effect")
    func register() throws {
        let registry = Self.registry()
        let decision = EPMDRequestPolicy.decide(Self.alive("foo"), context: try Self.context(7), registry: registry)
        let node = try #require(registry.lookup(Array("foo".utf8)))
        #expect(node.connection == ConnectionID(7) && node.fd == 17 && node.peer == "127.0.0.1")
        #expect(node.creation == 1_001)
        #expect(decision.reply == [118, 0, 0, 0, 0x03, 0xE9])
        #expect(decision.keep)
        #expect(decision.kind == .alive2 && decision.result == .ok)
        #expect(decision.effects == [.registered(node)])
    }

    @Test("ALIVE2 from an old node: 4-byte reply with the creation reduced to 1...3")
    func registerOld() throws {
        let registry = Self.registry()
        let decision = EPMDRequestPolicy.decide(
            Self.alive("old", high: 5),
            context: try Self.context(),
            registry: registry
        )
        #expect(decision.reply == [121, 0, 0, UInt8(1_001 % 3 + 1)])
    }

    @Test("ALIVE2 refused: result 1 with creation 99, connection kept, the refusal as an effect")
    func refused() throws {
        let registry = Self.registry()
        _ = EPMDRequestPolicy.decide(Self.alive("dup"), context: try Self.context(1), registry: registry)
        let decision = EPMDRequestPolicy.decide(Self.alive("dup"), context: try Self.context(2), registry: registry)
        #expect(decision.reply == EPMDResponse.alive2(success: false, creation: 0, extended: true))
        #expect(decision.keep)
        #expect(decision.kind == .alive2 && decision.result == .refused)
        #expect(decision.effects == [.registrationRefused(name: Array("dup".utf8), .nameInUse)])
        #expect(registry.lookup(Array("dup".utf8))?.connection == ConnectionID(1))
    }

    @Test("PORT_PLEASE2: found or not, closed after the reply, no effects")
    func lookup() throws {
        let registry = Self.registry()
        _ = EPMDRequestPolicy.decide(Self.alive("foo", port: 5555), context: try Self.context(), registry: registry)
        let found = EPMDRequestPolicy.decide(
            .portPlease2(name: Array("foo".utf8)),
            context: try Self.context(2),
            registry: registry
        )
        #expect(found.reply == [0x77, 0, 0x15, 0xB3, 0x4D, 0, 0, 6, 0, 5, 0, 3, 0x66, 0x6F, 0x6F, 0, 0])
        #expect(!found.keep && found.kind == .portPlease2 && found.result == .ok && found.effects.isEmpty)
        let missing = EPMDRequestPolicy.decide(
            .portPlease2(name: Array("bar".utf8)),
            context: try Self.context(2),
            registry: registry
        )
        #expect(missing.reply == [0x77, 1])
        #expect(!missing.keep && missing.result == .notFound && missing.effects.isEmpty)
    }

    @Test("NAMES and DUMP: the configured-port prefix, then the registry's text")
    func namesAndDump() throws {
        let registry = Self.registry()
        _ = EPMDRequestPolicy.decide(Self.alive("foo", port: 5555), context: try Self.context(), registry: registry)
        let names = EPMDRequestPolicy.decide(.names, context: try Self.context(2), registry: registry)
        #expect(names.reply == Self.prefix + Array("name foo at port 5555\n".utf8))
        #expect(!names.keep && names.kind == .names && names.result == .ok && names.effects.isEmpty)
        let dump = EPMDRequestPolicy.decide(.dump, context: try Self.context(2), registry: registry)
        #expect(dump.reply == Self.prefix + Array("active name     <foo> at port 5555, fd = 11\n\0".utf8))
        #expect(dump.kind == .dump && dump.effects.isEmpty)
    }

    @Test("KILL: refused with live nodes unless relaxed; accepted means exit")
    func kill() throws {
        let registry = Self.registry()
        let empty = EPMDRequestPolicy.decide(.kill, context: try Self.context(), registry: registry)
        #expect(empty.reply == Array("OK".utf8) && empty.result == .ok && empty.effects == [.exit(.killed)])
        _ = EPMDRequestPolicy.decide(Self.alive("live"), context: try Self.context(3), registry: registry)
        let refused = EPMDRequestPolicy.decide(.kill, context: try Self.context(4), registry: registry)
        #expect(refused.reply == Array("NO".utf8) && refused.result == .refused && refused.effects == [.killRefused])
        #expect(!refused.keep)
        let relaxed = EPMDRequestPolicy.decide(.kill, context: try Self.context(5, relaxed: true), registry: registry)
        #expect(relaxed.reply == Array("OK".utf8) && relaxed.effects == [.exit(.killed)])
        #expect(!registry.isEmpty, "the policy does not close registrations: the loop's teardown does")
    }

    @Test("STOP: unregisters the name and names the connection to close; NOEXISTSTOPPED when unknown")
    func stop() throws {
        let registry = Self.registry()
        _ = EPMDRequestPolicy.decide(Self.alive("foo"), context: try Self.context(9), registry: registry)
        let stopped = EPMDRequestPolicy.decide(
            .stop(name: Array("foo".utf8)),
            context: try Self.context(10),
            registry: registry
        )
        #expect(stopped.reply == Array("STOPPED".utf8) && stopped.result == .ok && !stopped.keep)
        #expect(stopped.effects == [.closeStoppedNode(ConnectionID(9), name: Array("foo".utf8))])
        #expect(registry.isEmpty)
        let unknown = EPMDRequestPolicy.decide(
            .stop(name: Array("foo".utf8)),
            context: try Self.context(10),
            registry: registry
        )
        #expect(unknown.reply == Array("NOEXISTSTOPPED".utf8) && unknown.result == .notFound && unknown.effects.isEmpty)
    }
}
