import EPMDProtocol
import EPMDRegistry
import GatewayHTTP
import Testing

/// The one parser of numbers read from the network: bounded, overflow-checked, ASCII digits only,
/// exactly the contract's patterns.
@Suite struct RequestNumberTests {
    @Test("decimal: 1...maxDigits ASCII digits, at most max; nothing else")
    func decimal() {
        let parse = { (text: String, digits: Int, max: UInt64) in
            RequestNumber.decimal(Array(text.utf8), maxDigits: digits, max: max)
        }
        #expect(parse("0", 1, 9) == 0)
        #expect(parse("007", 3, 9) == 7)
        #expect(parse("18446744073709551615", 20, .max) == .max)
        #expect(parse("18446744073709551616", 20, .max) == nil)
        #expect(parse("99999999999999999999", 20, .max) == nil)
        #expect(parse("1" + String(repeating: "0", count: 30), 40, .max) == nil)
        #expect(parse("256", 3, 255) == nil)
        #expect(parse("1234", 3, .max) == nil)
        for bad in ["", "+1", "-0", "-1", " 1", "1 ", "1e3", "0x1", "1.0", "５", "٣", "1\u{0}", "%31"] {
            #expect(parse(bad, 20, .max) == nil, "\(bad)")
        }
        #expect(RequestNumber.decimal([0x31, 0xFF], maxDigits: 5, max: .max) == nil)
    }

    @Test("wait: ^[0-9]{1,9}[sm]?$, clamped to 60 s after an overflow-checked multiply")
    func wait() {
        let wait = { (text: String) in RequestNumber.waitSeconds(Array(text.utf8)) }
        #expect(wait("0") == 0)
        #expect(wait("5") == 5)
        #expect(wait("5s") == 5)
        #expect(wait("1m") == 60)
        #expect(wait("0m") == 0)
        #expect(wait("600s") == 60)
        #expect(wait("999999999") == 60)
        #expect(wait("999999999m") == 60)
        #expect(wait("000000001s") == 1)
        for bad in [
            "", "s", "m", "1h", "5ss", "5ms", "-5", "+5", "1000000000", "9999999999m", "999999999999999999m",
            "999999999999999999999999m", "5 ", "1.5", "５",
        ] {
            #expect(wait(bad) == nil, "\(bad)")
        }
    }

    @Test("type codes: exactly ^([0-9]{1,2}|[01][0-9]{2}|2[0-4][0-9]|25[0-5])$")
    func typeCode() throws {
        let code = { (text: String) in RequestNumber.typeCode(Array(text.utf8)) }
        // Every string of 1 to 3 digits: accepted exactly when the contract's pattern matches.
        var texts: [String] = []
        for length in 1...3 {
            var next = [""]
            for _ in 0..<length { next = next.flatMap { prefix in (0...9).map { prefix + String($0) } } }
            texts += next
        }
        let pattern = try Regex("^([0-9]{1,2}|[01][0-9]{2}|2[0-4][0-9]|25[0-5])$")
        for text in texts {
            let matches = text.wholeMatch(of: pattern) != nil
            #expect((code(text) != nil) == matches, "\(text)")
        }
        #expect(code("077") == 77)
        #expect(code("255") == 255)
        for bad in ["+77", "-0", "0077", "256", "", " 7", "7 ", "1e2"] {
            #expect(code(bad) == nil, "\(bad)")
        }
    }

    @Test("event ids: up to UInt64.max, spaces around ignored, anything else is no id")
    func eventID() {
        let id = { (text: String) in RequestNumber.eventID(Array(text.utf8)) }
        #expect(id("42") == 42)
        #expect(id(" 42 ") == 42)
        #expect(id("18446744073709551615") == .max)
        for bad in ["", " ", "18446744073709551616", "-1", "4 2", "x", "1" + String(repeating: "0", count: 30)] {
            #expect(id(bad) == nil, "\(bad)")
        }
    }

    @Test("the router refuses what the contract refuses, and never traps")
    func router() {
        let router = HTTPRouter(
            registry: NodeRegistry(clock: { 1_795_411_787.25 }),
            build: .init(version: "0.1.0", libmicrohttpd: "0.9.75")
        )
        let status = { (query: [String: String]) in
            router.respond(to: HTTPRequest(method: "GET", path: "/v1/nodes", query: query)).status
        }
        for bad in [
            ["wait": "999999999999999999m"], ["wait": "999999999999999999999999m"], ["wait": "1000000000"],
            ["index": "99999999999999999999"], ["index": "+1"], ["index": ""], ["type": "+77"], ["type": "-0"],
            ["type": "0077"], ["type": "256"], ["wait": ""],
        ] {
            #expect(status(bad) == 400, "\(bad)")
        }
        for good in [["wait": "999999999m"], ["index": "0", "wait": "1m"], ["type": "077"], ["type": "%37%37"]] {
            #expect(status(good) == 200, "\(good)")
        }
        #expect(
            router.longPollWait(
                for: HTTPRequest(
                    method: "GET",
                    path: "/v1/nodes",
                    query: ["index": "9999999999999999999", "wait": "999999999m"]
                )
            )?.seconds == 60
        )
    }
}
