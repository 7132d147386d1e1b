import EPMDProtocol
import Testing

@Suite struct EPMDRequestTests {
    @Test("simple requests decode from their code byte; extra bytes inside the length are ignored")
    func simpleRequests() throws {
        #expect(try EPMDRequest.decode([110]) == .names)
        #expect(try EPMDRequest.decode([110, UInt8(ascii: "X")]) == .names)
        #expect(try EPMDRequest.decode([100]) == .dump)
        #expect(try EPMDRequest.decode([107, 1, 2]) == .kill)
    }

    @Test(
        "unknown and legacy codes are refused",
        arguments: [UInt8(ascii: "a"), UInt8(ascii: "p"), UInt8(ascii: "Y"), 0, 255, 121, 118, 119]
    )
    func unknownCodes(code: UInt8) {
        #expect(throws: EPMDProtocolError.unknownCode) { try EPMDRequest.decode([code]) }
    }

    @Test("ALIVE2 fields decode as sent, bytes after Extra ignored")
    func alive2Decode() throws {
        let request = Alive2Request(
            port: 5555,
            nodeType: 72,
            nodeProtocol: 9,
            highestVersion: 6,
            lowestVersion: 5,
            name: Array("foo".utf8),
            extra: [65, 66, 67, 0, 0]
        )
        let body = request.encode()
        #expect(body == [120, 0x15, 0xB3, 72, 9, 0, 6, 0, 5, 0, 3, 102, 111, 111, 0, 5, 65, 66, 67, 0, 0])
        #expect(try EPMDRequest.decode(body) == .alive2(request))
        #expect(try EPMDRequest.decode(body + [1, 2, 3, 4, 5, 6, 7, 8]) == .alive2(request))
    }

    @Test("ALIVE2 structural errors in C epmd's order")
    func alive2Errors() {
        // 11-byte and 9-byte bodies (alive_req_too_small_1/2) and the 13-byte limit.
        #expect(throws: EPMDProtocolError.alive2TooSmall) {
            try Alive2Request.decode([UInt8](repeating: 120, count: 11))
        }
        #expect(throws: EPMDProtocolError.alive2TooSmall) {
            try Alive2Request.decode([120] + [UInt8](repeating: 0, count: 8))
        }
        #expect(throws: EPMDProtocolError.alive2TooSmall) {
            try Alive2Request.decode([120] + [UInt8](repeating: 0, count: 12))
        }
        // Name length past the body.
        var body: [UInt8] = [120, 0, 1, 77, 0, 0, 6, 0, 5, 0, 50, 97, 0, 0]
        #expect(throws: EPMDProtocolError.alive2NameLength) { try Alive2Request.decode(body) }
        // Extra length past the body (buffer_overrun_1: Elen = N with no extra bytes).
        body = [120, 0, 1, 77, 0, 0, 6, 0, 5, 0, 1, 97, 0, 7]
        #expect(throws: EPMDProtocolError.alive2ExtraLength) { try Alive2Request.decode(body) }
        // NUL inside or at the end of the name.
        let inside = Alive2Request(port: 1, name: Array("foo\0bar".utf8)).encode()
        #expect(throws: EPMDProtocolError.nulInName) { try Alive2Request.decode(inside) }
        let terminated = Alive2Request(port: 1, name: Array("foobar\0".utf8)).encode()
        #expect(throws: EPMDProtocolError.nulInName) { try Alive2Request.decode(terminated) }
    }

    @Test("an empty name with a non-empty extra is structurally valid (C epmd registers it)")
    func emptyName() throws {
        let body = Alive2Request(port: 1234, name: [], extra: [1]).encode()
        #expect(body.count == 14)
        #expect(try Alive2Request.decode(body).name.isEmpty)
    }

    @Test("an empty name and no extra decode only with bytes after them: C epmd's size check is > 13 (FuzzFrame)")
    func emptyNameNoExtra() throws {
        // FuzzFrame's round-trip check found it: the request decodes from a padded body, its own 13-byte
        // encoding does not. Both as C epmd decides; the registry then refuses the empty name.
        let bare = Alive2Request(port: 1, name: [], extra: []).encode()
        #expect(bare.count == 13)
        #expect(throws: EPMDProtocolError.alive2TooSmall) { try Alive2Request.decode(bare) }
        let padded = try Alive2Request.decode(bare + [77])
        #expect(padded == Alive2Request(port: 1, name: [], extra: []))
        #expect(padded.encode() == bare)
    }

    @Test("PORT2 strips one trailing NUL and refuses empty names and inner NULs")
    func port2Names() throws {
        #expect(try EPMDRequest.decode([122] + Array("foo".utf8)) == .portPlease2(name: Array("foo".utf8)))
        #expect(try EPMDRequest.decode([122] + Array("foo".utf8) + [0]) == .portPlease2(name: Array("foo".utf8)))
        #expect(throws: EPMDProtocolError.emptyName) { try EPMDRequest.decode([122]) }
        #expect(throws: EPMDProtocolError.emptyName) { try EPMDRequest.decode([122, 0]) }
        #expect(throws: EPMDProtocolError.nulInName) { try EPMDRequest.decode([122, 102, 0, 111]) }
        #expect(throws: EPMDProtocolError.nulInName) { try EPMDRequest.decode([122, 102, 0, 0]) }
        #expect(throws: EPMDProtocolError.invalidName) { try EPMDRequest.decode([122, 0xFF, 0xFE]) }
    }

    @Test("PORT2 names up to 255 code points are looked up (C epmd stops at 254: documented difference)")
    func port2Lengths() throws {
        let name255 = [UInt8](repeating: 97, count: 255)
        #expect(try EPMDRequest.decode([122] + name255) == .portPlease2(name: name255))
        #expect(throws: EPMDProtocolError.invalidName) { try EPMDRequest.decode([122] + name255 + [97]) }
        let emoji = Array(String(repeating: "\u{1F608}", count: 255).utf8)
        #expect(try EPMDRequest.decode([122] + emoji) == .portPlease2(name: emoji))
    }

    @Test("STOP takes the name as a C string")
    func stopNames() throws {
        #expect(try EPMDRequest.decode([115] + Array("foo".utf8) + [0]) == .stop(name: Array("foo".utf8)))
        #expect(try EPMDRequest.decode([115] + Array("foo".utf8) + [0, 98]) == .stop(name: Array("foo".utf8)))
        #expect(try EPMDRequest.decode([115, 0]) == .stop(name: []))
        #expect(throws: EPMDProtocolError.emptyName) { try EPMDRequest.decode([115]) }
    }
}
