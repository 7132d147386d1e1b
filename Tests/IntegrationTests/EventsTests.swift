import Foundation
import GatewayTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `/v1/events` and `/v1/events/history` on the built binary, with real `erl` nodes, the real
/// `epmd -stop` client and curl.
@Suite(.timeLimit(.minutes(2)))
struct EventsTests {
    @Test(
        "a real erl node's registration and death arrive as events; resume with Last-Event-ID; history flags the flap",
        .enabled(if: !TestBinary.isCEPMD && ExternalTool.usable("erl") && ExternalTool.usable("curl"))
    )
    func realNodeEvents() async throws {
        let httpPort = try FreePort.next()
        let gateway = try await GatewayProcess.start(arguments: [
            "--http-port", String(httpPort), "--flap-window", "60",
        ])
        defer { gateway.stop() }
        let base = "http://127.0.0.1:\(httpPort)"
        let stream = try CurlStream("\(base)/v1/events")
        defer { stream.stop() }
        try await stream.waitFor("the reset") { $0.frames.first?.event == "reset" }
        // Each run starts its generations at its own base (microseconds since 1970 at start).
        let base0 = try #require(stream.frames.first?.id)
        #expect(base0 > 1_700_000_000_000_000)
        #expect(stream.frames.first?.data == "{\"generation\":\(base0),\"nodes\":[]}")

        let node = try await ErlangNode.start(
            name: NodeNames.unique("ev"),
            cookie: NodeNames.cookie(),
            epmdPort: gateway.port
        )
        defer { node.kill() }
        let nodePort = try await node.waitUntilRegistered(epmdPort: gateway.port)
        try await stream.waitFor("the registration") { $0.frames.contains { $0.event == "registered" } }
        let registered = try #require(stream.frames.first { $0.event == "registered" })
        #expect(registered.id == base0 + 1)
        #expect(registered.data.contains("\"type\":\"registered\""))
        #expect(
            registered.data.contains("\"node\":{\"name\":\"\(node.name)\",\"port\":\(nodePort),\"type\":\"normal\"")
        )

        _ = node.kill()
        try await stream.waitFor("the unregistration") { $0.frames.contains { $0.event == "unregistered" } }
        let unregistered = try #require(stream.frames.first { $0.event == "unregistered" })
        #expect(unregistered.id == base0 + 2)
        #expect(unregistered.data.contains("\"reason\":\"closed\""))
        #expect(unregistered.data.contains("\"flapping\":true"))
        #expect(stream.frames.map(\.id) == [base0, base0 + 1, base0 + 2])

        // A client that saw the registration reconnects and gets exactly the unregistration.
        let resumed = try CurlStream("\(base)/v1/events", headers: ["Last-Event-ID: \(base0 + 1)"])
        defer { resumed.stop() }
        try await resumed.waitFor("the missed event") { $0.frames.contains { $0.id == base0 + 2 } }
        #expect(resumed.frames.map(\.id) == [base0 + 2])
        // An id from an earlier run (below this run's base) gets the whole table instead.
        let stale = try CurlStream("\(base)/v1/events", headers: ["Last-Event-ID: 5"])
        defer { stale.stop() }
        try await stale.waitFor("a reset") { $0.frames.first?.event == "reset" }
        #expect(stale.frames.map(\.id) == [base0 + 2])

        let history = try await Curl.run(["\(base)/v1/events/history"])
        #expect(history.status == 200)
        #expect(history.body.contains("\"flapWindowSeconds\":60.000"))
        #expect(history.body.contains("\"flaps\":[{\"name\":\"\(node.name)\",\"count\":1}]"))
    }

    @Test(
        "epmd -stop unregisters with reason stop; a node that lives past the flap window is not a flap",
        .enabled(if: !TestBinary.isCEPMD && ExternalTool.usable("epmd") && ExternalTool.usable("curl"))
    )
    func stopReasonAndFlapWindow() async throws {
        let httpPort = try FreePort.next()
        let gateway = try await GatewayProcess.start(arguments: [
            "-relaxed_command_check", "--http-port", String(httpPort), "--flap-window", "1",
        ])
        defer { gateway.stop() }
        let base = "http://127.0.0.1:\(httpPort)"
        let (fd, reply) = try await WireClient.register(port: gateway.port, name: "stopped", nodePort: 5)
        defer { close(fd) }
        #expect(reply.prefix(2) == [0x76, 0])
        try await Task.sleep(for: .milliseconds(1200))
        let epmd = try ExternalTool.require("epmd")
        let stop = try await Command.epmd(epmd, port: gateway.port, ["-stop", "stopped"])
        #expect(stop.stdout.contains("STOPPED"))
        let history = try await Curl.run(["\(base)/v1/events/history"])
        #expect(history.body.contains("\"type\":\"unregistered\""))
        #expect(history.body.contains("\"reason\":\"stop\""))
        #expect(history.body.contains("\"flapping\":false"))
        #expect(history.body.contains("\"flaps\":[]}"))
        let snapshot = try await Curl.run(["\(base)/v1/events?follow=false"])
        #expect(snapshot.status == 200)
        #expect(snapshot.body.contains("event: reset\nid: "))
        #expect(snapshot.body.contains(",\"nodes\":[]}"))
    }

    @Test(
        "past --max-watchers a stream is refused with 503 and Retry-After; the epmd port is unaffected",
        .enabled(if: !TestBinary.isCEPMD && ExternalTool.usable("curl"))
    )
    func watcherCap() async throws {
        let httpPort = try FreePort.next()
        let gateway = try await GatewayProcess.start(arguments: [
            "--http-port", String(httpPort), "--max-watchers", "1",
        ])
        defer { gateway.stop() }
        let base = "http://127.0.0.1:\(httpPort)"
        let stream = try CurlStream("\(base)/v1/events")
        defer { stream.stop() }
        try await stream.waitFor("the reset") { $0.frames.first?.event == "reset" }
        let refused = try await Curl.run(["-i", "\(base)/v1/events"])
        #expect(refused.status == 503)
        #expect(refused.body.lowercased().contains("retry-after: 5"))
        let (fd, reply) = try await WireClient.register(port: gateway.port, name: "fine", nodePort: 5)
        defer { close(fd) }
        #expect(reply.prefix(2) == [0x76, 0])
        try await stream.waitFor("the registration") { $0.frames.contains { $0.event == "registered" } }
    }
}
