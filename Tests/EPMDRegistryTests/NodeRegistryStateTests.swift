import EPMDProtocol
import EPMDRegistry
import Testing

@Suite struct NodeRegistryStateTests {
    typealias State = NodeRegistry.State

    static func alive(_ name: String, port: UInt16 = 5555, high: UInt16 = 6, extra: [UInt8] = []) -> Alive2Request {
        Alive2Request(port: port, highestVersion: high, lowestVersion: 5, name: Array(name.utf8), extra: extra)
    }

    @discardableResult
    static func register(
        _ state: inout State,
        _ name: String,
        connection: UInt64,
        now: Double = 1_795_411_787
    ) throws -> RegisteredNode {
        try state.register(Self.alive(name), connection: ConnectionID(connection), fd: 5, peer: "127.0.0.1", now: now)
    }

    @Test("a new name's creation is the clock plus one; re-registrations bump it")
    func creationNumbers() throws {
        var state = State()
        let first = try Self.register(&state, "cre", connection: 1)
        #expect(first.creation == 1_795_411_788)
        for (connection, expected) in [(2, 1_795_411_789), (3, 1_795_411_790), (4, 1_795_411_791)] {
            state.unregister(connection: ConnectionID(UInt64(connection - 1)), now: 0)
            let node = try Self.register(&state, "cre", connection: UInt64(connection))
            #expect(node.creation == UInt32(expected))
        }
        // Old nodes see counter % 3 + 1, different from the previous value each time.
        var previous = RegisteredNode.wireCreation(1_795_411_791, extended: false)
        for connection in 5...8 {
            state.unregister(connection: ConnectionID(UInt64(connection - 1)), now: 0)
            let node = try Self.register(&state, "cre", connection: UInt64(connection))
            let wire = RegisteredNode.wireCreation(node.creation, extended: false)
            #expect((1...3).contains(wire))
            #expect(wire != previous)
            previous = wire
        }
    }

    @Test("the counter wraps to 4, never below")
    func wrap() throws {
        var state = State()
        let node = try state.register(
            Self.alive("w"),
            connection: ConnectionID(1),
            fd: 1,
            peer: "",
            now: Double(UInt32.max)
        )
        #expect(node.creation == 4)
    }

    @Test("refusals: duplicate, long and invalid names, long extra")
    func refusals() throws {
        var state = State()
        try Self.register(&state, "foo", connection: 1)
        #expect(throws: NodeRegistryError.nameInUse) { try Self.register(&state, "foo", connection: 2) }
        #expect(throws: NodeRegistryError.nameTooLong) {
            try Self.register(&state, String(repeating: "a", count: 256), connection: 3)
        }
        #expect(throws: NodeRegistryError.nameTooLong) {
            try Self.register(&state, String(repeating: "a", count: 600), connection: 3)
        }
        #expect(throws: NodeRegistryError.invalidEncoding) {
            try state.register(
                Alive2Request(port: 1, name: [0xFF, 0xFE]),
                connection: ConnectionID(4),
                fd: 1,
                peer: "",
                now: 0
            )
        }
        #expect(throws: NodeRegistryError.extraTooLong) {
            try state.register(
                Self.alive("x", extra: [UInt8](repeating: 0xFF, count: 1021)),
                connection: ConnectionID(5),
                fd: 1,
                peer: "",
                now: 0
            )
        }
        let okExtra = try state.register(
            Self.alive("y", extra: [UInt8](repeating: 0xFF, count: 1020)),
            connection: ConnectionID(6),
            fd: 1,
            peer: "",
            now: 0
        )
        #expect(okExtra.request.extra.count == 1020)
        try Self.register(&state, String(repeating: "b", count: 255), connection: 7)
        let unicode = String(repeating: "\u{1F608}", count: 201)
        try Self.register(&state, unicode, connection: 8)
        #expect(state.lookup(Array(unicode.utf8)) != nil)
        #expect(state.nodes.count == 4)
    }

    @Test("NAMES lists newest first; unregistering by connection or name removes the entry")
    func namesOrder() throws {
        var state = State()
        try state.register(Self.alive("foo", port: 5555), connection: ConnectionID(1), fd: 5, peer: "", now: 0)
        try state.register(Self.alive("bar", port: 6666), connection: ConnectionID(2), fd: 6, peer: "", now: 0)
        #expect(state.namesText() == Array("name bar at port 6666\nname foo at port 5555\n".utf8))
        #expect(state.unregister(connection: ConnectionID(1), now: 0)?.name == Array("foo".utf8))
        #expect(state.unregister(connection: ConnectionID(1), now: 0) == nil)
        #expect(state.namesText() == Array("name bar at port 6666\n".utf8))
        #expect(
            state.dumpText()
                == Array(
                    "active name     <bar> at port 6666, fd = 6\n\0old/unused name <foo>, port = 5555, fd = 5 \n\0".utf8
                )
        )
        #expect(state.unregister(name: Array("bar".utf8), now: 0)?.connection == ConnectionID(2))
        #expect(state.namesText().isEmpty)
        #expect(state.generation == 4)
    }

    @Test("a new name takes over the oldest record once the history is over its limit")
    func historyTakeover() throws {
        var state = State(historyLimit: 5)
        // Six names registered and unregistered: the history holds 6 > 5.
        for index in 1...6 {
            try Self.register(&state, "n\(index)", connection: UInt64(index), now: Double(index * 1000))
            state.unregister(connection: ConnectionID(UInt64(index)), now: 0)
        }
        #expect(state.unregisteredCount == 6)
        // The new name inherits n1's counter, without a bump.
        let taken = try Self.register(&state, String(repeating: "b", count: 255), connection: 10, now: 99_999)
        #expect(taken.creation == 1001)
        #expect(state.unregisteredCount == 5)
        #expect(
            state.unregisteredOldestFirst().map { String(decoding: $0.name, as: UTF8.self) } == [
                "n2", "n3", "n4", "n5", "n6",
            ]
        )
        // A name still in the history is reused and bumped.
        let reused = try Self.register(&state, "n4", connection: 11, now: 0)
        #expect(reused.creation == 4002)
        #expect(state.unregisteredCount == 4)
    }

    @Test("1,000 names cycled as OTP's register_overflow does keep every count")
    func registerOverflowCycles() throws {
        var state = State()
        var connection: UInt64 = 0
        for cycle in 0..<10 {
            var live: [UInt64] = []
            for index in 1...1000 {
                connection += 1
                try Self.register(&state, "foo\(index)", connection: connection)
                live.append(connection)
            }
            #expect(state.nodes.count == 1000)
            for id in cycle.isMultiple(of: 2) ? live : live.reversed() {
                state.unregister(connection: ConnectionID(id), now: 0)
            }
            #expect(state.nodes.isEmpty)
            #expect(state.unregisteredCount == 1000)
        }
    }
}
