import Foundation
import GatewayTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Zero-gap hand-over between two real gateway processes (issue 11, parts 1 and 3), without systemd:
/// two real `erl -sname` nodes and one raw ALIVE2 client that never registers again are registered
/// with gateway A; a successor (`--takeover`, or SIGUSR2's re-exec) takes every socket and the
/// registry over; A exits 0; everything is still there, and behaves as before. The same scenario
/// against C epmd (killed and started again) is the baseline: the raw client is gone for good.
@Suite(
    "Hand-over",
    .serialized,
    .timeLimit(.minutes(3)),
    .enabled(if: ExternalTool.usable("erl") && ExternalTool.usable("epmd")),
    .disabled(if: TestBinary.isCEPMD, "C epmd has no hand-over")
)
struct HandoverTests {
    @Test(
        "--takeover: all three kept (epmd -names, ping from a new node), zero failed lookups under load, one restarted event, no unregistered"
    )
    func takeover() async throws {
        let scene = try await HandoverScene.start()
        defer { scene.stop() }
        let watcher = try CurlStream("http://127.0.0.1:\(scene.httpPort)/v1/events", seconds: 60)
        defer { watcher.stop() }
        try await watcher.wait(for: "event: reset")
        let load = try scene.startLookupLoad(seconds: 6)
        try await Task.sleep(for: .seconds(1.5))

        let successor = try scene.launchSuccessor()
        defer { successor.stop() }
        let status = await scene.gateway.waitForExit(within: .seconds(20))
        #expect(status == 0, "A did not exit 0 after the hand-over: \(scene.gateway.log)")
        #expect(
            scene.gateway.log.contains("handed over to PID \(successor.process.processIdentifier)"),
            "A's log: \(scene.gateway.log)"
        )
        let figures = try await load.finish()
        print("hand-over under lookup load: \(figures.line); \(scene.switchTime(in: scene.gateway.log))")
        #expect(figures.failed == 0 && figures.ok > 0, "lookups failed through the hand-over: \(figures.line)")

        // The event stream: A's watcher saw no unregistration; resuming on B with the last id it saw
        // gives exactly one restarted event (ids contiguous), and no unregistered.
        let seen = watcher.frames
        #expect(!seen.contains { $0.event == "unregistered" }, "A's stream: \(watcher.text)")
        let lastID = try #require(seen.last?.id, "no event id on A's stream: \(watcher.text)")
        let resumed = try await Curl.run(
            ["-H", "Last-Event-ID: \(lastID)", "http://127.0.0.1:\(scene.httpPort)/v1/events?follow=false"]
        )
        #expect(resumed.body.contains("event: restarted\nid: \(lastID + 1)\n"), "resumed on B: \(resumed.body)")
        #expect(resumed.body.contains("\"method\":\"handover\""), "resumed on B: \(resumed.body)")
        #expect(!resumed.body.contains("unregistered") && !resumed.body.contains("event: reset"), "\(resumed.body)")

        // Metrics: one restart, no registration counted again.
        let metrics = try await Curl.run(["http://127.0.0.1:\(scene.httpPort)/metrics"]).body
        #expect(metrics.contains("epmd_restarts_total{method=\"handover\"} 1"), "\(metrics.prefix(4000))")
        #expect(metrics.contains("\nepmd_registrations_total 0\n"), "restored nodes counted as registrations")

        try await scene.checkAllThreeServed(by: successor.log)
        try await scene.checkRulesAfterTheSwitch()
    }

    @Test(
        "SIGUSR2: the gateway starts its own binary again, which takes over; a real HAProxy never marks the node DOWN"
    )
    func signalReexec() async throws {
        let scene = try await HandoverScene.start()
        defer { scene.stop() }
        let haproxy = try await HAProxyProcess.start(
            backend: "epmd_nodes",
            server: "s1",
            serverPort: try FreePort.next(),
            checkPort: scene.httpPort,
            nodeName: scene.nodeA.name
        )
        defer { haproxy.kill() }
        let up = try await haproxy.waitFor(status: "UP", checkCode: "200", within: .seconds(10))
        try #require(up != nil, "HAProxy not UP before the hand-over: \(haproxy.report)")
        let downsBefore = try haproxy.serverRow()["chkdown"] ?? "?"
        let load = try scene.startLookupLoad(seconds: 6)
        try await Task.sleep(for: .seconds(1.5))

        let oldPID = scene.gateway.process.processIdentifier
        kill(oldPID, SIGUSR2)
        let status = await scene.gateway.waitForExit(within: .seconds(20))
        #expect(status == 0, "A did not exit 0 after SIGUSR2: \(scene.gateway.log)")
        let log = scene.gateway.log  // the child writes to the same stderr
        let childPID = try #require(Self.successorPID(in: log), "no hand-over in A's log: \(log)")
        defer { kill(childPID, SIGTERM) }
        #expect(childPID != oldPID && kill(childPID, 0) == 0, "the successor \(childPID) is not running: \(log)")
        try await scene.checkAllThreeServed(by: log)
        let figures = try await load.finish()
        print("SIGUSR2 hand-over under lookup load: \(figures.line); \(scene.switchTime(in: log))")
        #expect(figures.failed == 0 && figures.ok > 0, "lookups failed through the hand-over: \(figures.line)")

        // HAProxy kept checking through the switch: still UP, never a transition to DOWN.
        try await Task.sleep(for: .seconds(1))
        let row = try haproxy.serverRow()
        #expect(row["status"] == "UP" && row["chkdown"] == downsBefore, "HAProxy: \(haproxy.report)")
        try await scene.checkRulesAfterTheSwitch()
        kill(childPID, SIGTERM)
        _ = try await Poll.until(timeout: .seconds(5), interval: .milliseconds(20)) { kill(childPID, 0) != 0 }
    }

    @Test("a hello with another format version is refused with a message, and the running gateway serves on")
    func versionMismatch() async throws {
        let scene = try await HandoverScene.start(erlNodes: false)
        defer { scene.stop() }
        let refusal = try HandoverWire.hello(path: scene.socketPath, formatVersion: 99)
        #expect(refusal.type == 2, "expected a refuse frame: \(refusal)")
        #expect(refusal.text.contains("format 99"), "refusal: \(refusal.text)")
        #expect(scene.gateway.process.isRunning)
        let names = try await WireClient.names(port: scene.gateway.port)
        #expect(NamesText.port(of: scene.rawName, in: names.text) == scene.rawNodePort, "\(names.text)")
        // The real successor binary still takes over afterwards.
        let successor = try scene.launchSuccessor()
        defer { successor.stop() }
        #expect(await scene.gateway.waitForExit(within: .seconds(20)) == 0, "\(scene.gateway.log)")
        let metrics = try await Curl.run(["http://127.0.0.1:\(scene.httpPort)/metrics"]).body
        #expect(metrics.contains("epmd_restarts_total{method=\"handover\"} 1"), "\(successor.log)")
    }

    @Test("a successor that cannot start (NACK) leaves the running gateway serving everything, re-adopted")
    func successorFails() async throws {
        let scene = try await HandoverScene.start(erlNodes: false)
        defer { scene.stop() }
        // A TLS key that does not exist: the successor receives everything, then cannot build.
        let successor = try SuccessorProcess(
            arguments: [
                "-port", String(scene.gateway.port), "--http-port", String(scene.httpPort), "--handover-socket",
                scene.socketPath, "--takeover", "--http-tls-cert", "/nonexistent/cert.pem", "--http-tls-key",
                "/nonexistent/key.pem",
            ]
        )
        defer { successor.stop() }
        let ended = try await Poll.until(timeout: .seconds(20), interval: .milliseconds(20)) {
            !successor.process.isRunning
        }
        #expect(ended != nil && successor.process.terminationStatus == 1, "successor: \(successor.log)")
        #expect(scene.gateway.process.isRunning, "A stopped: \(scene.gateway.log)")
        #expect(scene.gateway.log.contains("hand-over failed"), "A's log: \(scene.gateway.log)")
        // Everything is served as before: the registration (same name refused), lookups, new registrations.
        let names = try await WireClient.names(port: scene.gateway.port)
        #expect(NamesText.port(of: scene.rawName, in: names.text) == scene.rawNodePort, "\(names.text)")
        let again = try await WireClient.register(port: scene.gateway.port, name: scene.rawName, nodePort: 1)
        close(again.fd)
        #expect(again.reply.count == 6 && again.reply[1] != 0, "the live raw client's name was accepted again")
        let freshName = NodeNames.unique("fresh")
        let fresh = try await WireClient.register(port: scene.gateway.port, name: freshName, nodePort: 2)
        close(fresh.fd)
        #expect(fresh.reply.count == 6 && fresh.reply[1] == 0, "a new registration was refused")
        let health = try await Curl.run(["http://127.0.0.1:\(scene.httpPort)/v1/nodes/\(scene.rawName)/health"])
        #expect(health.status == 200, "\(health)")
        // The raw client's connection still belongs to A: closing it unregisters the name.
        scene.closeRawClient()
        let gone = try await Poll.until(timeout: .seconds(5), interval: .milliseconds(20)) {
            NamesText.port(of: scene.rawName, in: try await WireClient.names(port: scene.gateway.port).text) == nil
        }
        #expect(gone != nil, "the raw client's close did not unregister it")
        let metrics = try await Curl.run(["http://127.0.0.1:\(scene.httpPort)/metrics"]).body
        #expect(metrics.contains("epmd_handover_refusals_total{reason=\"failed\"} 1"), "\(metrics.prefix(3000))")
    }

    @Test(
        "a peer running as another user is refused (SO_PEERCRED) and counted; the socket file is 0600 in a 0700 directory",
        .enabled(if: getuid() == 0 && ExternalTool.usable("setpriv"))
    )
    func otherUserRefused() async throws {
        let scene = try await HandoverScene.start(erlNodes: false)
        defer { scene.stop() }
        var status = stat()
        #expect(stat(scene.socketPath, &status) == 0 && status.st_mode & 0o777 == 0o600)
        // Open the file mode up so that only the credentials check stands in the way.
        chmod(scene.directory.path, 0o755)
        chmod(scene.socketPath, 0o666)
        let setpriv = try ExternalTool.require("setpriv")
        let result = try await Blocking.run {
            try Command.run(
                setpriv,
                [
                    "--reuid=nobody", "--regid=nogroup", "--clear-groups", TestBinary.url.path, "-port",
                    String(scene.gateway.port), "--no-http", "--handover-socket", scene.socketPath, "--takeover",
                ],
                // Not the sanitizer's options (scripts/sanitize): their log_path is a directory `nobody`
                // cannot write (exit 66), and a leak report of the refused process would change its status.
                environment: ["ASAN_OPTIONS": "detect_leaks=0", "TSAN_OPTIONS": ""],
                timeout: 20
            )
        }
        #expect(result.status == 1, "the other user's successor: \(result.status) \(result.stderr)")
        #expect(scene.gateway.process.isRunning, "\(scene.gateway.log)")
        let metrics = try await Curl.run(["http://127.0.0.1:\(scene.httpPort)/metrics"]).body
        #expect(metrics.contains("epmd_handover_refusals_total{reason=\"credentials\"} 1"), "\(metrics.prefix(3000))")
        let names = try await WireClient.names(port: scene.gateway.port)
        #expect(NamesText.port(of: scene.rawName, in: names.text) == scene.rawNodePort, "\(names.text)")
    }

    @Test("baseline: C epmd killed and started again loses the client that never registers again, for good")
    func cEPMDBaseline() async throws {
        let epmd = try ExternalTool.require("epmd")
        let port = try FreePort.next()
        let first = Process()
        first.executableURL = URL(fileURLWithPath: epmd)
        first.arguments = ["-port", String(port)]
        try first.runUnmasked()
        defer { first.killAndWait() }
        _ = try await Poll.until(timeout: .seconds(10), interval: .milliseconds(20)) {
            WireClient.canConnect(port: port)
        }
        let cookie = NodeNames.cookie()
        let node = try await ErlangNode.start(name: NodeNames.unique("itcb"), cookie: cookie, epmdPort: port)
        defer { node.kill() }
        try await node.waitUntilRegistered(epmdPort: port)
        let rawName = NodeNames.unique("itcraw")
        let raw = try await WireClient.register(port: port, name: rawName, nodePort: 4242)
        defer { close(raw.fd) }
        #expect(NamesText.port(of: rawName, in: try await WireClient.names(port: port).text) == 4242)

        #expect(first.killAndWait(), "C epmd still running after SIGKILL")
        let second = Process()
        second.executableURL = URL(fileURLWithPath: epmd)
        second.arguments = ["-port", String(port)]
        try second.runUnmasked()
        defer { second.killAndWait() }
        _ = try await Poll.until(timeout: .seconds(10), interval: .milliseconds(20)) {
            WireClient.canConnect(port: port)
        }
        // Give the erl node time to come back (OTP re-registers after a reconnect); the raw client never does.
        let back = try await Poll.until(timeout: .seconds(15), interval: .milliseconds(100)) {
            NamesText.port(of: node.name, in: (try? await WireClient.names(port: port).text) ?? "") != nil
        }
        let names = try await WireClient.names(port: port).text
        print(
            "C epmd baseline: erl node back after restart: \(back.map { "\($0)" } ?? "no (within 15 s)"); NAMES: \(names.debugDescription)"
        )
        #expect(NamesText.port(of: rawName, in: names) == nil, "the raw client is listed by the new C epmd: \(names)")
    }

    /// The successor's PID from "handed over to PID N" in a log.
    static func successorPID(in log: String) -> Int32? {
        guard let range = log.range(of: "handed over to PID ", options: .backwards) else { return nil }
        return Int32(log[range.upperBound...].prefix { $0.isNumber })
    }
}
