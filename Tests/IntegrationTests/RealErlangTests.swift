import Foundation
import GatewayTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Real `erl` and `elixir` nodes (OTP's own erl_epmd client) against the server under test.
///
/// Every node gets ERL_EPMD_PORT = the server's port, so nothing here touches 4369, and is SIGKILLed
/// when its test ends, passed or failed. Run with `EPMD_GATEWAY_BINARY=/usr/bin/epmd` to check that the
/// tests describe C epmd.
@Suite("Real Erlang and Elixir nodes")
struct RealErlangTests {
    @Test(
        "Two erl -sname nodes register, are listed by NAMES and epmd -names, and ping each other",
        .enabled(if: ExternalTool.usable("erl") && ExternalTool.usable("epmd")),
        .timeLimit(.minutes(1))
    )
    func twoErlangNodesRegisterAndPing() async throws {
        let epmd = try ExternalTool.require("epmd")
        let gateway = try await GatewayProcess.start()
        defer { gateway.stop() }
        let port = gateway.port
        let cookie = NodeNames.cookie()
        let nodeA = try await ErlangNode.start(name: NodeNames.unique("ita"), cookie: cookie, epmdPort: port)
        defer { nodeA.kill() }
        let portA = try await nodeA.waitUntilRegistered(epmdPort: port)

        // The real C client lists it with the same port.
        let listed = try await Command.epmd(epmd, port: port, ["-names"])
        #expect(listed.status == 0)
        #expect(listed.stdout.hasPrefix("epmd: up and running on port \(port) with data:\n"))
        #expect(listed.stdout.contains("name \(nodeA.name) at port \(portA)\n"))

        // Node B computes A's host part the way erl does for its own name, pings it, lists the names
        // through erl_epmd (the server's NAMES as parsed by OTP) and makes an rpc over the connection.
        let nameB = NodeNames.unique("itb")
        let expression = """
            [_, Host] = string:split(atom_to_list(node()), "@"),
            A = list_to_atom("\(nodeA.name)@" ++ Host),
            io:format("ping=~p~n", [net_adm:ping(A)]),
            {ok, Names} = net_adm:names(),
            [io:format("names=~s:~p~n", [N, P]) || {N, P} <- Names],
            io:format("rpc=~p~n", [rpc:call(A, erlang, node, [])]),
            io:format("self=~p~n", [node()]),
            io:format("~s", [os:cmd("'\(epmd)' -port \(port) -names")]),
            halt().
            """
        let result = try await ErlangNode.eval(name: nameB, cookie: cookie, epmdPort: port, expression: expression)
        #expect(result.status == 0, "erl -eval failed: \(result.stdout) \(result.stderr)")
        let lines = result.stdout.split(separator: "\n").map(String.init)
        #expect(lines.contains("ping=pong"), "B's output: \(result.stdout) \(result.stderr)")
        #expect(lines.contains("names=\(nodeA.name):\(portA)"), "B's output: \(result.stdout)")
        let portB = lines.first { $0.hasPrefix("names=\(nameB):") }
            .flatMap { $0.split(separator: ":").last.flatMap { UInt16($0) } }
        #expect(portB != nil, "B not in its own NAMES: \(result.stdout)")
        // `epmd -names` run by B while it was up lists both nodes.
        #expect(lines.contains("epmd: up and running on port \(port) with data:"), "B's output: \(result.stdout)")
        #expect(lines.contains("name \(nodeA.name) at port \(portA)"), "B's output: \(result.stdout)")
        #expect(lines.contains("name \(nameB) at port \(portB ?? 0)"), "B's output: \(result.stdout)")
        // A answered the rpc with its own name: same host part as B's (both -sname on this host).
        let host = lines.first { $0.hasPrefix("self=\(nameB)@") }?.split(separator: "@").last.map(String.init)
        #expect(host != nil, "B's output: \(result.stdout)")
        #expect(lines.contains("rpc=\(nodeA.name)@\(host ?? "?")"), "B's output: \(result.stdout)")

        // B has halted: its name goes away, A's stays.
        let bGone = try await Poll.until(timeout: .seconds(5)) {
            NamesText.port(of: nameB, in: try await WireClient.names(port: port).text) == nil
        }
        #expect(bGone != nil, "\(nameB) still registered after it halted")
        let after = try await WireClient.names(port: port)
        #expect(NamesText.port(of: nodeA.name, in: after.text) == portA)
        #expect(nodeA.process.isRunning, "node A died: \(nodeA.log)")
        #expect(gateway.process.isRunning, "server died: \(gateway.log)")
    }

    @Test(
        "An Elixir node connects to an Erlang node through the server",
        .enabled(if: ExternalTool.usable("erl") && ExternalTool.usable("elixir")),
        .timeLimit(.minutes(1))
    )
    func elixirNodeConnectsToErlangNode() async throws {
        let gateway = try await GatewayProcess.start()
        defer { gateway.stop() }
        let port = gateway.port
        let cookie = NodeNames.cookie()
        let nodeA = try await ErlangNode.start(name: NodeNames.unique("ita"), cookie: cookie, epmdPort: port)
        defer { nodeA.kill() }
        let portA = try await nodeA.waitUntilRegistered(epmdPort: port)

        let nameX = NodeNames.unique("itx")
        let script = """
            [_, host] = String.split(Atom.to_string(node()), "@")
            a = String.to_atom("\(nodeA.name)@" <> host)
            IO.puts("connect=#{Node.connect(a)}")
            IO.puts("rpc=#{:rpc.call(a, :erlang, :node, [])}")
            IO.puts("host=#{host}")
            {:ok, names} = :net_adm.names()
            for {n, p} <- names, do: IO.puts("names=#{n}:#{p}")
            """
        let result = try await ErlangNode.elixir(name: nameX, cookie: cookie, epmdPort: port, script: script)
        #expect(result.status == 0, "elixir failed: \(result.stdout) \(result.stderr)")
        let lines = result.stdout.split(separator: "\n").map(String.init)
        #expect(lines.contains("connect=true"), "elixir output: \(result.stdout) \(result.stderr)")
        let host = lines.first { $0.hasPrefix("host=") }.map { String($0.dropFirst(5)) }
        #expect(lines.contains("rpc=\(nodeA.name)@\(host ?? "?")"), "elixir output: \(result.stdout)")
        #expect(lines.contains("names=\(nodeA.name):\(portA)"), "elixir output: \(result.stdout)")
        #expect(lines.contains { $0.hasPrefix("names=\(nameX):") }, "elixir output: \(result.stdout)")
        #expect(gateway.process.isRunning, "server died: \(gateway.log)")
    }

    @Test(
        "A SIGKILLed node's name is gone from NAMES at once (3 s bound)",
        .enabled(if: ExternalTool.usable("erl")),
        .timeLimit(.minutes(1))
    )
    func killedNodeIsUnregisteredWithinOneSecond() async throws {
        let gateway = try await GatewayProcess.start()
        defer { gateway.stop() }
        let port = gateway.port
        let node = try await ErlangNode.start(name: NodeNames.unique("itk"), cookie: NodeNames.cookie(), epmdPort: port)
        defer { node.kill() }
        try await node.waitUntilRegistered(epmdPort: port)
        let name = node.name

        kill(node.process.processIdentifier, SIGKILL)
        // The kernel closes the node's connection at SIGKILL and the gateway unregisters at that EOF: on
        // a quiet machine within milliseconds. The bound is 3 s (scaled under a sanitizer: TestTime)
        // because this test runs beside 360 others on CI's 2 cores, where a 1 s bound failed twice; it
        // still tells the EOF apart from any timeout (the packet timeout is 60 s).
        let limit = TestTime.scaled(.seconds(3))
        let elapsed = try await Poll.until(timeout: limit, interval: .milliseconds(50)) {
            NamesText.port(of: name, in: try await WireClient.names(port: port).text) == nil
        }
        #expect(elapsed != nil, "\(name) still in NAMES \(limit) after SIGKILL")

        // And PORT_PLEASE2 no longer finds it.
        let reply = try await WireClient.request(port: port, [122] + Array(name.utf8))
        #expect(reply.bytes == [119, 1] && reply.ending.closed, "\(reply)")
        #expect(gateway.process.isRunning, "server died: \(gateway.log)")
    }

    @Test(
        "erl -epmd \"<binary> -daemon\" starts the server detached; -kill stops it",
        .enabled(if: ExternalTool.usable("erl")),
        .timeLimit(.minutes(1))
    )
    func erlStartsServerAsDaemon() async throws {
        let binary = TestBinary.url.path
        let port = try FreePort.next()
        var node: ErlangNode?
        defer {
            node?.kill()
            // Normally the test's own -kill stopped it; otherwise ask politely, then SIGKILL by pid.
            if let fd = try? WireClient.connect(port: port) {
                WireClient.send(fd, WireClient.frame([107]))
                usleep(200_000)
                close(fd)
            }
            DaemonReaper.killAll(epmdPort: port)
        }
        // ERL_EPMD_PORT (set by ErlangNode.start) is inherited by the command erl runs: that is how the
        // daemon learns its port.
        let started = try await ErlangNode.start(
            name: NodeNames.unique("itd"),
            cookie: NodeNames.cookie(),
            epmdPort: port,
            epmd: .command("\"\(binary)\" -daemon")
        )
        node = started
        let nodePort = try await started.waitUntilRegistered(epmdPort: port)

        // Detached: exactly one daemon for this port, and neither erl nor this test is its parent.
        let daemons = DaemonReaper.pids(epmdPort: port)
        #expect(daemons.count == 1, "daemons for port \(port): \(daemons)")
        for pid in daemons {
            let parent = Self.parentPID(of: pid)
            #expect(parent != started.process.processIdentifier && parent != getpid(), "daemon parent \(parent)")
        }

        // The binary under test as the client lists the node.
        let names = try await Command.epmd(binary, port: port, ["-names"])
        #expect(names.status == 0)
        #expect(
            names.stdout
                == "epmd: up and running on port \(port) with data:\nname \(started.name) at port \(nodePort)\n"
        )
        #expect(names.stderr == "")

        // The node goes; the daemon stays (it is not tied to erl) and forgets the name. erl's end is only
        // seen once every holder of its descriptors closed them: the daemon must not have kept any.
        #expect(started.kill(), "erl still seen running 5 s after SIGKILL: did the daemon keep erl's descriptors?")
        let empty = try await Poll.until(timeout: .seconds(5)) {
            try await WireClient.names(port: port).text.isEmpty
        }
        #expect(empty != nil, "name not removed after the node died")

        let killed = try await Command.epmd(binary, port: port, ["-kill"])
        #expect(killed.status == 0)
        #expect(killed.stdout == "Killed\n")
        let closed = try await Poll.until(timeout: .seconds(5)) { !WireClient.canConnect(port: port) }
        #expect(closed != nil, "port \(port) still accepts connections after -kill")
        let exited = try await Poll.until(timeout: .seconds(5)) { DaemonReaper.pids(epmdPort: port).isEmpty }
        #expect(exited != nil, "daemon process still alive after -kill")
    }

    @Test(
        "erl's own `epmd -daemon` start defers to the server already on the port",
        .enabled(if: ExternalTool.usable("erl")),
        .timeLimit(.minutes(1))
    )
    func erlDefaultEPMDStartDefersToRunningServer() async throws {
        let gateway = try await GatewayProcess.start()
        let port = gateway.port
        defer {
            gateway.stop()
            DaemonReaper.killAll(epmdPort: port)
        }
        // No -start_epmd false: erl runs "$BINDIR/epmd" -daemon (OTP's C epmd) with ERL_EPMD_PORT = port,
        // which must find the port taken and exit 0, so the node registers with our server.
        let node = try await ErlangNode.start(
            name: NodeNames.unique("ite"),
            cookie: NodeNames.cookie(),
            epmdPort: port,
            epmd: .erlDefault
        )
        defer { node.kill() }
        try await node.waitUntilRegistered(epmdPort: port)
        #expect(gateway.process.isRunning, "server died: \(gateway.log)")
        let noDaemon = try await Poll.until(timeout: .seconds(5)) { DaemonReaper.pids(epmdPort: port).isEmpty }
        #expect(noDaemon != nil, "erl's epmd -daemon is still running: the server did not hold the port")
    }

    private static func parentPID(of pid: pid_t) -> pid_t {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.range(of: ")", options: .backwards)
        else { return -1 }
        let fields = stat[close.upperBound...].split(separator: " ")
        return fields.count > 1 ? pid_t(fields[1]) ?? -1 : -1
    }
}
