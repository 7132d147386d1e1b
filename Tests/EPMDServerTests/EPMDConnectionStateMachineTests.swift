import EPMDProtocol
import EPMDServer
import Testing

@Suite struct EPMDConnectionStateMachineTests {
    static let alive = [0, 14] + Alive2Request(port: 1, name: [97], extra: []).encode()

    @Test("a lookup is served, answered and closed")
    func lookup() {
        var machine = EPMDConnectionStateMachine(isLocalPeer: false, relaxedCommandCheck: false)
        #expect(machine.received([0, 4, 122]) == .awaitMore)
        #expect(machine.received([102, 111, 111]) == .serve(.portPlease2(name: Array("foo".utf8))))
        machine.replyStarted(keep: false)
        #expect(machine.isTimed)
        #expect(machine.replyWritten() == false)
        #expect(machine.state == .closed)
    }

    @Test("an ALIVE2 connection is kept and untimed; any byte afterwards is stray data")
    func alive2Kept() throws {
        var machine = EPMDConnectionStateMachine(isLocalPeer: true, relaxedCommandCheck: false)
        let decision = machine.received(Self.alive)
        let served: Bool
        if case .serve(.alive2) = decision { served = true } else { served = false }
        try #require(served, "ALIVE2 not served: \(decision)")
        machine.replyStarted(keep: true)
        #expect(machine.replyWritten() == true)
        #expect(machine.state == .kept)
        #expect(!machine.isTimed)
        #expect(machine.received([0]) == .close(.strayData))
    }

    @Test("local-only requests from a non-local peer are closed without a reply")
    func nonLocal() {
        for (body, code) in [
            (Self.alive, EPMDMessageCode.alive2Request), ([0, 1, 100], .dumpRequest), ([0, 1, 107], .killRequest),
            ([0, 4, 115, 102, 111, 111], .stopRequest),
        ] as [([UInt8], EPMDMessageCode)] {
            var machine = EPMDConnectionStateMachine(isLocalPeer: false, relaxedCommandCheck: true)
            #expect(machine.received(body) == .close(.notLocal(code)))
        }
        var names = EPMDConnectionStateMachine(isLocalPeer: false, relaxedCommandCheck: false)
        #expect(names.received([0, 1, 110]) == .serve(.names))
    }

    @Test(
        "--names-local-only: NAMES from a non-local peer is closed unanswered; local NAMES and any PORT_PLEASE2 are served"
    )
    func namesLocalOnly() {
        var remote = EPMDConnectionStateMachine(isLocalPeer: false, relaxedCommandCheck: false, namesLocalOnly: true)
        #expect(remote.received([0, 1, 110]) == .close(.notLocal(.namesRequest)))
        var local = EPMDConnectionStateMachine(isLocalPeer: true, relaxedCommandCheck: false, namesLocalOnly: true)
        #expect(local.received([0, 1, 110]) == .serve(.names))
        var lookup = EPMDConnectionStateMachine(isLocalPeer: false, relaxedCommandCheck: false, namesLocalOnly: true)
        #expect(lookup.received([0, 4, 122, 102, 111, 111]) == .serve(.portPlease2(name: Array("foo".utf8))))
    }

    @Test("non-local ALIVE2 is refused before its structure is checked, as C epmd does")
    func nonLocalBeforeStructure() {
        var machine = EPMDConnectionStateMachine(isLocalPeer: false, relaxedCommandCheck: false)
        #expect(machine.received([0, 3, 120, 0, 0]) == .close(.notLocal(.alive2Request)))
    }

    @Test("STOP needs relaxed command checking")
    func stop() {
        var strict = EPMDConnectionStateMachine(isLocalPeer: true, relaxedCommandCheck: false)
        #expect(strict.received([0, 4, 115, 102, 111, 111]) == .close(.stopNotAllowed))
        var relaxed = EPMDConnectionStateMachine(isLocalPeer: true, relaxedCommandCheck: true)
        #expect(relaxed.received([0, 4, 115, 102, 111, 111]) == .serve(.stop(name: Array("foo".utf8))))
    }

    @Test(
        "malformed input closes with the reason",
        arguments: [
            ([0, 0], EPMDProtocolError.invalidLength),
            ([0x0B, 0xF2], .invalidLength),
            ([0, 1, 110, 110], .overrun),
            ([0, 1, 97], .unknownCode),
            ([0, 3, 120, 0, 0], .alive2TooSmall),
            ([0, 1, 122], .emptyName),
        ] as [([UInt8], EPMDProtocolError)]
    )
    func malformed(bytes: [UInt8], error: EPMDProtocolError) {
        var machine = EPMDConnectionStateMachine(isLocalPeer: true, relaxedCommandCheck: false)
        #expect(machine.received(bytes) == .close(.malformed(error)))
        #expect(machine.state == .closed)
    }
}
