import EPMDProtocol
import Testing

@Suite struct EPMDFrameAssemblerTests {
    @Test("a request in one piece", arguments: [1, 2, 100, 3057])
    func whole(length: Int) {
        var assembler = EPMDFrameAssembler()
        let body = [UInt8](repeating: 110, count: length)
        #expect(assembler.append([UInt8(length >> 8), UInt8(length & 0xFF)] + body) == .complete(body))
    }

    @Test(
        "lengths 0 and 3058 and above are refused as soon as the header is in",
        arguments: [0, 3058, 3059, 63000, 65535]
    )
    func invalidLengths(length: Int) {
        var assembler = EPMDFrameAssembler()
        #expect(assembler.append([UInt8(length >> 8)]) == .needMore)
        #expect(assembler.append([UInt8(length & 0xFF)]) == .invalid(.invalidLength))
    }

    @Test("fragments are reassembled byte by byte")
    func fragments() {
        var assembler = EPMDFrameAssembler()
        let frame: [UInt8] = [0, 4, 122, 102, 111, 111]
        for byte in frame.dropLast() {
            #expect(assembler.append([byte]) == .needMore)
        }
        #expect(assembler.append([frame[frame.count - 1]]) == .complete([122, 102, 111, 111]))
    }

    @Test("a header then a partial body waits; the rest completes it")
    func partialThenRest() {
        var assembler = EPMDFrameAssembler()
        #expect(assembler.append([0, 4, 122]) == .needMore)
        #expect(assembler.bufferedCount == 3)
        #expect(assembler.append([102, 111, 111]) == .complete([122, 102, 111, 111]))
    }

    @Test("trailing bytes or a second request in the same read are an overrun")
    func overrun() {
        var assembler = EPMDFrameAssembler()
        #expect(assembler.append([0, 1, 110, 0]) == .invalid(.overrun))
        var pipelined = EPMDFrameAssembler()
        #expect(pipelined.append([0, 1, 110, 0, 1, 110]) == .invalid(.overrun))
        var late = EPMDFrameAssembler()
        #expect(late.append([0, 1]) == .needMore)
        #expect(late.append([110, 110]) == .invalid(.overrun))
    }
}
