import EPMDProtocol
import Testing

@Suite struct NodeTypeTests {
    @Test("77 is normal, 72 hidden, any other code is kept as `other`", arguments: 0...255)
    func decode(code: Int) {
        let type = NodeType(code: UInt8(code))
        #expect(type.code == UInt8(code))
        switch code {
        case 77: #expect(type == .normal && type.label == "normal")
        case 72: #expect(type == .hidden && type.label == "hidden")
        default: #expect(type == .other(UInt8(code)) && type.label == "other")
        }
    }

    @Test("labels parse back for normal and hidden only; equality and hashing follow the code")
    func labels() {
        #expect(NodeType(label: "normal") == .normal)
        #expect(NodeType(label: "hidden") == .hidden)
        #expect(NodeType(label: "other") == nil)
        #expect(NodeType(label: "77") == nil)
        #expect(NodeType.other(77) == .normal, "compared by code")
        #expect(Set([NodeType.normal, .other(77), .hidden, .other(9)]).count == 3)
        #expect(NodeType.labelledKinds.map(\.label) == ["normal", "hidden", "other"])
    }

    @Test("an ALIVE2 request's type is its decoded type byte")
    func request() {
        #expect(Alive2Request(port: 1, name: [97]).type == .normal)
        #expect(Alive2Request(port: 1, nodeType: 72, name: [97]).type == .hidden)
        #expect(Alive2Request(port: 1, nodeType: 9, name: [97]).type == .other(9))
    }

    @Test("every protocol error is listed once, with a distinct label")
    func protocolErrors() {
        let labels = EPMDProtocolError.allCases.map(\.label)
        #expect(labels.count == 10)
        #expect(Set(labels).count == labels.count)
        #expect(labels.contains("invalid_length") && labels.contains("truncated"))
        #expect(EPMDProtocolError.overrun.reason == EPMDProtocolError.overrun.label)
    }
}
