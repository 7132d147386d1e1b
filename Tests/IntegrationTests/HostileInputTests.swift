import Foundation
import GatewayTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Every route of the HTTP front, sent extreme values for every parameter and header it reads (huge,
/// negative, empty, repeated, non-ASCII, raw 0xFF, `%00`, 100 KB): no answer is a 5xx (but the documented
/// 503 of `/v1/nodes/{name}/health` for a name not registered), and afterwards the
/// process lives and the epmd port still answers. Issue 8: `?wait=999999999999999999m` used to trap.
@Suite(.timeLimit(.minutes(5)))
struct HostileInputTests {
    /// The hostile values, as raw bytes of a query value or header value (not percent-encoded on purpose:
    /// what a client sends).
    static let values: [[UInt8]] = {
        var values: [[UInt8]] = [
            Array("999999999999999999999999m".utf8),
            Array("999999999999999999m".utf8),
            Array("999999999999999999s".utf8),
            Array("999999999999999999".utf8),
            Array(("1" + String(repeating: "0", count: 30)).utf8),
            Array("18446744073709551615".utf8),
            Array("18446744073709551616".utf8),
            Array("9223372036854775808".utf8),
            Array("9999999999999999999".utf8),
            Array("-1".utf8),
            Array("-0".utf8),
            Array("-9223372036854775809".utf8),
            Array("+77".utf8),
            Array("256".utf8),
            Array("0256".utf8),
            Array("".utf8),
            Array("m".utf8),
            Array("1e9".utf8),
            Array("0x10".utf8),
            Array("1.5".utf8),
            Array(" 5".utf8),
            Array("５".utf8),  // FULLWIDTH DIGIT FIVE
            Array("٣".utf8),  // ARABIC-INDIC DIGIT THREE
            Array("é".utf8),
            Array("😀".utf8),
            [0xFF, 0xFE],
            [0x31, 0xFF],
            Array("%00".utf8),
            Array("1%00".utf8),
            Array("%FF".utf8),
            Array("%".utf8),
            Array("\"1\"".utf8),
            Array("\"99999999999999999999999\"".utf8),
            Array("true".utf8),
            Array("false".utf8),
            Array(String(repeating: "9", count: 100_000).utf8),
        ]
        values.append(Array(String(repeating: "a", count: 100_000).utf8))
        return values
    }()

    static let paths = [
        "/", "/livez", "/readyz", "/version", "/metrics", "/openapi.json", "/openapi.yaml", "/v1/nodes",
        "/v1/nodes/hostile", "/v1/nodes/hostile/health", "/v1/events/history", "/nowhere",
    ]

    static let parameters = ["index", "wait", "type", "follow", "verbose", "lastEventId"]
    static let headers = ["Last-Event-ID", "If-None-Match"]

    /// A raw-socket HTTP/1.1 exchange with `Connection: close`: the status code, or nil when the server
    /// closed without answering (fine for an oversized request).
    static func exchange(port: UInt16, target: [UInt8], headers: [[UInt8]] = [], timeout: Int = 5) throws -> Int? {
        let fd = try RawHTTP.send(port: port, target: target, headers: headers)
        defer { close(fd) }
        do {
            return try RawHTTP.statusCode(fd, timeout: timeout)
        } catch {
            throw TestFailure("\(error) to \(String(decoding: target.prefix(200), as: UTF8.self))")
        }
    }

    /// Every target: each path with each parameter set to each value (alone, and repeated after a valid
    /// value), plus hostile path name segments.
    static func targets() -> [[UInt8]] {
        var targets: [[UInt8]] = []
        for path in self.paths {
            let base = Array(path.utf8)
            for parameter in self.parameters {
                let key = Array(parameter.utf8)
                for value in self.values {
                    targets.append(base + [UInt8(ascii: "?")] + key + [UInt8(ascii: "=")] + value)
                    targets.append(
                        base + [UInt8(ascii: "?")] + key + Array("=1&".utf8) + key + [UInt8(ascii: "=")] + value
                    )
                }
                targets.append(base + [UInt8(ascii: "?")] + key)
            }
        }
        // The streaming route only with follow=false (it must end): every other parameter besides.
        for parameter in self.parameters where parameter != "follow" {
            for value in self.values {
                targets.append(Array("/v1/events?follow=false&\(parameter)=".utf8) + value)
            }
        }
        // Long-poll: a valid index ahead of any generation with a short wait, and the extreme waits with an
        // index behind the generation (answered at once).
        targets.append(Array("/v1/nodes?index=9999999999999999999&wait=1".utf8))
        for value in self.values {
            targets.append(Array("/v1/nodes?index=0&wait=".utf8) + value)
            targets.append(Array("/v1/nodes?wait=".utf8) + value + Array("&index=0".utf8))
        }
        // The path name segment.
        for value in self.values + [Array("%2F".utf8), Array("a%2Fb".utf8), Array("..".utf8)] {
            targets.append(Array("/v1/nodes/".utf8) + value)
            targets.append(Array("/v1/nodes/".utf8) + value + Array("/health".utf8))
        }
        return targets
    }

    @Test(
        "no route answers 5xx to extreme parameters and headers; the process lives and epmd answers",
        .enabled(if: !TestBinary.isCEPMD)
    )
    func hostileInput() async throws {
        let httpPort = try FreePort.next()
        let gateway = try await GatewayProcess.start(arguments: ["--http-port", String(httpPort)])
        defer { gateway.stop() }
        let pid = gateway.process.processIdentifier
        let registration = try await WireClient.register(port: gateway.port, name: "hostile", nodePort: 5555)
        defer { close(registration.fd) }
        #expect(registration.reply.count >= 2 && registration.reply[1] == 0)
        let listening = try await Poll.until(timeout: .seconds(10)) { WireClient.canConnect(port: httpPort) }
        try #require(listening != nil, "the HTTP front did not listen on \(httpPort)")

        let failures = try await Blocking.run { () -> [String] in
            var failures: [String] = []
            func check(_ target: [UInt8], headers: [[UInt8]] = []) throws {
                let shown = String(decoding: target.prefix(120), as: UTF8.self)
                let status: Int?
                do {
                    status = try Self.exchange(port: httpPort, target: target, headers: headers)
                } catch {
                    throw TestFailure("\(shown): \(error); gateway alive: \(kill(pid, 0) == 0); \(gateway.log)")
                }
                // The one documented 5xx here: a health check of a name not registered is 503 (the
                // load-balancer contract), with its JSON body.
                let documented = status == 503 && shown.hasPrefix("/v1/nodes/") && shown.contains("/health")
                if let status, status >= 500, !documented {
                    let header = headers.first.map { String(decoding: $0.prefix(60), as: UTF8.self) } ?? ""
                    failures.append("\(status) for \(shown) \(header)")
                }
                guard kill(pid, 0) == 0 else {
                    throw TestFailure("the gateway died on \(shown): \(gateway.log)")
                }
            }
            for target in Self.targets() { try check(target) }
            for path in Self.paths + ["/v1/events?follow=false"] {
                for header in Self.headers {
                    for value in Self.values {
                        try check(Array(path.utf8), headers: [Array("\(header): ".utf8) + value])
                    }
                    // Repeated header: a valid value, then a hostile one.
                    try check(
                        Array(path.utf8),
                        headers: [Array("\(header): 1".utf8), Array("\(header): ".utf8) + Self.values[0]]
                    )
                }
            }
            return failures
        }
        #expect(failures.isEmpty, "\(failures.count) answers were 5xx: \(failures.prefix(20))")

        // One stream, with hostile resume ids, closed by the client after its first bytes.
        for value in [Self.values[0], Self.values[4], Array("-1".utf8), [0xFF]] {
            let fd = try WireClient.connect(port: httpPort)
            defer { close(fd) }
            _ = WireClient.send(
                fd,
                Array("GET /v1/events?lastEventId=".utf8) + value
                    + Array(" HTTP/1.1\r\nHost: x\r\nLast-Event-ID: ".utf8) + value + Array("\r\n\r\n".utf8)
            )
            let outcome = await WireClient.collect(fd, for: .seconds(5), upTo: 12)
            let head = String(decoding: outcome.bytes, as: UTF8.self)
            #expect(head.hasPrefix("HTTP/1.1 200") || head.hasPrefix("HTTP/1.1 4"), "stream answered \(head)")
        }

        // Alive, and the epmd port answers a lookup and NAMES.
        #expect(kill(pid, 0) == 0)
        #expect(gateway.process.isRunning)
        let lookup = try await WireClient.request(port: gateway.port, [122] + Array("hostile".utf8))
        #expect(lookup.bytes == WireClient.port2Found(name: Array("hostile".utf8), nodePort: 5555))
        let names = try await WireClient.nameLines(port: gateway.port)
        #expect(names.contains { $0.contains("hostile") })
        #expect(try Self.exchange(port: httpPort, target: Array("/livez".utf8)) == 200)
    }
}
