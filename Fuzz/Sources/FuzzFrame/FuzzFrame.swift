import EPMDProtocol
import FuzzSupport

/// Input: one byte `c`, then `c % 5` chunk lengths (one byte each), then the wire bytes. The bytes go
/// to an `EPMDFrameAssembler` in those chunks (the rest in one last chunk) until it decides; a complete
/// body goes to `EPMDRequest.decode`.
///
/// Invariants: no trap; the split does not matter (the decision equals that of one read of the same
/// prefix); nothing is buffered past the capacity; a body is 1...3057 bytes; whatever decodes re-encodes
/// to the bytes it came from (and decodes again to the same request).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    FrameTarget.run(fuzzBytes(data, count))
    return 0
}

/// The program's `main` (see Package.swift): libFuzzer's driver over ``fuzz(_:_:)``.
@_cdecl("FuzzFrame_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    runFuzzer(argc: argc, argv: argv) { data, count in fuzz(data, count) }
}

enum FrameTarget {
    static func run(_ data: [UInt8]) {
        var input = FuzzInput(data)
        let cuts = (0..<input.number(below: 5)).map { _ in Int(input.byte()) }
        let wire = input.rest()

        var assembler = EPMDFrameAssembler()
        var consumed = 0
        var progress = EPMDFrameAssembler.Progress.needMore
        var chunks = cuts.map { min($0, wire.count) }
        chunks.append(wire.count)
        for length in chunks where progress == .needMore && consumed < wire.count {
            let end = min(wire.count, consumed + length)
            progress = assembler.append(wire[consumed..<end])
            consumed = end
            if progress == .needMore {
                fuzzCheck(assembler.bufferedCount == consumed, "buffered \(assembler.bufferedCount) of \(consumed)")
                fuzzCheck(assembler.bufferedCount < EPMDFrameAssembler.capacity, "buffered past the capacity")
            }
        }

        var oneRead = EPMDFrameAssembler()
        let whole = consumed == 0 ? .needMore : oneRead.append(Array(wire[..<consumed]))
        fuzzCheck(whole == progress, "split \(progress) but one read \(whole)")

        // An adopted connection's assembler resumes where the first one stopped.
        if progress == .needMore {
            var adopted = EPMDFrameAssembler(buffered: assembler.buffered)
            fuzzCheck(adopted == assembler, "adopted assembler differs")
            let next = Array(wire[consumed...].prefix(8))
            fuzzCheck(adopted.append(next) == assembler.append(next), "adopted assembler decides differently")
        }

        guard case .complete(let body) = progress else { return }
        fuzzCheck((1...EPMDLimits.maxRequestLength).contains(body.count), "body of \(body.count) bytes")
        fuzzCheck(Array(wire[2..<consumed]) == body, "body is not the bytes after the prefix")
        self.decode(body)
        // The decoder takes any body, not only a framed one.
        self.decode(Array(wire.prefix(EPMDLimits.maxRequestLength)))
    }

    static func decode(_ body: [UInt8]) {
        let code = EPMDRequest.code(of: body)
        let request: EPMDRequest
        do {
            request = try EPMDRequest.decode(body)
        } catch {
            _ = error.description
            return
        }
        fuzzCheck(code != nil, "decoded a body with no served code")
        switch request {
        case .alive2(let alive):
            fuzzCheck(code == .alive2Request, "ALIVE2 from code \(String(describing: code))")
            let encoded = alive.encode()
            fuzzCheck(encoded == Array(body.prefix(encoded.count)), "ALIVE2 does not re-encode to its bytes")
            // C epmd's size check needs more than 13 bytes: an empty name with no extra decodes only
            // with trailing bytes after it, so its bare encoding (13 bytes) does not.
            if encoded.count > 13 {
                fuzzCheck((try? Alive2Request.decode(encoded)) == alive, "ALIVE2 does not round-trip")
            }
            let reply = EPMDResponse.port2Found(alive)
            fuzzCheck(reply.count == 2 + encoded.count - 1, "PORT2 reply of \(reply.count) bytes")
            _ = EPMDResponse.alive2(success: true, creation: 1, extended: alive.wantsExtendedReply)
        case .portPlease2(let name):
            fuzzCheck(code == .portPlease2Request, "PORT_PLEASE2 from code \(String(describing: code))")
            fuzzCheck(!name.isEmpty && !name.contains(0), "lookup name empty or with NUL")
            let again = try? EPMDRequest.decode([EPMDMessageCode.portPlease2Request.rawValue] + name)
            fuzzCheck(again == request, "PORT_PLEASE2 does not round-trip")
            var line: [UInt8] = []
            EPMDResponse.appendNamesLine(to: &line, name: name, port: 1)
        case .stop(let name):
            fuzzCheck(code == .stopRequest, "STOP from code \(String(describing: code))")
            fuzzCheck(!name.contains(0) && Array(body[1...].prefix(name.count)) == name, "STOP name")
        case .names, .dump, .kill:
            break
        }
    }
}
