import EPMDPosix
import EPMDProtocol
import EPMDRegistry
import EPMDServer
import Foundation
import GatewayTestSupport
import InMemoryLogging
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `EPMDServer.forceUnregister`: the admin API's STOP, carried out by the loop thread whatever
/// `-relaxed_command_check` says, with a bounded wait.
@Suite(.timeLimit(.minutes(1))) struct ForceUnregisterTests {
    @Test("closes the node's registration connection (reason stop); unknown names are notFound")
    func unregisters() throws {
        let harness = try ServerHarness()
        defer { harness.stop() }
        let events = Mutex<[RegistryEvent]>([])
        harness.server.registry.addChangeObserver { event in events.withLock { $0.append(event) } }
        let (fd, _) = try WireClient.register(port: harness.port, name: "foo", nodePort: 4242)
        defer { close(fd) }
        let (other, _) = try WireClient.register(port: harness.port, name: "bar", nodePort: 4343)
        defer { close(other) }

        let outcome = harness.server.forceUnregister(name: Array("foo".utf8))
        guard case .unregistered(let node) = outcome else {
            Issue.record("expected unregistered, got \(outcome)")
            return
        }
        #expect(node.name == Array("foo".utf8) && node.port == 4242)
        // Done when the call returns: the registry no longer has it, and its connection is closed.
        #expect(harness.server.registry.lookup(Array("foo".utf8)) == nil)
        #expect(WireClient.readToEOF(fd) == [])
        #expect(try WireClient.names(port: harness.port).text == "name bar at port 4343\n")
        let unregistered = events.withLock { $0 }.filter { $0.name == "unregistered" }
        #expect(unregistered.count == 1 && unregistered.first?.reason == .stop)
        #expect(harness.logLines.contains("forcibly unregistering 'foo' (admin request)"))

        #expect(harness.server.forceUnregister(name: Array("foo".utf8)) == .notFound)
        #expect(harness.server.forceUnregister(name: Array("nobody".utf8)) == .notFound)
        #expect(harness.server.registry.lookup(Array("bar".utf8)) != nil)
    }

    @Test("a loop that does not run answers unavailable within the bound, and never acts later")
    func unavailable() throws {
        let registry = NodeRegistry()
        let server = try EPMDServer(
            configuration: EPMDServerConfiguration(
                port: 0,
                listeners: .bind([(.loopbackIPv4(port: 0), true)]),
                relaxedCommandCheck: false
            ),
            registry: registry,
            logger: ServerHarness.logger(.init())
        )
        let started = System.monotonicNanoseconds()
        #expect(server.forceUnregister(name: Array("foo".utf8), timeoutMilliseconds: 200) == .unavailable)
        let elapsed = System.monotonicNanoseconds() - started
        #expect(elapsed >= 190_000_000 && elapsed < 2_000_000_000, "\(elapsed) ns")
        // The loop, run now, finds nothing withdrawn to do and stops at once.
        server.shutdown()
        #expect(try server.run() == .shutdown)
    }

    @Test("many callers at once each get their own answer")
    func concurrent() throws {
        let harness = try ServerHarness()
        defer { harness.stop() }
        var fds: [Int32] = []
        defer { for fd in fds { close(fd) } }
        for index in 0..<8 {
            fds.append(try WireClient.register(port: harness.port, name: "n\(index)", nodePort: UInt16(5000 + index)).0)
        }
        let server = harness.server
        let results = Mutex<[Int: ForcedUnregistration]>([:])
        DispatchQueue.concurrentPerform(iterations: 16) { index in
            let outcome = server.forceUnregister(name: Array("n\(index)".utf8))
            results.withLock { $0[index] = outcome }
        }
        let outcomes = results.withLock { $0 }
        for index in 0..<16 {
            if index < 8 {
                guard case .unregistered(let node) = outcomes[index] else {
                    Issue.record("n\(index): \(String(describing: outcomes[index]))")
                    continue
                }
                #expect(node.port == UInt16(5000 + index))
            } else {
                #expect(outcomes[index] == .notFound)
            }
        }
        #expect(harness.server.registry.isEmpty)
    }
}
