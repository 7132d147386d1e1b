import Foundation
import GatewayTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A real HAProxy health-checking a real Erlang node through the gateway's
/// `GET /v1/nodes/{name}/health` (200 while the name is registered, 503 when it is not).
///
/// HAProxy (`haproxy -db`, foreground) gets a backend whose one server is checked every 200 ms on the
/// gateway's HTTP port, and a stats socket in a temporary folder, read with `show stat` by an in-process
/// AF_UNIX client. Everything stays on loopback, on `FreePort` ports (never 4369/4370); haproxy, erl and
/// the gateway are killed when the test ends, passed or failed. `deploy/haproxy/haproxy.cfg` is the same
/// check for operators.
@Suite("HAProxy health check", .timeLimit(.minutes(1)))
struct HAProxyHealthCheckTests {
    @Test(
        "HAProxy marks the server DOWN before the node registers, UP once it has, DOWN again after SIGKILL",
        .enabled(if: ExternalTool.usable("haproxy") && ExternalTool.usable("erl")),
        .disabled(if: TestBinary.isCEPMD, "C epmd has no HTTP front")
    )
    func haproxyFollowsTheNodesRegistration() async throws {
        let httpPort = try FreePort.next()
        let gateway = try await GatewayProcess.start(arguments: ["--http-port", String(httpPort)])
        defer { gateway.stop() }
        let http = try await Poll.until(timeout: .seconds(10), interval: .milliseconds(20)) {
            !gateway.process.isRunning || WireClient.canConnect(port: httpPort)
        }
        try #require(
            http != nil && gateway.process.isRunning,
            "no HTTP front on 127.0.0.1:\(httpPort) within 10 s: \(gateway.log)"
        )

        let nodeName = NodeNames.unique("itha")
        let haproxy = try await HAProxyProcess.start(
            backend: "epmd_nodes",
            server: "s1",
            serverPort: try FreePort.next(),
            checkPort: httpPort,
            nodeName: nodeName
        )
        defer { haproxy.kill() }

        // Before the node registers: every check gets the health endpoint's 503 (an HTTP answer from the
        // gateway, not a refused connection), so the server is DOWN within the first checks.
        let down = try await haproxy.waitFor(status: "DOWN", checkCode: "503", within: .seconds(5))
        try #require(down != nil, "server not DOWN (503) before the node registered: \(haproxy.report)")

        let node = try await ErlangNode.start(name: nodeName, cookie: NodeNames.cookie(), epmdPort: gateway.port)
        defer { node.kill() }
        try await node.waitUntilRegistered(epmdPort: gateway.port)
        let up = try await haproxy.waitFor(status: "UP", checkCode: "200", within: .seconds(5))
        try #require(up != nil, "server not UP within 5 s of the registration: \(haproxy.report) \(gateway.log)")

        // SIGKILL: the kernel closes the node's epmd connection, the gateway drops the name, the next
        // checks get 503 again.
        #expect(node.kill(), "erl still running 5 s after SIGKILL")
        let downAgain = try await haproxy.waitFor(status: "DOWN", checkCode: "503", within: .seconds(5))
        #expect(downAgain != nil, "server not DOWN within 5 s of the SIGKILL: \(haproxy.report) \(gateway.log)")
    }
}

/// `haproxy -f CFG -db` in a temporary folder, with one backend, one checked server and an admin stats
/// socket. SIGKILLed by `kill()` or at deinit at the latest; the folder goes with it.
final class HAProxyProcess: @unchecked Sendable {
    // @unchecked: the Process is only touched from the test that owns this object.
    let process: Process
    let directory: URL
    let backend: String
    let server: String

    var socketPath: String { self.directory.appendingPathComponent("stats.sock").path }
    var logURL: URL { self.directory.appendingPathComponent("haproxy.log") }
    var log: String { (try? String(contentsOf: self.logURL, encoding: .utf8)) ?? "" }

    /// The last `show stat` row of the server, for failure messages.
    private(set) var lastRow: [String: String] = [:]

    /// The configuration: `server` at 127.0.0.1:`serverPort` (nothing listens there, no traffic goes
    /// there: the backend has no frontend), checked with `GET /v1/nodes/NODE/health` on
    /// 127.0.0.1:`checkPort` every 200 ms, DOWN after 2 failed checks, UP after 1 good one; a check not
    /// answered within `checkTimeout` fails.
    static func configuration(
        socketPath: String,
        backend: String,
        server: String,
        serverPort: UInt16,
        checkPort: UInt16,
        nodeName: String,
        checkTimeout: String
    ) -> String {
        """
        global
            maxconn 64
            stats socket \(socketPath) level admin
            stats timeout 5s

        defaults
            mode http
            timeout connect 500ms
            timeout client 2s
            timeout server 2s
            timeout check \(checkTimeout)

        backend \(backend)
            option httpchk
            http-check send meth GET uri /v1/nodes/\(nodeName)/health ver HTTP/1.1 hdr Host 127.0.0.1
            http-check expect status 200
            server \(server) 127.0.0.1:\(serverPort) check inter 200ms fall 2 rise 1 addr 127.0.0.1 port \(checkPort)

        """
    }

    /// Writes the configuration, starts haproxy and waits (at most 10 s) until its stats socket answers.
    static func start(
        backend: String,
        server: String,
        serverPort: UInt16,
        checkPort: UInt16,
        nodeName: String,
        checkTimeout: String = "500ms"
    ) async throws -> HAProxyProcess {
        let binary = try ExternalTool.require("haproxy")
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("epmd-gateway-haproxy-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let configURL = directory.appendingPathComponent("haproxy.cfg")
        let text = self.configuration(
            socketPath: directory.appendingPathComponent("stats.sock").path,
            backend: backend,
            server: server,
            serverPort: serverPort,
            checkPort: checkPort,
            nodeName: nodeName,
            checkTimeout: checkTimeout
        )
        try Data(text.utf8).write(to: configURL)

        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["-f", configURL.path, "-db"]
        let haproxy = HAProxyProcess(process: process, directory: directory, backend: backend, server: server)
        try process.logOutput(to: haproxy.logURL)
        try process.runUnmasked()

        let ready = try await Poll.until(timeout: .seconds(10), interval: .milliseconds(20)) {
            if !process.isRunning {
                throw TestFailure("haproxy exited with \(process.terminationStatus): \(haproxy.log)\n\(text)")
            }
            return (try? haproxy.command("show info")) != nil
        }
        guard ready != nil else {
            throw TestFailure("haproxy stats socket not answering within 10 s: \(haproxy.log)")
        }
        return haproxy
    }

    private init(process: Process, directory: URL, backend: String, server: String) {
        self.process = process
        self.directory = directory
        self.backend = backend
        self.server = server
    }

    /// Sends one command on the stats socket and reads the answer up to haproxy's close (1 s bound per
    /// read; haproxy answers at once).
    func command(_ line: String) throws -> String {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket(AF_UNIX): errno \(errno)") }
        defer { close(fd) }
        var timeout = timeval(tv_sec: 1, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let path = Array(self.socketPath.utf8)
        guard path.count < MemoryLayout.size(ofValue: addr.sun_path) else {
            throw TestFailure("socket path too long: \(self.socketPath)")
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { $0.copyBytes(from: path) }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard rc == 0 else { throw TestFailure("connect \(self.socketPath): errno \(errno)") }
        guard WireClient.send(fd, Array((line + "\n").utf8)) else {
            throw TestFailure("send to \(self.socketPath): errno \(errno)")
        }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 {
                bytes += buffer[0..<n]
                continue
            }
            if n == 0 { break }
            if errno == EINTR { continue }
            throw TestFailure("read from \(self.socketPath): errno \(errno) after \(bytes.count) bytes")
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The server's row of `show stat` (CSV, header `# pxname,svname,...`), keyed by column name.
    func serverRow() throws -> [String: String] {
        let lines = try self.command("show stat").split(separator: "\n").map(String.init)
        guard let header = lines.first, header.hasPrefix("# ") else {
            throw TestFailure("show stat: no header in \(lines)")
        }
        let columns = header.dropFirst(2).split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        for line in lines.dropFirst() {
            let fields = line.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            guard fields.count >= 2, fields[0] == self.backend, fields[1] == self.server else { continue }
            return Dictionary(zip(columns, fields), uniquingKeysWith: { first, _ in first })
        }
        throw TestFailure("show stat: no row for \(self.backend)/\(self.server) in \(lines)")
    }

    /// Polls `show stat` until the server's `status` is exactly `status` (not "UP 1/2" and the like) and
    /// its last check got HTTP `checkCode`; returns the time it took, or nil after `limit`.
    func waitFor(status: String, checkCode: String, within limit: Duration) async throws -> Duration? {
        try await Poll.until(timeout: limit, interval: .milliseconds(50)) {
            if !self.process.isRunning {
                throw TestFailure("haproxy exited with \(self.process.terminationStatus): \(self.log)")
            }
            guard let row = try? self.serverRow() else { return false }
            self.lastRow = row
            return row["status"] == status && row["check_code"] == checkCode
        }
    }

    /// The last row's status and check fields, and haproxy's output.
    var report: String {
        let keys = ["status", "check_status", "check_code", "check_duration", "last_chk", "chkfail", "lastchg"]
        let row = keys.map { "\($0)=\(self.lastRow[$0] ?? "?")" }.joined(separator: " ")
        return "[\(row)] haproxy output: \(self.log)"
    }

    /// SIGKILL and wait (at most 5 s) for the exit.
    @discardableResult
    func kill() -> Bool {
        self.process.killAndWait()
    }

    deinit {
        self.kill()
        try? FileManager.default.removeItem(at: self.directory)
    }
}
