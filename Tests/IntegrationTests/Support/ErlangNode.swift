import Foundation
import GatewayTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Names and cookies for real nodes: a random suffix so parallel tests (and leftovers of an
/// aborted run) never collide.
enum NodeNames {
    static func unique(_ prefix: String) -> String {
        let suffix = UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(10).lowercased()
        return "\(prefix)_\(suffix)"
    }

    static func cookie() -> String { self.unique("cookie") }

    /// This machine's host name as gethostname() gives it ("" if that fails).
    static var hostName: String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The host part erl gives `-sname` nodes: the host name up to its first dot.
    static var shortHostName: String {
        String(self.hostName.split(separator: ".").first ?? "localhost")
    }
}

/// How a node gets its epmd.
enum EPMDStart {
    /// `-start_epmd false`: the node only talks to the epmd already on ERL_EPMD_PORT.
    case never
    /// `-epmd "CMD"`: erl runs CMD itself (through `system()`) before starting the node.
    case command(String)
    /// erl's default: it runs `"$BINDIR/epmd" -daemon` (OTP's C epmd) before starting the node.
    case erlDefault
}

/// Environment and arguments shared by every real Erlang/Elixir node the tests start.
enum ErlangEnvironment {
    /// An inetrc that resolves this machine's host name to 127.0.0.1, so that `-sname` nodes reach
    /// each other (and the gateway) over loopback only, whatever the host's DNS says.
    static let inetrcPath: String = {
        let host = NodeNames.shortHostName
        let names = Set([host, NodeNames.hostName].filter { !$0.isEmpty }).sorted().map { "\"\($0)\"" }
        let text = "{host, {127,0,0,1}, [\(names.joined(separator: ", "))]}.\n{lookup, [file, native]}.\n"
        // One file per host name, rewritten atomically by every test process (same content).
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("epmd-gateway-it-\(host).inetrc")
        try? Data(text.utf8).write(to: url, options: .atomic)
        return url.path
    }()

    /// Distribution listens on loopback only, in a window of 1000 ports in 20000-32767: below the kernel's
    /// ephemeral range like `FreePort`'s ports, and above them, so a node never takes a port another test
    /// just got from `FreePort.next()` and is about to bind. erl tries the window's ports in order; the
    /// window starts at random.
    static var distributionArguments: [String] {
        let top = min(32767, Int(FreePort.ephemeralRange.lowerBound) - 1)
        let low = Int.random(in: 20000...max(20000, top - 999))
        return [
            "-kernel", "inet_dist_use_interface", "{127,0,0,1}",
            "-kernel", "inet_dist_listen_min", String(low),
            "-kernel", "inet_dist_listen_max", String(low + 999),
        ]
    }

    static func variables(epmdPort: UInt16) -> [String: String] {
        ["ERL_EPMD_PORT": String(epmdPort), "ERL_INETRC": self.inetrcPath]
    }
}

/// A real `erl -sname` node running in the background. SIGKILLed by `kill()` or at deinit at the latest.
final class ErlangNode: @unchecked Sendable {
    // @unchecked: the Process is only touched from the test that owns this object.
    let name: String
    let process: Process
    let logURL: URL

    /// Starts `erl -sname NAME -noshell -setcookie COOKIE` with ERL_EPMD_PORT set to `epmdPort`.
    static func start(
        name: String,
        cookie: String,
        epmdPort: UInt16,
        epmd: EPMDStart = .never,
        extraEnvironment: [String: String] = [:]
    ) async throws -> ErlangNode {
        let erl = try ExternalTool.require("erl")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: erl)
        var arguments = ["-sname", name, "-noshell", "-setcookie", cookie]
        switch epmd {
        case .never: arguments += ["-start_epmd", "false"]
        case .command(let command): arguments += ["-epmd", command]
        case .erlDefault: break
        }
        process.arguments = arguments + ErlangEnvironment.distributionArguments
        var env = ProcessInfo.processInfo.environment
        env.removeValue(forKey: "ERL_EPMD_ADDRESS")
        env.removeValue(forKey: "ERL_EPMD_RELAXED_COMMAND_CHECK")
        for (key, value) in ErlangEnvironment.variables(epmdPort: epmdPort) { env[key] = value }
        for (key, value) in extraEnvironment { env[key] = value }
        process.environment = env
        let logURL = FileManager.default.temporaryDirectory.appendingPathComponent("epmd-gateway-it-\(name).log")
        try process.logOutput(to: logURL)
        let node = ErlangNode(name: name, process: process, logURL: logURL)
        try await node.process.spawnUnmasked()
        return node
    }

    private init(name: String, process: Process, logURL: URL) {
        self.name = name
        self.process = process
        self.logURL = logURL
    }

    var log: String { (try? String(contentsOf: self.logURL, encoding: .utf8)) ?? "" }

    /// Polls NAMES on `epmdPort` until this node is listed; returns its distribution port.
    @discardableResult
    func waitUntilRegistered(epmdPort: UInt16, timeout: Duration = .seconds(20)) async throws -> UInt16 {
        var found: UInt16?
        var lastError = ""
        _ = try await Poll.until(timeout: timeout) {
            do {
                let names = try await WireClient.names(port: epmdPort)
                found = NamesText.port(of: self.name, in: names.text)
                lastError = "NAMES: \(names.text.debugDescription)"
            } catch {
                lastError = "\(error)"
            }
            if found == nil && !self.process.isRunning {
                throw TestFailure(
                    "erl \(self.name) exited with \(self.process.terminationStatus) before registering: \(self.log)"
                )
            }
            return found != nil
        }
        guard let found else {
            throw TestFailure(
                "\(self.name) not registered on \(epmdPort) within \(timeout) (\(lastError)): \(self.log)"
            )
        }
        return found
    }

    /// SIGKILL and wait (at most 5 s) for the exit; the kernel then closes the node's epmd connection.
    /// Returns false if Foundation still sees the process running: it only notices the end once every
    /// process that inherited erl's descriptors has closed them (a daemon that forgot to close its
    /// descriptors would keep it "running").
    @discardableResult
    func kill() -> Bool {
        self.process.killAndWait()
    }

    deinit {
        self.kill()
        try? FileManager.default.removeItem(at: self.logURL)
    }

    /// Runs a one-shot `erl -sname NAME -noshell -eval EXPR` node (EXPR must end with `halt()`).
    static func eval(
        name: String,
        cookie: String,
        epmdPort: UInt16,
        expression: String,
        timeout: TimeInterval = 30
    ) async throws -> CommandResult {
        let erl = try ExternalTool.require("erl")
        let arguments =
            ["-sname", name, "-noshell", "-setcookie", cookie, "-start_epmd", "false"]
            + ErlangEnvironment.distributionArguments + ["-eval", expression]
        let environment = ErlangEnvironment.variables(epmdPort: epmdPort)
        return try await Blocking.run {
            try Command.run(erl, arguments, environment: environment, timeout: timeout)
        }
    }

    /// Runs a one-shot `elixir --sname NAME --cookie COOKIE -e SCRIPT` node.
    static func elixir(
        name: String,
        cookie: String,
        epmdPort: UInt16,
        script: String,
        timeout: TimeInterval = 40
    ) async throws -> CommandResult {
        let elixir = try ExternalTool.require("elixir")
        let erlFlags = (["-start_epmd", "false"] + ErlangEnvironment.distributionArguments).joined(separator: " ")
        let arguments = ["--sname", name, "--cookie", cookie, "--erl", erlFlags, "-e", script]
        let environment = ErlangEnvironment.variables(epmdPort: epmdPort)
        return try await Blocking.run {
            try Command.run(elixir, arguments, environment: environment, timeout: timeout)
        }
    }
}

/// Detached epmd daemons (started by erl through `-epmd CMD` or its default `epmd -daemon`) are not our
/// children, so a test cannot keep their pid. They are found by the ERL_EPMD_PORT they inherited
/// and their `-daemon` argument, and only those are signalled.
enum DaemonReaper {
    static func pids(epmdPort: UInt16) -> [pid_t] {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        let wanted = "ERL_EPMD_PORT=\(epmdPort)"
        var result: [pid_t] = []
        for entry in entries {
            guard let pid = pid_t(entry), pid != getpid() else { continue }
            guard let cmdline = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline"),
                let environ = FileManager.default.contents(atPath: "/proc/\(entry)/environ")
            else { continue }
            let arguments = cmdline.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            guard let program = arguments.first, arguments.contains("-daemon") else { continue }
            let base = (program as NSString).lastPathComponent
            guard base == "epmd" || base == "epmd-gateway" || base == TestBinary.url.lastPathComponent else {
                continue
            }
            let variables = environ.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            if variables.contains(wanted) { result.append(pid) }
        }
        return result
    }

    /// SIGKILLs every daemon found for `epmdPort`; returns how many there were.
    @discardableResult
    static func killAll(epmdPort: UInt16) -> Int {
        let found = self.pids(epmdPort: epmdPort)
        for pid in found { kill(pid, SIGKILL) }
        return found.count
    }
}
