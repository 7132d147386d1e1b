import EPMDProtocol
import EPMDRegistry
import Synchronization
import Testing

/// The registry's state image: what a hand-over and the fd store's journal carry.
@Suite struct RegistryCodingTests {
    typealias State = NodeRegistry.State

    /// A state with live nodes of each type, an unregistered FIFO, and a ring that wrapped.
    static func populated() throws -> State {
        var state = State(historyLimit: 5, eventCapacity: 8, flapWindow: 10, initialGeneration: 1_000)
        var now = 1_700_000_000.25
        for index in 0..<12 {
            now += 1
            let type: UInt8 = index % 3 == 0 ? 72 : (index % 3 == 1 ? 77 : 9)
            try state.register(
                Alive2Request(
                    port: UInt16(20_000 + index),
                    nodeType: type,
                    highestVersion: index % 2 == 0 ? 6 : 5,
                    name: Array("node\(index)".utf8),
                    extra: index == 4 ? [0, 1, 2] : []
                ),
                connection: ConnectionID(UInt64(100 + index)),
                fd: Int32(10 + index),
                peer: index == 5 ? "::1" : "127.0.0.1",
                now: now
            )
        }
        for index in [1, 3, 5, 7] {
            now += 2
            state.unregister(connection: ConnectionID(UInt64(100 + index)), now: now, reason: .closed)
        }
        state.unregister(name: Array("node9".utf8), now: now + 30)
        try state.register(
            Alive2Request(port: 30_000, name: Array("node3".utf8)),
            connection: ConnectionID(500),
            fd: 40,
            peer: "127.0.0.1",
            now: now + 31
        )
        return state
    }

    @Test("a state round-trips: nodes, creations, the unregistered FIFO in order, the generation and the ring")
    func roundTrip() throws {
        let state = try Self.populated()
        let image = state.encoded()
        var restored = try State(decoding: image)
        #expect(restored.encoded() == image, "the image is canonical")
        #expect(restored.generation == state.generation)
        #expect(restored.nodes == state.nodes)
        #expect(restored.newestFirst() == state.newestFirst())
        #expect(restored.unregisteredOldestFirst() == state.unregisteredOldestFirst())
        #expect(restored.typeCounts == state.typeCounts)
        #expect(restored.history() == state.history())
        #expect(restored.events(after: state.generation - 3) == state.events(after: state.generation - 3))
        #expect(restored.lastEvent == state.lastEvent)
        #expect(restored.historyLimit == 5 && restored.flapWindow == 10)
        #expect(restored.dumpText() == state.dumpText())

        // The rules go on as before: a name that left gets its creation bumped, a live one is refused.
        var original = state
        let old = try #require(state.unregisteredOldestFirst().first { $0.name == Array("node1".utf8) })
        let again = try restored.register(
            Alive2Request(port: 1, name: Array("node1".utf8)),
            connection: ConnectionID(900),
            fd: 50,
            peer: "127.0.0.1",
            now: 1_800_000_000
        )
        #expect(again.creation == old.creation + 1)
        #expect(throws: NodeRegistryError.nameInUse) {
            try restored.register(
                Alive2Request(port: 1, name: Array("node0".utf8)),
                connection: ConnectionID(901),
                fd: 51,
                peer: "127.0.0.1",
                now: 1_800_000_001
            )
        }
        let mirrored = try original.register(
            Alive2Request(port: 1, name: Array("node1".utf8)),
            connection: ConnectionID(900),
            fd: 50,
            peer: "127.0.0.1",
            now: 1_800_000_000
        )
        #expect(mirrored == again)
        #expect(restored.encoded() == original.encoded())
    }

    @Test("a restart adds one restarted event: ids stay contiguous, nodes and lifetimes untouched")
    func restartEvent() throws {
        let state = try Self.populated()
        let registry = NodeRegistry(restoring: try State(decoding: state.encoded()), clock: { 1_800_000_000 })
        let seen = Mutex<[RegistryEvent]>([])
        registry.addChangeObserver { event in seen.withLock { $0.append(event) } }
        let event = registry.recordRestart(method: .handover)
        #expect(event.id == state.generation + 1 && registry.generation == state.generation + 1)
        #expect(event.kind == .restarted(.handover) && event.node == nil && event.nodeCount == state.nodes.count)
        #expect(event.name == "restarted" && event.restartMethod == .handover)
        #expect(seen.withLock { $0 } == [event])
        #expect(registry.events(after: state.generation) == .events([event]))
        #expect(registry.snapshot() == state.newestFirst(), "registration times and creations kept")
        // The image of a restarted registry round-trips too (an event without a node).
        let copy = registry.copyState()
        #expect(try State(decoding: copy.encoded()).encoded() == copy.encoded())
    }

    @Test("damaged images throw, never trap: every truncation, every flipped byte, random bytes")
    func damagedImages() throws {
        let image = try Self.populated().encoded()
        for length in 0..<image.count {
            #expect(throws: StateDecodingError.self) { try State(decoding: Array(image.prefix(length))) }
        }
        #expect(throws: StateDecodingError.self) { try State(decoding: image + [0]) }
        var random = UInt64(0x1234_5678)
        func next() -> UInt64 {
            random = random &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return random >> 33
        }
        for _ in 0..<3000 {
            var damaged = image
            for _ in 0...(next() % 4) {
                damaged[Int(next() % UInt64(damaged.count))] = UInt8(truncatingIfNeeded: next())
            }
            // Either it decodes to a state that obeys the rules, or it throws.
            if let state = try? State(decoding: damaged) {
                #expect(state.nodes.count == state.typeCounts.normal + state.typeCounts.hidden + state.typeCounts.other)
            }
        }
        for size in [0, 1, 6, 40, 400] {
            let bytes = (0..<size).map { _ in UInt8(truncatingIfNeeded: next()) }
            #expect(throws: StateDecodingError.self) { try State(decoding: bytes) }
        }
        // A version this binary does not read is refused by name.
        var other = image
        other[5] = 99
        #expect {
            try State(decoding: other)
        } throws: { error in
            (error as? StateDecodingError)?.message.contains("version 99") == true
        }
    }
}
