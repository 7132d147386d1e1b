import EPMDApp
import EPMDPosix
import EPMDRegistry
import Foundation
import GatewayMetrics
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A burst of registrations faster than systemd takes them (systemd 252 stores each descriptor in time
/// that grows with what it holds): the fd store holds at most `sendingLimit` copies of their sockets, the
/// rest wait without a descriptor of their own and are all stored as room frees. Unbounded, every
/// registration held a second descriptor until sent, and a burst of 19,000 under a 20,000-descriptor
/// limit ran out at 10,702 (the packaged gateway under the real systemd 252 here).
@Suite(.serialized, .timeLimit(.minutes(1))) struct FDStoreBurstTests {
    static let burst = 200
    static let limit = 16
    /// The burst's last ones, registered while systemd is busy (``SenderGate``): more than `limit` + 5.
    static let late = 40

    /// Blocking work (registrations, a flush) on a thread of its own: the cooperative pool's two threads
    /// stay free for the tests running beside this one.
    static func onThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            Thread { continuation.resume(with: Result { try body() }) }.start()
        }
    }

    /// Registers `count` names `prefix0`... on a thread of its own; their connections.
    static func registerMany(_ prefix: String, count: Int, port: UInt16) async throws -> [Int32] {
        try await Self.onThread {
            var fds: [Int32] = []
            for index in 0..<count {
                let node = try FDStoreTests.register("\(prefix)\(index)", port: port)
                fds.append(node.fd)
                guard node.creation != nil else {
                    for fd in fds { close(fd) }
                    throw FDStoreTests.Refused(name: "\(prefix)\(index)")
                }
            }
            return fds
        }
    }

    static func exposition(_ gateway: Gateway) -> String {
        String(decoding: gateway.metrics.exposition(registry: gateway.registry, openConnections: 0), as: UTF8.self)
    }

    /// A gateway with the fd store against a fake systemd that spends `delay` µs per message, the sender
    /// behind `gate`.
    static func start(
        delay: UInt32,
        gate: SenderGate
    ) async throws -> (FakeFDStore, Gateway, FDStore, GatewayTests.Runner) {
        let store = try FakeFDStore(path: FDStoreTests.path(), limit: 1000, delay: delay)
        let environment = FDStoreTests.environment(store, limit: 1000)
        let (logger, _) = GatewayTests.logger()
        let gateway = try Gateway.build(
            options: GatewayTests.options(http: false),
            environment: environment,
            logger: logger
        )
        let fdStore = try #require(
            gate.attach(to: gateway, environment: environment, logger: logger, sendingLimit: Self.limit)
        )
        let runner = try GatewayTests.Runner(gateway)
        try #require(
            await GatewayTests.poll(seconds: 10) { gateway.state == .running && fdStore.status.condition == .enabled }
        )
        try #require(await GatewayTests.poll(seconds: 10) { !store.names.contains("probe") })
        return (store, gateway, fdStore, runner)
    }

    @Test(
        "a burst: at most sendingLimit socket copies held, the rest wait and are all stored; one that ends while waiting is never sent"
    )
    func burst() async throws {
        let gate = SenderGate()
        let (store, gateway, fdStore, runner) = try await Self.start(delay: 10_000, gate: gate)
        defer { store.close() }
        defer { gateway.shutdown() }
        defer { gate.open() }
        var fds = try await Self.registerMany("burst", count: Self.burst - Self.late, port: gateway.epmdPort)
        defer { for fd in fds { close(fd) } }
        // systemd busy for the last `late` of the burst: at most `limit` copies are held, the rest wait.
        // (Unbounded, every unsent registration held one. Counted by the store itself: this process's
        // descriptors are shared with the tests that run beside this one.)
        gate.close()
        fds += try await Self.registerMany("late", count: Self.late, port: gateway.epmdPort)
        try #require(await GatewayTests.poll(seconds: 10) { gateway.registry.count == Self.burst })
        let exposition = Self.exposition(gateway)
        let sending = FDStoreTests.value("epmd_fdstore_sending", in: exposition) ?? -1
        let waiting = FDStoreTests.value("epmd_fdstore_waiting", in: exposition) ?? -1
        #expect(sending >= 0 && sending <= Double(Self.limit), "epmd_fdstore_sending \(sending)")
        try #require(waiting >= 5, "\(waiting) waited behind \(sending) held")

        // The last five end while they wait (waiting is first in, first out): never sent, so never
        // removed either.
        for fd in fds.suffix(5) { close(fd) }
        fds.removeLast(5)
        try #require(await GatewayTests.poll(seconds: 10) { gateway.registry.count == Self.burst - 5 })
        gate.open()
        try #require(
            await GatewayTests.poll(seconds: 30) {
                fdStore.flush(milliseconds: 1) && store.names.count == Self.burst - 5 + 1
            },
            "stored \(store.names.count) of \(Self.burst - 5 + 1)"
        )
        let removals = store.messages.filter { $0.hasPrefix("FDSTOREREMOVE=1") && !$0.hasSuffix("=probe") }
        #expect(removals.isEmpty, "\(removals)")
        #expect(Set(store.names).count == store.names.count, "a name stored twice: \(store.names)")
        let after = Self.exposition(gateway)
        #expect(FDStoreTests.value("epmd_fdstore_sending", in: after) == 0)
        #expect(FDStoreTests.value("epmd_fdstore_waiting", in: after) == 0)
        #expect(FDStoreTests.value("epmd_fdstore_stored", in: after) == Double(Self.burst - 5 + 1))
        gateway.shutdown()
        _ = try await runner.finish()
    }

    @Test("a shutdown in the middle of a burst queues what still waits: every registration is kept")
    func shutdownWhileWaiting() async throws {
        let gate = SenderGate()
        let (store, gateway, fdStore, runner) = try await Self.start(delay: 10_000, gate: gate)
        defer { store.close() }
        defer { gate.open() }
        var fds = try await Self.registerMany("leaving", count: Self.burst - Self.late, port: gateway.epmdPort)
        defer { for fd in fds { close(fd) } }
        gate.close()
        fds += try await Self.registerMany("last", count: Self.late, port: gateway.epmdPort)
        try #require(await GatewayTests.poll(seconds: 10) { gateway.registry.count == Self.burst })
        let waiting = FDStoreTests.value("epmd_fdstore_waiting", in: Self.exposition(gateway)) ?? 0
        #expect(waiting > 0)
        gate.open()
        gateway.shutdown()
        _ = try await runner.finish()
        #expect(try await Self.onThread { fdStore.flush(milliseconds: 30_000) })
        #expect(store.names.count == Self.burst + 1, "stored \(store.names.count) of \(Self.burst + 1)")
        // The clients' connections live on in the store: no EOF.
        for fd in [fds[0], fds[Self.burst - 1]] {
            var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            #expect(poll(&entry, 1, 50) == 0)
        }
    }
}
