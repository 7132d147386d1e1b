import EPMDPosix
import EPMDProtocol
import EPMDRegistry
import EPMDServer
import FuzzSupport

/// Input: a sequence of events on up to four connections sharing one `NodeRegistry`. Each event is a
/// byte (its low two bits pick the connection, the rest the kind) and its arguments:
/// - bytes arrive (a length byte, then that many bytes) → the state machine decides; a request it
///   serves goes to `EPMDRequestPolicy.decide`, and the reply is started;
/// - the reply is written;
/// - the connection terminates (the loop unregisters what lived on it);
/// - a new connection replaces it (a flags byte: local peer, relaxed command check);
/// - the connection is exported and adopted (state and buffered bytes), as across a restart.
///
/// Invariants: no trap; a machine decides nothing once closed; a served request is never one the
/// machine should have refused; a registration lives exactly on the connection that made it and goes
/// when that connection terminates or a STOP removes it; at the end, with every connection gone, the
/// registry is empty.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    ConnectionTarget.run(fuzzBytes(data, count))
    return 0
}

/// The program's `main` (see Package.swift): libFuzzer's driver over ``fuzz(_:_:)``.
@_cdecl("FuzzConnection_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    runFuzzer(argc: argc, argv: argv) { data, count in fuzz(data, count) }
}

enum ConnectionTarget {
    struct Connection {
        var id: ConnectionID
        var machine: EPMDConnectionStateMachine
        var open: Bool
    }

    static let slots = 4
    static let portPrefix = EPMDResponse.portPrefix(4369)

    static func run(_ data: [UInt8]) {
        var input = FuzzInput(data)
        // A fixed clock: the same input always makes the same creations and events.
        let registry = NodeRegistry(historyLimit: 5, eventCapacity: 16, clock: { 1_700_000_000 })
        var nextID: UInt64 = 1
        var connections: [Connection] = (0..<self.slots).map { slot in
            defer { nextID += 1 }
            return Connection(
                id: ConnectionID(nextID),
                machine: EPMDConnectionStateMachine(isLocalPeer: slot != 3, relaxedCommandCheck: slot == 2),
                open: true
            )
        }
        var events = 0
        while !input.isAtEnd, events < 256 {
            events += 1
            let event = input.byte()
            let slot = Int(event & 3)
            switch (event >> 2) % 5 {
            case 0:
                let bytes = input.take(Int(input.byte()))
                self.receive(bytes, on: &connections, slot: slot, registry: registry)
            case 1:
                var connection = connections[slot]
                let state = connection.machine.state
                let keep = connection.machine.replyWritten()
                fuzzCheck(keep == (state == .replying(keep: true)), "replyWritten \(keep) in \(state)")
                if !keep { self.terminate(&connection, registry: registry) }
                connections[slot] = connection
            case 2:
                self.terminate(&connections[slot], registry: registry)
            case 3:
                self.terminate(&connections[slot], registry: registry)
                let flags = input.byte()
                connections[slot] = Connection(
                    id: ConnectionID(nextID),
                    machine: EPMDConnectionStateMachine(
                        isLocalPeer: flags & 1 == 0,
                        relaxedCommandCheck: flags & 2 != 0
                    ),
                    open: true
                )
                nextID += 1
            default:
                let machine = connections[slot].machine
                let adopted = EPMDConnectionStateMachine(
                    isLocalPeer: machine.isLocalPeer,
                    relaxedCommandCheck: machine.relaxedCommandCheck,
                    state: machine.state,
                    buffered: machine.buffered
                )
                fuzzCheck(adopted == machine, "an adopted machine differs from the exported one")
                connections[slot].machine = adopted
            }
            self.checkRegistry(registry, connections: connections)
        }
        for slot in connections.indices { self.terminate(&connections[slot], registry: registry) }
        fuzzCheck(registry.isEmpty, "registrations left after every connection closed")
    }

    static func receive(_ bytes: [UInt8], on connections: inout [Connection], slot: Int, registry: NodeRegistry) {
        var connection = connections[slot]
        let before = connection.machine.state
        fuzzCheck(connection.machine.readLimit > 0, "read limit \(connection.machine.readLimit)")
        fuzzCheck(connection.machine.readLimit <= EPMDFrameAssembler.capacity, "read limit past the capacity")
        // The loop never reads more than the read limit.
        let decision = connection.machine.received(bytes.prefix(connection.machine.readLimit))
        switch decision {
        case .awaitMore:
            fuzzCheck(before == .receiving, "awaits more in \(before)")
            connections[slot] = connection
        case .close:
            fuzzCheck(connection.machine.state == .closed, "closed but in \(connection.machine.state)")
            self.terminate(&connection, registry: registry)
            connections[slot] = connection
        case .serve(let request):
            fuzzCheck(before == .receiving, "served in \(before)")
            self.checkPermitted(request, connection.machine)
            let context = EPMDRequestPolicy.Context(
                connection: connection.id,
                fd: Int32(truncatingIfNeeded: connection.id.rawValue),
                peer: .loopbackIPv4(port: 40000),
                relaxedCommandCheck: connection.machine.relaxedCommandCheck,
                portPrefix: self.portPrefix
            )
            let decision = EPMDRequestPolicy.decide(request, context: context, registry: registry)
            connection.machine.replyStarted(keep: decision.keep)
            connections[slot] = connection
            self.apply(decision, request: request, on: &connections, slot: slot, registry: registry)
        }
    }

    static func checkPermitted(_ request: EPMDRequest, _ machine: EPMDConnectionStateMachine) {
        switch request {
        case .alive2, .dump, .kill:
            fuzzCheck(machine.isLocalPeer, "local-only request served to a remote peer")
        case .stop:
            fuzzCheck(machine.isLocalPeer && machine.relaxedCommandCheck, "STOP served without the relaxed check")
        case .portPlease2, .names:
            break
        }
    }

    static func apply(
        _ decision: EPMDRequestPolicy.Decision,
        request: EPMDRequest,
        on connections: inout [Connection],
        slot: Int,
        registry: NodeRegistry
    ) {
        let id = connections[slot].id
        switch request {
        case .alive2(let alive):
            fuzzCheck(decision.keep, "an ALIVE2 reply does not keep its connection")
            fuzzCheck(decision.reply.count == (alive.wantsExtendedReply ? 6 : 4), "ALIVE2 reply length")
            if decision.result == .ok {
                fuzzCheck(registry.lookup(alive.name)?.connection == id, "registered on another connection")
            }
        case .portPlease2(let name):
            let found = registry.lookup(name)
            fuzzCheck((decision.result == .ok) == (found != nil), "lookup result and registry disagree")
            if let found { fuzzCheck(decision.reply == EPMDResponse.port2Found(found.request), "PORT2 reply") }
        case .names:
            fuzzCheck(decision.reply == self.portPrefix + registry.namesText(), "NAMES reply")
        case .dump, .kill, .stop:
            fuzzCheck(!decision.keep, "\(request) keeps its connection")
        }
        for effect in decision.effects {
            switch effect {
            case .closeStoppedNode(let stopped, let name):
                fuzzCheck(registry.lookup(name) == nil, "STOP left the name registered")
                // The loop closes the connection the stopped node lived on.
                if let index = connections.firstIndex(where: { $0.id == stopped }) {
                    connections[index].machine.terminated()
                    fuzzCheck(
                        registry.unregister(connection: stopped) == nil,
                        "the stopped connection still holds a registration"
                    )
                    connections[index].open = false
                }
            case .registered(let node):
                fuzzCheck(node.connection == id, "registered on connection \(node.connection), not \(id)")
            case .registrationRefused, .killRefused, .exit:
                break
            }
        }
    }

    static func terminate(_ connection: inout Connection, registry: NodeRegistry) {
        connection.machine.terminated()
        fuzzCheck(connection.machine.state == .closed, "terminated but in \(connection.machine.state)")
        guard connection.open else { return }
        connection.open = false
        registry.unregister(connection: connection.id)
        let id = connection.id
        fuzzCheck(!registry.snapshot().contains { $0.connection == id }, "a closed connection is still registered")
    }

    static func checkRegistry(_ registry: NodeRegistry, connections: [Connection]) {
        let nodes = registry.snapshot()
        fuzzCheck(nodes.count == registry.count, "snapshot of \(nodes.count), count \(registry.count)")
        fuzzCheck(Set(nodes.map(\.name)).count == nodes.count, "a name registered twice")
        fuzzCheck(Set(nodes.map(\.connection)).count == nodes.count, "a connection holds two registrations")
        for node in nodes {
            fuzzCheck(
                connections.contains { $0.id == node.connection && $0.open },
                "a registration lives on a closed connection"
            )
            fuzzCheck(registry.lookup(node.name) == node, "lookup disagrees with the snapshot")
        }
    }
}
