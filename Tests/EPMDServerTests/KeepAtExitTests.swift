import EPMDPosix
import EPMDRegistry
import EPMDServer
import GatewayTestSupport
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `EPMDServer.keepAtExit`: at a shutdown, a registration that outlives the process (systemd's fd
/// store holds its socket for the next one) ends without an unregistration, so that watchers see no
/// `unregistered` event that the next process's `restarted` would contradict.
@Suite(.timeLimit(.minutes(1))) struct KeepAtExitTests {
    private static func unregistered(
        _ events: borrowing Mutex<[RegistryEvent]>
    ) -> [(name: String, reason: UnregisterReason?)] {
        events.withLock { $0 }.filter { $0.name == "unregistered" }.map {
            (String(decoding: $0.node?.name ?? [], as: UTF8.self), $0.reason)
        }
    }

    @Test("a shutdown ends a kept registration silently, and unregisters the others (reason shutdown)")
    func shutdown() throws {
        let harness = try ServerHarness()
        let events = Mutex<[RegistryEvent]>([])
        harness.server.registry.addChangeObserver { event in events.withLock { $0.append(event) } }
        let (kept, _) = try WireClient.register(port: harness.port, name: "kept", nodePort: 4242)
        defer { close(kept) }
        let (lost, _) = try WireClient.register(port: harness.port, name: "lost", nodePort: 4343)
        defer { close(lost) }
        let keptID = try #require(harness.server.registry.lookup(Array("kept".utf8))?.connection)
        harness.server.keepAtExit { $0 == keptID }

        harness.server.shutdown()
        #expect(harness.waitForExit() == .shutdown)
        let ended = Self.unregistered(events)
        #expect(ended.count == 1 && ended.first?.name == "lost" && ended.first?.reason == .shutdown, "\(ended)")
        // This process's copies are closed either way (the store's copy is what lives on).
        #expect(WireClient.readToEOF(kept) == [])
        #expect(WireClient.readToEOF(lost) == [])
        #expect(harness.logLines.contains("1 registrations left to the next process (fd store)"), "\(harness.logLines)")
    }

    @Test("after a KILL_REQ every registration ends as usual: the service does not come back")
    func kill() throws {
        let harness = try ServerHarness(relaxed: true)
        let events = Mutex<[RegistryEvent]>([])
        harness.server.registry.addChangeObserver { event in events.withLock { $0.append(event) } }
        let (fd, _) = try WireClient.register(port: harness.port, name: "live", nodePort: 1)
        defer { close(fd) }
        harness.server.keepAtExit { _ in true }
        #expect(try WireClient.request(port: harness.port, [107]).untilClose == Array("OK".utf8))
        #expect(harness.waitForExit() == .killed)
        let ended = Self.unregistered(events)
        #expect(ended.count == 1 && ended.first?.name == "live", "\(ended)")
        #expect(WireClient.readToEOF(fd) == [])
    }
}
