import Foundation
import GatewayTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// OTP's C client (`/usr/bin/epmd -names|-kill|-stop|-dump|-started`) against the server under test, and
/// the same client modes run through the binary under test, side by side with the C client.
///
/// The C client is always given a client mode flag: without one it would start a daemon.
@Suite("Real epmd client")
struct RealEPMDClientTests {
    /// Registers `name` through a raw ALIVE2 and returns the open connection (closing it unregisters).
    private static func register(port: UInt16, name: String, nodePort: UInt16) async throws -> Int32 {
        let (fd, reply) = try await WireClient.register(port: port, name: name, nodePort: nodePort)
        guard reply.count == 6, reply[0] == 118, reply[1] == 0 else {
            close(fd)
            throw TestFailure("ALIVE2 \(name) refused: \(reply)")
        }
        return fd
    }

    /// True when the server closed `fd` (EOF or reset) within 5 s.
    private static func seesEOF(_ fd: Int32) async -> Bool {
        let end = await WireClient.collect(fd, for: .seconds(5))
        return end.ending == .eof || end.ending == .reset(ECONNRESET)
    }

    @Test(
        "epmd -names prints the header and the registered nodes, newest first",
        .enabled(if: ExternalTool.usable("epmd")),
        .timeLimit(.minutes(1))
    )
    func namesListsRegisteredNodes() async throws {
        let epmd = try ExternalTool.require("epmd")
        let gateway = try await GatewayProcess.start()
        defer { gateway.stop() }
        let port = gateway.port
        let header = "epmd: up and running on port \(port) with data:\n"

        let empty = try await Command.epmd(epmd, port: port, ["-names"])
        #expect(empty.status == 0)
        #expect(empty.stdout == header)
        #expect(empty.stderr == "")

        let foo = NodeNames.unique("foo")
        let bar = NodeNames.unique("bar")
        let fooFD = try await Self.register(port: port, name: foo, nodePort: 5555)
        defer { close(fooFD) }
        let barFD = try await Self.register(port: port, name: bar, nodePort: 6666)
        defer { close(barFD) }

        let listed = try await Command.epmd(epmd, port: port, ["-names"])
        #expect(listed.status == 0)
        #expect(listed.stdout == header + "name \(bar) at port 6666\nname \(foo) at port 5555\n")
        #expect(listed.stderr == "")
    }

    @Test(
        "epmd -kill is refused while a real node lives, then kills the server, which exits 0",
        .enabled(if: ExternalTool.usable("epmd") && ExternalTool.usable("erl")),
        .timeLimit(.minutes(1))
    )
    func killRefusedWithLiveNodesThenKills() async throws {
        let epmd = try ExternalTool.require("epmd")
        let gateway = try await GatewayProcess.start()
        defer { gateway.stop() }
        let port = gateway.port
        let node = try await ErlangNode.start(name: NodeNames.unique("itl"), cookie: NodeNames.cookie(), epmdPort: port)
        defer { node.kill() }
        try await node.waitUntilRegistered(epmdPort: port)
        let name = node.name

        let refused = try await Command.epmd(epmd, port: port, ["-kill"])
        #expect(refused.status == 1)
        #expect(refused.stdout == "Killing not allowed - living nodes in database.\n")
        #expect(refused.stderr == "")
        #expect(gateway.process.isRunning, "server exited after a refused KILL: \(gateway.log)")
        let still = try await WireClient.names(port: port)
        #expect(NamesText.port(of: name, in: still.text) != nil, "the node lost its registration")

        node.kill()
        let empty = try await Poll.until(timeout: .seconds(5)) { try await WireClient.names(port: port).text.isEmpty }
        #expect(empty != nil, "name not removed after the node died")

        let killed = try await Command.epmd(epmd, port: port, ["-kill"])
        #expect(killed.status == 0)
        #expect(killed.stdout == "Killed\n")
        #expect(killed.stderr == "")
        // Foundation traps on a running process's status: require the exit first.
        let status = try #require(await gateway.waitForExit(within: .seconds(5)), "server still running 5 s after KILL")
        #expect(gateway.process.terminationReason == .exit)
        #expect(status == 0)
        #expect(!WireClient.canConnect(port: port))
    }

    @Test(
        "Relaxed mode: epmd -stop NAME prints STOPPED and drops the node, unknown names print NOEXIST",
        .enabled(if: ExternalTool.usable("epmd")),
        .timeLimit(.minutes(1)),
        arguments: ["flag", "environment"]
    )
    func stopInRelaxedMode(relaxedBy: String) async throws {
        let epmd = try ExternalTool.require("epmd")
        let gateway =
            relaxedBy == "flag"
            ? try await GatewayProcess.start(arguments: ["-relaxed_command_check"])
            : try await GatewayProcess.start(environment: ["ERL_EPMD_RELAXED_COMMAND_CHECK": ""])
        defer { gateway.stop() }
        let port = gateway.port
        let foo = NodeNames.unique("foo")
        let bar = NodeNames.unique("bar")
        let fooFD = try await Self.register(port: port, name: foo, nodePort: 5555)
        defer { close(fooFD) }
        let barFD = try await Self.register(port: port, name: bar, nodePort: 6666)
        defer { close(barFD) }

        let stopped = try await Command.epmd(epmd, port: port, ["-stop", foo])
        #expect(stopped.status == 0)
        #expect(stopped.stdout == "STOPPED\n")
        #expect(stopped.stderr == "")
        let names = try await WireClient.names(port: port)
        #expect(NamesText.port(of: foo, in: names.text) == nil, "NAMES after STOP: \(names.text)")
        #expect(NamesText.port(of: bar, in: names.text) == 6666, "NAMES after STOP: \(names.text)")
        #expect(await Self.seesEOF(fooFD), "the stopped node's ALIVE connection was not closed")

        let unknown = try await Command.epmd(epmd, port: port, ["-stop", NodeNames.unique("nobody")])
        #expect(unknown.status == 0)
        #expect(unknown.stdout == "NOEXIST\n")
        #expect(unknown.stderr == "")

        // Relaxed KILL succeeds with a live node, whose connection is closed.
        let killed = try await Command.epmd(epmd, port: port, ["-kill"])
        #expect(killed.status == 0)
        #expect(killed.stdout == "Killed\n")
        let status = try #require(await gateway.waitForExit(within: .seconds(5)), "server still running 5 s after KILL")
        #expect(status == 0)
        #expect(await Self.seesEOF(barFD), "the live node's connection was not closed by KILL")
    }

    @Test(
        "Without relaxed mode epmd -stop gets no reply and the node stays",
        .enabled(if: ExternalTool.usable("epmd")),
        .timeLimit(.minutes(1))
    )
    func stopRefusedWithoutRelaxedMode() async throws {
        let epmd = try ExternalTool.require("epmd")
        let gateway = try await GatewayProcess.start()
        defer { gateway.stop() }
        let port = gateway.port
        let foo = NodeNames.unique("foo")
        let fooFD = try await Self.register(port: port, name: foo, nodePort: 5555)
        defer { close(fooFD) }

        let refused = try await Command.epmd(epmd, port: port, ["-stop", foo])
        #expect(refused.status == 1)
        #expect(refused.stdout == "epmd: local epmd responded with <>\n")
        #expect(refused.stderr == "")
        let names = try await WireClient.names(port: port)
        #expect(NamesText.port(of: foo, in: names.text) == 5555)
        #expect(gateway.process.isRunning)
    }

    @Test(
        "Client modes of the binary under test print and exit exactly as /usr/bin/epmd does",
        .enabled(if: ExternalTool.usable("epmd")),
        .timeLimit(.minutes(1))
    )
    func clientModesMatchCEPMDSideBySide() async throws {
        let epmd = try ExternalTool.require("epmd")
        let ours = TestBinary.url.path

        func compare(_ port: UInt16, _ arguments: [String], _ comment: String) async throws -> CommandResult {
            let reference = try await Command.epmd(epmd, port: port, arguments)
            let result = try await Command.epmd(ours, port: port, arguments)
            #expect(result.status == reference.status, "\(arguments) \(comment): exit status")
            #expect(result.stdout == reference.stdout, "\(arguments) \(comment): stdout")
            #expect(result.stderr == reference.stderr, "\(arguments) \(comment): stderr")
            return reference
        }

        // A strict server with two live registrations.
        let strict = try await GatewayProcess.start()
        defer { strict.stop() }
        let foo = NodeNames.unique("foo")
        let bar = NodeNames.unique("bar")
        let fooFD = try await Self.register(port: strict.port, name: foo, nodePort: 5555)
        defer { close(fooFD) }
        let barFD = try await Self.register(port: strict.port, name: bar, nodePort: 6666)
        defer { close(barFD) }
        let header = "epmd: up and running on port \(strict.port) with data:\n"
        #expect(try await compare(strict.port, ["-names"], "strict").stdout.hasPrefix(header))
        let dump = try await compare(strict.port, ["-dump"], "strict")
        #expect(dump.stdout.hasPrefix(header) && dump.stdout.contains("active name     <\(foo)> at port 5555, fd = "))
        #expect(try await compare(strict.port, ["-started"], "strict").status == 0)
        #expect(try await compare(strict.port, ["-kill"], "strict, live nodes").status == 1)
        #expect(try await compare(strict.port, ["-stop", foo], "strict").status == 1)
        #expect(strict.process.isRunning)

        // A relaxed server: each client stops one of two nodes, then both see the same state.
        let relaxed = try await GatewayProcess.start(arguments: ["-relaxed_command_check"])
        defer { relaxed.stop() }
        let one = NodeNames.unique("one")
        let two = NodeNames.unique("two")
        let oneFD = try await Self.register(port: relaxed.port, name: one, nodePort: 7001)
        defer { close(oneFD) }
        let twoFD = try await Self.register(port: relaxed.port, name: two, nodePort: 7002)
        defer { close(twoFD) }
        let stopC = try await Command.epmd(epmd, port: relaxed.port, ["-stop", one])
        let stopOurs = try await Command.epmd(ours, port: relaxed.port, ["-stop", two])
        #expect(stopC.stdout == "STOPPED\n" && stopC.status == 0)
        #expect(stopOurs.stdout == stopC.stdout && stopOurs.status == stopC.status && stopOurs.stderr == stopC.stderr)
        #expect(
            try await compare(relaxed.port, ["-stop", NodeNames.unique("nobody")], "relaxed").stdout == "NOEXIST\n"
        )
        #expect(try await compare(relaxed.port, ["-names"], "relaxed, after STOP").status == 0)
        #expect(try await compare(relaxed.port, ["-dump"], "relaxed, old entries").stdout.contains("old/unused name <"))

        // KILL on two empty strict servers, one per client: both exit 0.
        let first = try await GatewayProcess.start()
        defer { first.stop() }
        let second = try await GatewayProcess.start()
        defer { second.stop() }
        let killC = try await Command.epmd(epmd, port: first.port, ["-kill"])
        let killOurs = try await Command.epmd(ours, port: second.port, ["-kill"])
        #expect(killC.stdout == "Killed\n" && killC.status == 0)
        #expect(killOurs.stdout == killC.stdout && killOurs.status == killC.status && killOurs.stderr == killC.stderr)
        #expect(await first.waitForExit(within: .seconds(5)) == 0)
        #expect(await second.waitForExit(within: .seconds(5)) == 0)

        // Nothing listening: every mode fails the same way.
        let closedPort = try FreePort.next()
        for arguments in [["-names"], ["-dump"], ["-started"], ["-kill"], ["-stop", foo]] {
            let reference = try await compare(closedPort, arguments, "no server")
            #expect(reference.status == 1)
        }
    }

    @Test(
        "A second server on a port already in use exits 0 and the first keeps working",
        .timeLimit(.minutes(1)),
        arguments: [[String](), ["-address", "127.0.0.1"], ["-d"]]
    )
    func secondServerOnTakenPortExitsZero(extraArguments: [String]) async throws {
        let gateway = try await GatewayProcess.start()
        defer { gateway.stop() }
        let port = gateway.port
        let binary = TestBinary.url.path
        let second = try await Command.epmd(binary, port: port, extraArguments)
        #expect(second.status == 0, "second server: \(second.stdout) \(second.stderr)")
        #expect(gateway.process.isRunning, "first server died: \(gateway.log)")

        let name = NodeNames.unique("itz")
        let fd = try await Self.register(port: port, name: name, nodePort: 4711)
        defer { close(fd) }
        let names = try await WireClient.names(port: port)
        #expect(names.prefix == UInt32(port))
        #expect(names.text == "name \(name) at port 4711\n")
    }

    @Test(
        "A symlink named epmd pointing at the binary works as the client",
        .enabled(if: ExternalTool.usable("epmd")),
        .timeLimit(.minutes(1))
    )
    func symlinkNamedEPMDWorksAsClient() async throws {
        let epmd = try ExternalTool.require("epmd")
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("epmd-link-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let link = directory.appendingPathComponent("epmd")
        try FileManager.default.createSymbolicLink(atPath: link.path, withDestinationPath: TestBinary.url.path)

        let gateway = try await GatewayProcess.start()
        defer { gateway.stop() }
        let port = gateway.port
        let name = NodeNames.unique("its")
        let fd = try await Self.register(port: port, name: name, nodePort: 4242)
        defer { close(fd) }

        let viaLink = try await Command.epmd(link.path, port: port, ["-names"])
        #expect(viaLink.status == 0)
        #expect(viaLink.stdout == "epmd: up and running on port \(port) with data:\nname \(name) at port 4242\n")
        #expect(viaLink.stderr == "")
        let reference = try await Command.epmd(epmd, port: port, ["-names"])
        #expect(viaLink.stdout == reference.stdout)
        let started = try await Command.epmd(link.path, port: port, ["-started"])
        #expect(started.status == 0 && started.stdout == "")
    }
}
