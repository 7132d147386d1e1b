import EPMDProtocol
import EPMDRegistry
import Synchronization
import Testing

/// The event ring behind `/v1/events` and `/v1/events/history`.
@Suite struct RegistryEventsTests {
    typealias State = NodeRegistry.State

    static func register(
        _ state: inout State,
        _ name: String,
        connection: UInt64,
        type: UInt8 = 77,
        at now: Double
    )
        throws
    {
        try state.register(
            Alive2Request(port: UInt16(connection), nodeType: type, name: Array(name.utf8)),
            connection: ConnectionID(connection),
            fd: Int32(connection),
            peer: "127.0.0.1",
            now: now
        )
    }

    @Test("every change makes one event whose id is the new generation, with reason, lifetime and flap flag")
    func oneEventPerGeneration() throws {
        var state = State(eventCapacity: 16, flapWindow: 10)
        try Self.register(&state, "a", connection: 1, at: 100)
        try Self.register(&state, "b", connection: 2, at: 101)
        #expect(throws: NodeRegistryError.nameInUse) { try Self.register(&state, "a", connection: 3, at: 102) }
        state.unregister(connection: ConnectionID(1), now: 103, reason: .closed)
        state.unregister(name: Array("b".utf8), now: 200)
        #expect(state.unregister(connection: ConnectionID(9), now: 201) == nil)

        #expect(state.generation == 4)
        let events = try #require(state.events(after: 0).eventList, "expected events")
        #expect(events.map(\.id) == [1, 2, 3, 4])
        #expect(events.map(\.name) == ["registered", "registered", "unregistered", "unregistered"])
        #expect(events[2].reason == .closed && events[2].lifetime == 3 && events[2].isFlap)
        #expect(events[3].reason == .stop && events[3].lifetime == 99 && !events[3].isFlap)
        #expect(events[0].reason == nil && events[0].lifetime == nil)
        #expect(state.lastEvent == events[3])
    }

    @Test("events(after:): nothing when current, the tail when in the buffer, a reset when too old or from another run")
    func resumption() throws {
        var state = State(eventCapacity: 3)
        #expect(state.events(after: 0) == .events([]))
        if case .reset(let generation, let nodes) = state.events(after: 5) {
            #expect(generation == 0 && nodes.isEmpty)
        } else {
            Issue.record("an id from the future must reset")
        }
        for index in 1...5 { try Self.register(&state, "n\(index)", connection: UInt64(index), at: 0) }
        // The buffer holds ids 3, 4, 5.
        #expect(state.events(after: 5) == .events([]))
        let tail = try #require(state.events(after: 3).eventList, "3 is in the buffer")
        #expect(tail.map(\.id) == [4, 5])
        let all = try #require(state.events(after: 2).eventList, "after 2 is everything the buffer holds")
        #expect(all.map(\.id) == [3, 4, 5])
        let (generation, nodes) = try #require(state.events(after: 1).resetTable, "id 2 was evicted: a reset")
        #expect(generation == 5)
        #expect(Set(nodes.map { String(decoding: $0.name, as: UTF8.self) }) == ["n1", "n2", "n3", "n4", "n5"])
        #expect(state.events(after: 6) == .reset(generation: 5, nodes: Array(state.nodes.values)))
    }

    @Test("the ring keeps the newest events in order across many wrap-arounds")
    func ringWraps() throws {
        var state = State(eventCapacity: 7)
        for index in 1...100 {
            try Self.register(&state, "n", connection: UInt64(index), at: Double(index))
            state.unregister(connection: ConnectionID(UInt64(index)), now: Double(index) + 0.5)
        }
        let history = state.history()
        #expect(history.events.map(\.id) == Array(194...200))
        #expect(history.capacity == 7 && history.generation == 200)
    }

    @Test("history counts flaps per name within the buffer; the window is configurable")
    func flaps() throws {
        var state = State(eventCapacity: 64, flapWindow: 5)
        for round in 0..<3 {
            let start = Double(round * 100)
            try Self.register(&state, "flappy", connection: UInt64(round + 1), at: start)
            state.unregister(connection: ConnectionID(UInt64(round + 1)), now: start + 1)
        }
        try Self.register(&state, "steady", connection: 10, at: 0)
        state.unregister(connection: ConnectionID(10), now: 6, reason: .error)
        try Self.register(&state, "once", connection: 11, at: 0)
        state.unregister(connection: ConnectionID(11), now: 4.9, reason: .strayData)
        try Self.register(&state, "stopped", connection: 12, at: 0)
        state.unregister(name: Array("stopped".utf8), now: 1)
        try Self.register(&state, "shut", connection: 13, at: 0)
        state.unregister(connection: ConnectionID(13), now: 1, reason: .shutdown)
        let history = state.history()
        // STOP and our own shutdown are not the node's doing: never flaps.
        #expect(history.flapsByName == [Array("flappy".utf8): 3, Array("once".utf8): 1])
        #expect(history.flapWindow == 5)
        #expect(history.events.filter(\.isFlap).count == 4)
    }

    @Test("a run's generations start at its own base: ids from an earlier run reset, never resume")
    func generationBase() throws {
        #expect(NodeRegistry.runGeneration(clock: { 1_795_411_787.25 }) == 1_795_411_787_250_000)
        #expect(NodeRegistry.runGeneration(clock: { 1_795_411_787.25 }) < 1 << 53)
        var state = State(initialGeneration: 1_000)
        #expect(state.generation == 1_000)
        #expect(state.events(after: 1_000) == .events([]))
        #expect(state.events(after: 7) == .reset(generation: 1_000, nodes: []))
        try Self.register(&state, "a", connection: 1, at: 0)
        #expect(state.lastEvent?.id == 1_001)
        let events = try #require(state.events(after: 1_000).eventList, "1000 is the base: the first event follows it")
        #expect(events.map(\.id) == [1_001])
    }

    @Test("type counts follow registrations of normal, hidden and other nodes")
    func typeCounts() throws {
        var state = State()
        try Self.register(&state, "a", connection: 1, type: 77, at: 0)
        try Self.register(&state, "b", connection: 2, type: 72, at: 0)
        try Self.register(&state, "c", connection: 3, type: 72, at: 0)
        try Self.register(&state, "d", connection: 4, type: 1, at: 0)
        state.unregister(connection: ConnectionID(2), now: 1)
        var expected = NodeTypeCounts()
        expected.normal = 1
        expected.hidden = 1
        expected.other = 1
        #expect(state.typeCounts == expected)
    }

    @Test("observers get each event once, after the change, outside the lock")
    func observers() {
        let registry = NodeRegistry(clock: { 50 })
        let seen = Mutex<[RegistryEvent]>([])
        registry.addChangeObserver { event in
            // Reading the registry from the observer would deadlock if it ran under the lock.
            #expect(registry.generation == event.id)
            seen.withLock { $0.append(event) }
        }
        _ = registry.register(
            Alive2Request(port: 1, name: Array("x".utf8)),
            connection: ConnectionID(1),
            fd: 3,
            peer: ""
        )
        _ = registry.register(
            Alive2Request(port: 1, name: Array("x".utf8)),
            connection: ConnectionID(2),
            fd: 4,
            peer: ""
        )
        registry.unregister(connection: ConnectionID(1), reason: .error)
        registry.unregister(connection: ConnectionID(1), reason: .error)
        let events = seen.withLock { $0 }
        #expect(events.map(\.id) == [1, 2])
        #expect(events.last?.reason == .error)
    }
}

extension RegistryEventsSince {
    /// The events, when this is `.events` (for `try #require`).
    var eventList: [RegistryEvent]? {
        guard case .events(let events) = self else { return nil }
        return events
    }

    /// The generation and table, when this is `.reset` (for `try #require`).
    var resetTable: (generation: UInt64, nodes: [RegisteredNode])? {
        guard case .reset(let generation, let nodes) = self else { return nil }
        return (generation, nodes)
    }
}
