import Foundation
import GatewayTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The HTTP/JSON front of the built binary, with real curl and a real `erl` node.
@Suite(.timeLimit(.minutes(2)))
struct HTTPFrontTests {
    @Test(
        "curl on every endpoint with a real erl node registered",
        .enabled(if: !TestBinary.isCEPMD && ExternalTool.usable("erl") && ExternalTool.usable("curl"))
    )
    func everyEndpoint() async throws {
        let httpPort = try FreePort.next()
        let gateway = try await GatewayProcess.start(arguments: ["--http-port", String(httpPort)])
        defer { gateway.stop() }
        let base = "http://127.0.0.1:\(httpPort)"
        let empty = try await Curl.run(["\(base)/v1/nodes"])
        #expect(empty.status == 200)
        // Generations start at this run's base (microseconds since 1970 at start), never at 0.
        #expect(empty.body.hasPrefix("{\"generation\":17") && empty.body.contains(",\"nodes\":[]}"))

        let node = try await ErlangNode.start(
            name: NodeNames.unique("web"),
            cookie: NodeNames.cookie(),
            epmdPort: gateway.port
        )
        defer { node.kill() }
        let nodePort = try await node.waitUntilRegistered(epmdPort: gateway.port)

        let list = try await Curl.run(["-i", "\(base)/v1/nodes"])
        #expect(list.status == 200)
        #expect(
            list.body.contains("\"name\":\"\(node.name)\",\"port\":\(nodePort),\"type\":\"normal\",\"typeCode\":77")
        )
        let etag = list.body.split(separator: "\r\n").first { $0.lowercased().hasPrefix("etag:") }
            .map { String($0.dropFirst(5)).trimmingCharacters(in: .whitespaces) }
        let tag = try #require(etag, "no ETag in \(list.body)")
        #expect(try await Curl.run(["-H", "If-None-Match: \(tag)", "\(base)/v1/nodes"]).status == 304)
        #expect(try await Curl.run(["\(base)/v1/nodes?type=hidden"]).body.contains("\"nodes\":[]"))

        let one = try await Curl.run(["\(base)/v1/nodes/\(node.name)"])
        #expect(one.status == 200)
        #expect(one.body.contains("\"highestVersion\":6") && one.body.contains("\"peer\":\"127.0.0.1\""))
        #expect(try await Curl.run(["\(base)/v1/nodes/\(node.name)/health"]).status == 200)
        #expect(try await Curl.run(["-I", "\(base)/v1/nodes/\(node.name)/health"]).status == 200)
        #expect(try await Curl.run(["\(base)/v1/nodes/nobody"]).status == 404)
        #expect(try await Curl.run(["\(base)/v1/nodes/nobody/health"]).status == 503)
        #expect(try await Curl.run(["\(base)/livez"]).status == 200)
        #expect(try await Curl.run(["\(base)/readyz"]).status == 200)
        #expect(try await Curl.run(["\(base)/version"]).body.contains("\"libmicrohttpd\":\"0.9"))
        let wrong = try await Curl.run(["-i", "-X", "PUT", "\(base)/v1/nodes"])
        #expect(wrong.status == 405 && wrong.body.lowercased().contains("allow: get, head"))
        let missing = try await Curl.run(["\(base)/no/such/path"])
        #expect(missing.status == 404 && missing.body.contains("\"title\":\"Not Found\""))

        // The node dies: the health check turns 503.
        _ = node.kill()
        let down = try await Poll.until(timeout: .seconds(5), interval: .milliseconds(50)) {
            try await Curl.run(["\(base)/v1/nodes/\(node.name)/health"]).status == 503
        }
        #expect(down != nil)
    }

    @Test(
        "long-poll on the real binary: GET /v1/nodes?index=G&wait=60 returns as soon as a node registers",
        .enabled(if: !TestBinary.isCEPMD && ExternalTool.usable("curl"))
    )
    func longPoll() async throws {
        let httpPort = try FreePort.next()
        let gateway = try await GatewayProcess.start(arguments: ["--http-port", String(httpPort)])
        defer { gateway.stop() }
        let first = try await Curl.run(["http://127.0.0.1:\(httpPort)/v1/nodes"])
        let generation = try #require(
            first.body.split(separator: ",").first.flatMap { UInt64($0.dropFirst("{\"generation\":".count)) },
            "no generation in \(first.body)"
        )
        // An index from before this run (0) is answered at once: the table may have changed since.
        let stale = try await Curl.run(["http://127.0.0.1:\(httpPort)/v1/nodes?index=0&wait=20"])
        #expect(stale.status == 200 && stale.body.contains("\"generation\":\(generation)"))
        // A 60 s wait, answered by the registration: timed from the registration, the answer must come
        // long before the wait would end (a loaded CI machine once took 12.5 s from the request's start).
        let clock = ContinuousClock()
        async let answer = Curl.run(["http://127.0.0.1:\(httpPort)/v1/nodes?index=\(generation)&wait=60"])
        try await Task.sleep(for: .milliseconds(500))
        let registered = clock.now
        let (fd, reply) = try await WireClient.register(port: gateway.port, name: "polled", nodePort: 11)
        defer { close(fd) }
        #expect(reply.prefix(2) == [0x76, 0])
        let result = try await answer
        #expect(result.status == 200)
        #expect(
            result.body.contains("\"generation\":\(generation + 1)") && result.body.contains("\"name\":\"polled\"")
        )
        #expect(registered.duration(to: clock.now) < .seconds(30), "answered by the 60 s wait, not by the registration")
    }

    @Test(
        "readiness turns 503 during the shutdown grace while the epmd port still answers; exit 0",
        .enabled(if: !TestBinary.isCEPMD && ExternalTool.usable("curl"))
    )
    func readinessDuringShutdown() async throws {
        let httpPort = try FreePort.next()
        let gateway = try await GatewayProcess.start(arguments: [
            "--http-port", String(httpPort), "--shutdown-grace", "5",
        ])
        defer { gateway.stop() }
        let base = "http://127.0.0.1:\(httpPort)"
        #expect(try await Curl.run(["\(base)/readyz"]).status == 200)
        kill(gateway.process.processIdentifier, SIGTERM)
        let draining = try await Poll.until(timeout: .seconds(4), interval: .milliseconds(20)) {
            try await Curl.run(["\(base)/readyz"]).status == 503
        }
        #expect(draining != nil, "readyz did not turn 503 after SIGTERM")
        #expect(try await WireClient.names(port: gateway.port).prefix == UInt32(gateway.port))
        let status = await gateway.waitForExit(within: .seconds(10))
        #expect(status == 0)
    }

    @Test(
        "an HTTP port already taken does not stop the epmd port (several gateways in a row)",
        .enabled(if: !TestBinary.isCEPMD)
    )
    func httpPortTaken() async throws {
        let httpPort = try FreePort.next()
        let first = try await GatewayProcess.start(arguments: ["--http-port", String(httpPort)])
        defer { first.stop() }
        let second = try await GatewayProcess.start(arguments: ["--http-port", String(httpPort)])
        defer { second.stop() }
        let (fd, reply) = try await WireClient.register(port: second.port, name: "still-works", nodePort: 7)
        defer { close(fd) }
        #expect(reply.prefix(2) == [0x76, 0])
        #expect(second.process.isRunning)
        #expect(second.log.contains("HTTP front disabled"))
    }
}
