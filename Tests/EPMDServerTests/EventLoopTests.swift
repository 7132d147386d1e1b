import EPMDPosix
import EPMDProtocol
import EPMDRegistry
import GatewayTestSupport
import InMemoryLogging
import Testing

@testable import EPMDServer

#if canImport(Glibc)
import Glibc
#endif

/// The loop driven by hand, one `poll` at a time, on the test's thread: epoll tokens, and connections
/// exported from one loop and adopted by another (what a loss-free restart does across processes).
@Suite(.timeLimit(.minutes(1))) struct EventLoopTests {
    @Test(
        "epoll tokens pack and unpack",
        arguments: [
            LoopToken.connection(fd: 0, serial: 0), .connection(fd: 7, serial: 1),
            .connection(fd: Int32.max, serial: 0xFF_FFFF),
            .listener(index: 0), .listener(index: 15), .wake, .signal,
        ]
    )
    func tokens(token: LoopToken) {
        #expect(LoopToken(packed: token.packed) == token)
    }

    @Test("a token's serial wraps within 24 bits, and unknown tags unpack to nil")
    func tokenEdges() {
        #expect(
            LoopToken(packed: LoopToken.connection(fd: 3, serial: 0x0100_0002).packed) == .connection(fd: 3, serial: 2)
        )
        #expect(LoopToken(packed: 0xFF << 56) == nil)
        #expect(Set([LoopToken.wake.packed, LoopToken.signal.packed, LoopToken.listener(index: 0).packed]).count == 3)
    }

    static func server(_ registry: NodeRegistry) throws -> EPMDServer {
        try EPMDServer(
            configuration: EPMDServerConfiguration(port: 0, listeners: .bind([(.loopbackIPv4(port: 0), true)])),
            registry: registry,
            logger: ServerHarness.logger(InMemoryLogHandler())
        )
    }

    /// Polls until `condition` holds (at most about 2 s).
    static func drive(_ loop: inout EventLoop, until condition: () -> Bool) -> Bool {
        for _ in 0..<100 where !condition() { loop.poll(timeoutMilliseconds: 20) }
        return condition()
    }

    @Test("a registration exported from one loop and adopted by another lives on, then ends with its connection")
    func exportAdoptRegistration() throws {
        let registry = NodeRegistry()
        let server = try Self.server(registry)
        var first = try EventLoop(server: server)
        // Closed once, by the test, mid-way: a second close in a `defer` could close a descriptor another
        // test running in parallel got with the same number meanwhile.
        var client = try WireClient.connect(port: server.boundPort)
        defer { if client >= 0 { close(client) } }
        let body = Alive2Request(port: 4711, name: Array("moved".utf8)).encode()
        WireClient.send(client, [0, UInt8(body.count)] + body)
        #expect(Self.drive(&first) { !registry.isEmpty })
        #expect(try WireClient.read(client, count: 6).prefix(2) == [0x76, 0])
        let node = try #require(registry.lookup(Array("moved".utf8)))

        let exported = first.export(node.connection)
        let snapshot = try #require(exported)
        #expect(snapshot.id == node.connection)
        #expect(snapshot.machine.state == .kept)
        #expect(snapshot.registration == node)
        #expect(snapshot.pendingReply.isEmpty)
        #expect(first.export(node.connection) == nil, "it left the first loop")
        #expect(server.statistics.openConnections == 0)
        #expect(System.isOpenDescriptor(snapshot.fd), "exporting does not close")
        #expect(registry.lookup(Array("moved".utf8)) == node, "nor does it unregister")

        var second = try EventLoop(server: server)
        #expect(second.adopt(snapshot) == node.connection)
        #expect(server.statistics.openConnections == 1)
        // A lookup is still answered from the registration, and the client's close now ends it.
        close(client)
        client = -1
        #expect(Self.drive(&second) { registry.isEmpty })
        #expect(registry.history().events.last?.reason == .closed)
        second.teardown()
    }

    @Test("a half-received request survives export and adoption, and is answered once complete")
    func exportAdoptPartialRequest() throws {
        let registry = NodeRegistry()
        let server = try Self.server(registry)
        var first = try EventLoop(server: server)
        let client = try WireClient.connect(port: server.boundPort)
        defer { close(client) }
        WireClient.send(client, [0, 1])
        #expect(Self.drive(&first) { server.statistics.accepted == 1 })
        let id = try #require(first.slots.compactMap { $0 }.first?.id)
        let exported = first.export(id)
        let snapshot = try #require(exported)
        #expect(snapshot.machine.state == .receiving)
        #expect(snapshot.machine.buffered == [0, 1])
        #expect(snapshot.registration == nil)

        var second = try EventLoop(server: server)
        #expect(second.adopt(snapshot) == id)
        WireClient.send(client, [110])
        #expect(Self.drive(&second) { server.statistics.requests[.names] == 1 })
        #expect(WireClient.readToEOF(client) == [0, 0, 0, 0])
        second.teardown()
    }

    @Test("accepting is adopting a fresh snapshot: the request read at once, the packet timeout from accept")
    func freshAdoption() throws {
        let registry = NodeRegistry()
        let server = try Self.server(registry)
        var loop = try EventLoop(server: server)
        let client = try WireClient.connect(port: server.boundPort)
        defer { close(client) }
        let accepted = System.monotonicNanoseconds()
        // A connection accepted long ago (by another process) keeps its deadline: already past here.
        let (fd, peer) = try #require(try Self.acceptBlocking(server))
        let id = loop.adopt(
            .fresh(
                fd: fd,
                peer: peer,
                isLocalPeer: true,
                relaxedCommandCheck: false,
                acceptedAt: accepted &- 120_000_000_000
            )
        )
        #expect(id != nil)
        loop.expireTimers()
        #expect(server.statistics.timeouts == 1)
        #expect(WireClient.readToEOF(client) == [])
        loop.teardown()
    }

    @Test("a running server adopts exported connections when it starts (run(adopting:))")
    func runAdopting() throws {
        let registry = NodeRegistry()
        let old = try Self.server(registry)
        var loop = try EventLoop(server: old)
        var client = try WireClient.connect(port: old.boundPort)
        defer { if client >= 0 { close(client) } }  // closed once: see exportAdoptRegistration
        let body = Alive2Request(port: 4242, name: Array("kept".utf8)).encode()
        WireClient.send(client, [0, UInt8(body.count)] + body)
        #expect(Self.drive(&loop) { !registry.isEmpty })
        #expect(try WireClient.read(client, count: 6).prefix(2) == [0x76, 0])
        let snapshots = loop.exportAll()
        #expect(snapshots.count == 1)
        loop.teardown()  // the old listeners close; the exported descriptor stays open

        let harness = try ServerHarness(registry: registry, adopting: snapshots)
        defer { harness.stop() }
        #expect(try WireClient.names(port: harness.port).text == "name kept at port 4242\n")
        #expect(Poll.blockingUntil(timeout: .seconds(2)) { harness.server.statistics.openConnections == 1 } != nil)
        close(client)
        client = -1
        #expect(
            try Poll.blockingUntil(timeout: .seconds(2)) { try WireClient.names(port: harness.port).text.isEmpty }
                != nil
        )
    }

    static func acceptBlocking(_ server: EPMDServer) throws -> (fd: Int32, peer: SocketAddress)? {
        for _ in 0..<200 {
            if let accepted = try System.accept(server.listeners[0]) { return accepted }
            usleep(10_000)
        }
        return nil
    }
}
