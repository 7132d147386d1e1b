import Foundation
import GatewayTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Access control with real non-loopback peers: two network namespaces made by the test, joined by a
/// veth pair on a private /24 that exists only inside them. The server runs in namespace A; a client
/// in namespace B is a remote host. Nothing leaves the namespaces the test creates.
@Suite(.timeLimit(.minutes(2)))
struct AccessControlTests {
    /// Root and `ip` are needed to create namespaces; CI runs as root, so there this always runs.
    static var canCreateNamespaces: Bool {
        CIRule.enabled(
            ifAvailable: getuid() == 0 && ExternalTool.path("ip") != nil && ExternalTool.path("python3") != nil
        )
    }

    /// Two namespaces and a veth pair between them; deleted (with the pair) on `remove()`.
    struct Namespaces {
        let server: String
        let client: String
        let serverAddress: String
        let clientAddress: String
        let ip: String

        static func create() throws -> Namespaces {
            let ip = try ExternalTool.require("ip")
            let tag = String(UInt32.random(in: 0..<0xFFFFFF), radix: 16)
            let subnet = Int.random(in: 1...254)
            let namespaces = Namespaces(
                server: "egw-s-\(tag)",
                client: "egw-c-\(tag)",
                serverAddress: "10.213.\(subnet).1",
                clientAddress: "10.213.\(subnet).2",
                ip: ip
            )
            let steps: [[String]] = [
                ["netns", "add", namespaces.server],
                ["netns", "add", namespaces.client],
                [
                    "link", "add", "vs\(tag)", "netns", namespaces.server, "type", "veth", "peer", "name", "vc\(tag)",
                    "netns", namespaces.client,
                ],
                ["-n", namespaces.server, "addr", "add", "\(namespaces.serverAddress)/24", "dev", "vs\(tag)"],
                ["-n", namespaces.client, "addr", "add", "\(namespaces.clientAddress)/24", "dev", "vc\(tag)"],
                ["-n", namespaces.server, "link", "set", "vs\(tag)", "up"],
                ["-n", namespaces.client, "link", "set", "vc\(tag)", "up"],
                ["-n", namespaces.server, "link", "set", "lo", "up"],
                ["-n", namespaces.client, "link", "set", "lo", "up"],
            ]
            for step in steps {
                let result = try Command.run(ip, step, timeout: 10)
                guard result.status == 0 else {
                    namespaces.remove()
                    throw TestFailure("ip \(step.joined(separator: " ")): \(result.stderr)")
                }
            }
            return namespaces
        }

        func remove() {
            _ = try? Command.run(self.ip, ["netns", "del", self.server], timeout: 10)
            _ = try? Command.run(self.ip, ["netns", "del", self.client], timeout: 10)
        }
    }

    /// A python client run inside a namespace: sends each framed request on a new connection and
    /// prints what came back before the server closed (hex, one line per request).
    static let clientScript = """
        import socket, struct, sys
        host, port = sys.argv[1], int(sys.argv[2])
        def ask(body):
            s = socket.create_connection((host, port), timeout=5)
            s.sendall(struct.pack(">H", len(body)) + body)
            data = b""
            try:
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            except ConnectionResetError:
                pass
            s.close()
            return data
        alive = b"x" + struct.pack(">HBBHHH", 7777, 77, 0, 6, 5, 6) + b"remote" + b"\\0\\0"
        bodies = [bytes.fromhex(h) for h in sys.argv[3:]] or [alive, b"n", b"zsamehost", b"d", b"k", b"ssamehost"]
        for body in bodies:
            print(ask(body).hex(), flush=True)
        """

    /// Registers `samehost` by connecting to the server namespace's own non-loopback address (peer
    /// address == local address: local by C epmd's rule), prints the reply, and holds the registration
    /// until stdin closes.
    static let sameHostScript = """
        import socket, struct, sys
        s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
        body = b"x" + struct.pack(">HBBHHH", 4242, 77, 0, 6, 5, 8) + b"samehost" + b"\\0\\0"
        s.sendall(struct.pack(">H", len(body)) + body)
        print(s.recv(6).hex(), flush=True)
        sys.stdin.read()
        """

    /// Starts the binary in the server namespace and waits until it answers.
    static func startServer(in namespaces: Namespaces, port: UInt16, _ arguments: [String]) async throws -> Process {
        let server = Process()
        server.executableURL = URL(fileURLWithPath: namespaces.ip)
        server.arguments = ["netns", "exec", namespaces.server, TestBinary.url.path, "-port", String(port)] + arguments
        server.standardInput = FileHandle.nullDevice
        try await server.spawnUnmasked()
        let ready = try await Poll.until(timeout: .seconds(10), interval: .milliseconds(20)) {
            let probe = try await Blocking.run {
                try Command.run(
                    namespaces.ip,
                    ["netns", "exec", namespaces.server, TestBinary.url.path, "-port", String(port), "-started"],
                    timeout: 5
                )
            }
            return probe.status == 0
        }
        if ready == nil { kill(server.processIdentifier, SIGKILL) }
        try #require(ready != nil, "server in \(namespaces.server) did not come up")
        return server
    }

    /// The `samehost` registration, held by a python process in the server namespace.
    struct HeldRegistration {
        let process: Process
        let input: Pipe

        func release() {
            try? self.input.fileHandleForWriting.close()
            if self.process.isRunning { kill(self.process.processIdentifier, SIGKILL) }
        }
    }

    /// Registers `samehost` over the server namespace's own non-loopback address (peer address ==
    /// local address: local by C epmd's rule) and checks that it succeeded.
    static func holdSameHostRegistration(
        in namespaces: Namespaces,
        port: UInt16,
        python: String
    ) async throws -> HeldRegistration {
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: namespaces.ip)
        holder.arguments = [
            "netns", "exec", namespaces.server, python, "-c", Self.sameHostScript, namespaces.serverAddress,
            String(port),
        ]
        let holderInput = Pipe()
        let holderOutput = Pipe()
        holder.standardInput = holderInput
        holder.standardOutput = holderOutput
        try await holder.spawnUnmasked()
        let held = HeldRegistration(process: holder, input: holderInput)
        let registration = try await Blocking.run {
            String(decoding: holderOutput.fileHandleForReading.availableData, as: UTF8.self)
        }
        // Local by "peer address == local address": the registration succeeds.
        #expect(registration.hasPrefix("7600"), "same-host ALIVE2 over a non-loopback address: \(registration)")
        return held
    }

    /// Runs the client script in the client namespace; returns one hex reply per request body.
    static func askRemotely(
        _ namespaces: Namespaces,
        port: UInt16,
        python: String,
        bodies: [[UInt8]] = []
    ) async throws -> [String] {
        let hexBodies = bodies.map { $0.map { String(format: "%02x", $0) }.joined() }
        let remote = try await Blocking.run {
            try Command.run(
                namespaces.ip,
                [
                    "netns", "exec", namespaces.client, python, "-c", Self.clientScript, namespaces.serverAddress,
                    String(port),
                ] + hexBodies,
                timeout: 30
            )
        }
        #expect(remote.status == 0, "client failed: \(remote.stderr)")
        return remote.stdout.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    }

    @Test(
        "remote peers get NAMES and PORT2 only; ALIVE2, DUMP, KILL and STOP from them are closed unanswered",
        .enabled(if: Self.canCreateNamespaces)
    )
    func nonLocalPeers() async throws {
        let python = try ExternalTool.require("python3")
        let namespaces = try Namespaces.create()
        defer { namespaces.remove() }
        let port = try FreePort.next()

        let server = try await Self.startServer(in: namespaces, port: port, ["-relaxed_command_check"])
        defer {
            if server.isRunning { kill(server.processIdentifier, SIGKILL) }
        }
        let holder = try await Self.holdSameHostRegistration(in: namespaces, port: port, python: python)
        defer { holder.release() }

        let replies = try await Self.askRemotely(namespaces, port: port, python: python)
        try #require(replies.count >= 6, "client output: \(replies)")
        let portHex = String(format: "%08x", UInt32(port))
        let namesLine = Array("name samehost at port 4242\n".utf8).map { String(format: "%02x", $0) }.joined()
        #expect(replies[0] == "", "ALIVE2 from a remote peer must be closed without a reply")
        #expect(replies[1] == portHex + namesLine, "NAMES is open to remote peers and does not list 'remote'")
        #expect(replies[2].hasPrefix("770010924d00"), "PORT2 is open to remote peers")
        #expect(replies[3] == "", "DUMP from a remote peer must be closed without a reply")
        #expect(replies[4] == "", "KILL from a remote peer must be closed without a reply")
        #expect(replies[5] == "", "STOP from a remote peer must be closed without a reply, even when relaxed")
        #expect(server.isRunning, "the remote KILL must not stop the server")

        // The same-host registration is still there after all of it.
        let names = try await Blocking.run {
            try Command.run(
                namespaces.ip,
                ["netns", "exec", namespaces.server, TestBinary.url.path, "-port", String(port), "-names"],
                timeout: 10
            )
        }
        #expect(names.stdout.hasSuffix("name samehost at port 4242\n"))
    }

    @Test(
        "--names-local-only: a remote NAMES is closed unanswered and counted; remote PORT2 and local NAMES still work",
        .enabled(if: !TestBinary.isCEPMD && Self.canCreateNamespaces)
    )
    func namesLocalOnly() async throws {
        let python = try ExternalTool.require("python3")
        let namespaces = try Namespaces.create()
        defer { namespaces.remove() }
        let curl = try ExternalTool.require("curl")
        let port = try FreePort.next()
        let httpPort = try FreePort.next()
        let server = try await Self.startServer(
            in: namespaces,
            port: port,
            ["--names-local-only", "--http-port", String(httpPort)]
        )
        defer {
            if server.isRunning { kill(server.processIdentifier, SIGKILL) }
        }
        let holder = try await Self.holdSameHostRegistration(in: namespaces, port: port, python: python)
        defer { holder.release() }

        let replies = try await Self.askRemotely(
            namespaces,
            port: port,
            python: python,
            bodies: [Array("n".utf8), Array("zsamehost".utf8)]
        )
        try #require(replies.count >= 2, "client output: \(replies)")
        #expect(replies[0] == "", "NAMES from a remote peer must be closed without a reply")
        #expect(replies[1].hasPrefix("770010924d00"), "PORT2 stays open to remote peers")

        // From inside the server's host (loopback), NAMES still lists the node.
        let names = try await Blocking.run {
            try Command.run(
                namespaces.ip,
                ["netns", "exec", namespaces.server, TestBinary.url.path, "-port", String(port), "-names"],
                timeout: 10
            )
        }
        #expect(names.stdout.hasSuffix("name samehost at port 4242\n"))
        #expect(server.isRunning)
        let metrics = try await Blocking.run {
            try Command.run(
                namespaces.ip,
                ["netns", "exec", namespaces.server, curl, "-s", "-m", "5", "http://127.0.0.1:\(httpPort)/metrics"],
                timeout: 10
            )
        }
        #expect(metrics.stdout.contains("epmd_malformed_packets_total{reason=\"not_local\"} 1\n"))
    }
}
