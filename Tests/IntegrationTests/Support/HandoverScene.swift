import Foundation
import GatewayTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Gateway A on a `FreePort` with its HTTP front and a hand-over socket in a private folder, two real
/// `erl -sname` nodes and one raw ALIVE2 client (its connection held open, never registering again).
final class HandoverScene: @unchecked Sendable {
    // @unchecked: used by the one test that owns it.
    let gateway: GatewayProcess
    let httpPort: UInt16
    let directory: URL
    let cookie: String
    let nodeA: ErlangNode
    let nodeB: ErlangNode?
    let rawName: String
    let rawNodePort: UInt16 = 4242
    let rawFD: Int32
    private var rawClosed = false

    var socketPath: String { self.directory.appendingPathComponent("handover.sock").path }

    static func start(erlNodes: Bool = true) async throws -> HandoverScene {
        let directory = URL(fileURLWithPath: "/tmp").appendingPathComponent("egw-ho-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        chmod(directory.path, 0o700)
        let httpPort = try FreePort.next()
        let socket = directory.appendingPathComponent("handover.sock").path
        let gateway = try await GatewayProcess.start(
            arguments: ["--http-port", String(httpPort), "--handover-socket", socket, "-d"]
        )
        let http = try await Poll.until(timeout: .seconds(10), interval: .milliseconds(20)) {
            WireClient.canConnect(port: httpPort)
        }
        try #require(http != nil, "no HTTP front: \(gateway.log)")
        let cookie = NodeNames.cookie()
        let nodeA = try await ErlangNode.start(name: NodeNames.unique("itha"), cookie: cookie, epmdPort: gateway.port)
        var nodeB: ErlangNode?
        if erlNodes {
            nodeB = try await ErlangNode.start(name: NodeNames.unique("ithb"), cookie: cookie, epmdPort: gateway.port)
            try await nodeB?.waitUntilRegistered(epmdPort: gateway.port)
        }
        try await nodeA.waitUntilRegistered(epmdPort: gateway.port)
        let rawName = NodeNames.unique("itraw")
        let raw = try await WireClient.register(port: gateway.port, name: rawName, nodePort: 4242)
        try #require(raw.reply.count == 6 && raw.reply[1] == 0, "raw registration refused: \(raw.reply)")
        return HandoverScene(
            gateway: gateway,
            httpPort: httpPort,
            directory: directory,
            cookie: cookie,
            nodeA: nodeA,
            nodeB: nodeB,
            rawName: rawName,
            rawFD: raw.fd
        )
    }

    private init(
        gateway: GatewayProcess,
        httpPort: UInt16,
        directory: URL,
        cookie: String,
        nodeA: ErlangNode,
        nodeB: ErlangNode?,
        rawName: String,
        rawFD: Int32
    ) {
        self.gateway = gateway
        self.httpPort = httpPort
        self.directory = directory
        self.cookie = cookie
        self.nodeA = nodeA
        self.nodeB = nodeB
        self.rawName = rawName
        self.rawFD = rawFD
    }

    func stop() {
        self.nodeA.kill()
        self.nodeB?.kill()
        self.closeRawClient()
        self.gateway.stop()
        try? FileManager.default.removeItem(at: self.directory)
    }

    /// Closes the raw client's registration connection (once).
    func closeRawClient() {
        guard !self.rawClosed else { return }
        self.rawClosed = true
        close(self.rawFD)
    }

    /// Starts `epmd-gateway -port P --http-port H --handover-socket S --takeover`.
    func launchSuccessor() throws -> SuccessorProcess {
        try SuccessorProcess(
            arguments: [
                "-port", String(self.gateway.port), "--http-port", String(self.httpPort), "--handover-socket",
                self.socketPath, "--takeover", "-d",
            ]
        )
    }

    /// `epmd -names` (OTP's client) lists the two erl nodes and the raw client, and a NEW erl node
    /// pings both old ones through the successor.
    func checkAllThreeServed(by log: @autoclosure () -> String) async throws {
        let epmd = try ExternalTool.require("epmd")
        let names = try await Command.epmd(epmd, port: self.gateway.port, ["-names"])
        var expected = [self.nodeA.name, self.rawName]
        if let nodeB { expected.append(nodeB.name) }
        for name in expected {
            #expect(names.stdout.contains("name \(name) at port"), "epmd -names after the switch: \(names) \(log())")
        }
        var pings = "io:format(\"a=~p~n\", [net_adm:ping(list_to_atom(\"\(self.nodeA.name)@\" ++ Host))]),"
        if let nodeB { pings += "io:format(\"b=~p~n\", [net_adm:ping(list_to_atom(\"\(nodeB.name)@\" ++ Host))])," }
        let expression = """
            [_, Host] = string:split(atom_to_list(node()), "@"),
            \(pings)
            halt().
            """
        let result = try await ErlangNode.eval(
            name: NodeNames.unique("itnew"),
            cookie: self.cookie,
            epmdPort: self.gateway.port,
            expression: expression
        )
        #expect(result.stdout.contains("a=pong"), "new node's ping: \(result.stdout) \(result.stderr)")
        if self.nodeB != nil { #expect(result.stdout.contains("b=pong"), "new node's ping: \(result.stdout)") }
    }

    /// After the switch: the raw client's name is still refused while it lives; a killed node leaves.
    func checkRulesAfterTheSwitch() async throws {
        let again = try await WireClient.register(port: self.gateway.port, name: self.rawName, nodePort: 4243)
        close(again.fd)
        #expect(again.reply.count == 6 && again.reply[1] != 0, "the live raw client's name was accepted again")
        #expect(self.nodeA.kill(), "erl still running after SIGKILL")
        let gone = try await Poll.until(timeout: .seconds(5), interval: .milliseconds(20)) {
            let names = try await WireClient.names(port: self.gateway.port).text
            return NamesText.port(of: self.nodeA.name, in: names) == nil
        }
        #expect(gone != nil, "the killed node is still listed after the switch")
        let names = try await WireClient.names(port: self.gateway.port).text
        #expect(NamesText.port(of: self.rawName, in: names) == self.rawNodePort, "\(names)")
    }

    /// PORT_PLEASE2 lookups of the raw client, 4 threads, one connection per lookup.
    func startLookupLoad(seconds: Int) throws -> LookupLoad {
        try LookupLoad(port: self.gateway.port, name: self.rawName, expectPort: self.rawNodePort, seconds: seconds)
    }

    /// "epmd port paused N ms" from the old process's hand-over line.
    func switchTime(in log: String) -> String {
        guard let range = log.range(of: "epmd port paused ", options: .backwards) else {
            return "no switch time logged"
        }
        return "switch (old stops accepting → successor serves): \(log[range.upperBound...].prefix { $0 != "\n" })"
    }
}

/// A successor gateway started by the test, stopped (SIGTERM, then SIGKILL) at the end.
final class SuccessorProcess: @unchecked Sendable {
    let process = Process()
    let logURL = Process.temporaryLog("epmd-gateway-successor")

    init(arguments: [String]) throws {
        self.process.executableURL = TestBinary.url
        self.process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        for key in ["ERL_EPMD_PORT", "ERL_EPMD_ADDRESS", "ERL_EPMD_RELAXED_COMMAND_CHECK"] {
            env.removeValue(forKey: key)
        }
        self.process.environment = env
        try self.process.logOutput(to: self.logURL)
        try self.process.runUnmasked()
    }

    var log: String { (try? String(contentsOf: self.logURL, encoding: .utf8)) ?? "" }

    func stop() {
        guard self.process.isRunning else { return }
        kill(self.process.processIdentifier, SIGTERM)
        let process = self.process
        if Poll.blockingUntil(timeout: .seconds(3), interval: .milliseconds(10), { !process.isRunning }) == nil {
            self.process.killAndWait()
        }
    }

    deinit {
        self.stop()
        try? FileManager.default.removeItem(at: self.logURL)
    }
}

/// `Benchmarks/loadgen.c port2` in the background: compiled once per test process.
final class LookupLoad: @unchecked Sendable {
    struct Figures {
        var ok: Int
        var failed: Int
        var line: String
    }

    private static let binary: Result<String, TestFailure> = {
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("egw-loadgen-\(getpid())").path
        let source = RepositoryRoot.appending("Benchmarks/loadgen.c").path
        guard let cc = ExternalTool.path("cc"),
            let result = try? Command.run(cc, ["-O2", "-pthread", "-o", output, source], timeout: 120),
            result.status == 0
        else { return .failure(TestFailure("cannot compile \(source) with cc")) }
        return .success(output)
    }()

    private let process = Process()
    private let output = Process.temporaryLog("egw-loadgen-out")

    init(port: UInt16, name: String, expectPort: UInt16, seconds: Int) throws {
        self.process.executableURL = URL(fileURLWithPath: try Self.binary.get())
        self.process.arguments = [
            "port2", "--port", String(port), "--name", name, "--expect-port", String(expectPort), "--threads", "4",
            "--seconds", String(seconds), "--warmup", "0", "--max-ops", "5000000", "--timeout-ms", "10000",
            "--src", "127.0.0.2",  // away from the TIME_WAIT ports other tests leave on 127.0.0.1, as scripts/bench
        ]
        try self.process.logOutput(to: self.output)
        try self.process.runUnmasked()
    }

    /// Waits for the end (bounded) and parses `ok=… conn_err=… io_err=… bad=…`.
    func finish() async throws -> Figures {
        let process = self.process
        let done = try await Poll.until(timeout: .seconds(60), interval: .milliseconds(50)) { !process.isRunning }
        if done == nil { process.killAndWait() }
        let text = (try? String(contentsOf: self.output, encoding: .utf8)) ?? ""
        try? FileManager.default.removeItem(at: self.output)
        guard let line = text.split(separator: "\n").last(where: { $0.hasPrefix("ok=") }).map(String.init) else {
            throw TestFailure("loadgen printed no result: \(text)")
        }
        var values: [String: Int] = [:]
        for pair in line.split(separator: " ") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            if parts.count == 2, let value = Double(parts[1]) { values[String(parts[0])] = Int(value) }
        }
        let failed = (values["conn_err"] ?? -1) + (values["io_err"] ?? -1) + (values["bad"] ?? -1)
        return Figures(ok: values["ok"] ?? 0, failed: failed, line: line)
    }

    deinit { self.process.killAndWait() }
}

/// The hand-over protocol spoken by hand (a test client sending what no real successor sends).
enum HandoverWire {
    struct Frame: CustomStringConvertible {
        var type: UInt8
        var text: String
        var description: String { "type \(self.type): \(self.text)" }
    }

    /// Connects to `path`, sends a hello with `formatVersion`, returns the first frame of the answer.
    static func hello(path: String, formatVersion: UInt16) throws -> Frame {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket: errno \(errno)") }
        defer { close(fd) }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard rc == 0 else { throw TestFailure("connect \(path): errno \(errno)") }
        let version = Array("test".utf8)
        var payload: [UInt8] = [0x45, 0x50, 0x48, 0x4F, UInt8(formatVersion >> 8), UInt8(formatVersion & 0xFF)]
        payload += WireClient.be32(UInt32(version.count)) + version + WireClient.be32(UInt32(bitPattern: getpid()))
        guard WireClient.send(fd, [1] + WireClient.be32(UInt32(payload.count)) + payload) else {
            throw TestFailure("send: errno \(errno)")
        }
        let header = try WireClient.read(fd, count: 5)
        let length = Int(header[1]) << 24 | Int(header[2]) << 16 | Int(header[3]) << 8 | Int(header[4])
        let body = length > 0 ? try WireClient.read(fd, count: length) : []
        return Frame(type: header[0], text: String(decoding: body, as: UTF8.self))
    }
}
