import Foundation
import GatewayTestSupport
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `-systemd` under systemd's own `systemd-socket-activate` (it binds the sockets, names them with
/// `--fdname`, and execs the gateway in its own process at the first connection), with a datagram
/// socket standing in for systemd's `NOTIFY_SOCKET`: what the gateway tells the service manager, and when.
@Suite(.timeLimit(.minutes(2))) struct SocketActivationTests {
    @Test(
        "named sockets: READY=1 once both fronts answer, STATUS follows the node count, WATCHDOG=1 every half interval (none while SIGSTOPped), SIGTERM gives STOPPING=1, 503 during the grace, exit 0",
        .enabled(if: !TestBinary.isCEPMD && ExternalTool.usable("systemd-socket-activate"))
    )
    func namedSockets() async throws {
        let epmdPort = try FreePort.next()
        let httpPort = try FreePort.next()
        let elsewhere = try FreePort.next()
        let notify = try NotifyListener()
        defer { notify.close() }
        let activation = try await Activation.start(
            listen: ["127.0.0.1:\(epmdPort)", "127.0.0.1:\(httpPort)"],
            names: "epmd:http",
            environment: [
                "NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "1000000", "ERL_EPMD_PORT": "4369",
            ],
            arguments: ["-systemd", "-d", "--http-port", String(elsewhere), "--shutdown-grace", "3"]
        )
        defer { activation.stop() }
        // Nothing is said before the gateway runs (systemd-socket-activate waits for a connection).
        try await Task.sleep(for: .milliseconds(300))
        #expect(notify.messages.isEmpty, "\(notify.messages)")

        // The first connection makes systemd-socket-activate exec the gateway.
        let early = try WireClient.connect(port: epmdPort)
        close(early)
        let ready = try await notify.first(within: .seconds(20)) { $0.hasPrefix("READY=1") }
        try #require(ready != nil, "no READY=1: \(notify.messages) \(activation.log)")
        // READY=1 came once both fronts serve: each answers at once, without a retry.
        let readyz = try await Curl.run(["http://127.0.0.1:\(httpPort)/readyz"], maxTime: 2)
        #expect(readyz.status == 200, "\(readyz)")
        #expect(try await WireClient.names(port: epmdPort).prefix == 4369)
        let pid = try #require(activation.serverPID, "no systemd-socket-activate under the shell")
        #expect(
            ready?.text
                == "READY=1\nSTATUS=Serving 0 nodes (epmd port \(epmdPort), HTTP port \(httpPort))\nMAINPID=\(pid)"
        )

        // The socket named http serves the HTTP front; --http-port is ignored (nothing listens there).
        let nodes = try await Curl.run(["http://127.0.0.1:\(httpPort)/v1/nodes"])
        #expect(nodes.status == 200 && nodes.body.contains("\"nodes\":[]"), "\(nodes)")
        #expect(!WireClient.canConnect(port: elsewhere))
        #expect(activation.log.contains("--http-address and --http-port are ignored"), "\(activation.log)")

        // A registration: STATUS says one node (within the one-second coalescing).
        let (registration, reply) = try await WireClient.register(port: epmdPort, name: "socketactivated", nodePort: 9)
        defer { close(registration) }
        #expect(reply.prefix(2) == [0x76, 0])
        let oneNode = "STATUS=Serving 1 node (epmd port \(epmdPort), HTTP port \(httpPort))"
        #expect(try await notify.first(within: .seconds(5)) { $0 == oneNode } != nil, "\(notify.messages)")
        #expect(try await WireClient.names(port: epmdPort).text == "name socketactivated at port 9\n")
        let listed = try await Curl.run(["http://127.0.0.1:\(httpPort)/v1/nodes"])
        #expect(listed.body.contains("socketactivated"), "\(listed)")

        // WATCHDOG=1 every 0.5 s (half of WATCHDOG_USEC=1 s), counted over the time the window really took.
        let windowStart = ContinuousClock.now
        try await Task.sleep(for: .seconds(3))
        let window = WireClient.seconds(ContinuousClock.now - windowStart)
        let pings = notify.messages.filter { $0.text == "WATCHDOG=1" && $0.at >= windowStart }
        let expected = window / 0.5
        #expect(
            Double(pings.count) >= expected * 0.6 - 1 && Double(pings.count) <= expected * 1.4 + 1,
            "\(pings.count) pings in \(window) s"
        )
        let gaps = zip(pings.dropFirst(), pings).map { WireClient.seconds($0.at - $1.at) }.sorted()
        #expect(!gaps.isEmpty && (0.3...0.8).contains(gaps[gaps.count / 2]), "gaps \(gaps)")

        // SIGSTOP: no ping for longer than the interval; SIGCONT: they resume.
        kill(pid, SIGSTOP)
        let stopped = try await Poll.until(timeout: .seconds(5)) { Self.state(of: pid) == "T" }
        try #require(stopped != nil)
        try await Task.sleep(for: .milliseconds(300))  // a ping sent just before the stop is read by now
        let stopMark = ContinuousClock.now
        try await Task.sleep(for: .milliseconds(1500))
        let whileStopped = notify.messages.filter { $0.at >= stopMark }
        kill(pid, SIGCONT)
        #expect(whileStopped.isEmpty, "messages while stopped: \(whileStopped)")
        let resumeMark = ContinuousClock.now
        let resumed = try await notify.first(within: .seconds(3), since: resumeMark) { $0 == "WATCHDOG=1" }
        #expect(resumed != nil, "no ping after SIGCONT: \(notify.messages)")

        // SIGTERM: STOPPING=1, readiness 503 while the epmd port still serves, then exit 0.
        kill(pid, SIGTERM)
        let stopping = try await notify.first(within: .seconds(5)) { $0.hasPrefix("STOPPING=1") }
        #expect(stopping?.text == "STOPPING=1\nSTATUS=Draining for 3 s, 1 node registered", "\(notify.messages)")
        let draining = try await Curl.run(["http://127.0.0.1:\(httpPort)/readyz"], maxTime: 2)
        #expect(draining.status == 503, "\(draining)")
        #expect(try await WireClient.names(port: epmdPort).text == "name socketactivated at port 9\n")
        let exited = try await Poll.until(timeout: .seconds(15)) { activation.exitStatus != nil }
        try #require(exited != nil, "still running after the grace: \(activation.log)")
        #expect(activation.exitStatus == 0)
        #expect(try await notify.first(within: .seconds(2)) { $0 == "STATUS=Exited.\nERRNO=0" } != nil)
    }

    @Test(
        "Debian's epmd.socket: one socket named epmd.socket serves epmd, the HTTP front binds its own port; no watchdog unasked",
        .enabled(if: !TestBinary.isCEPMD && ExternalTool.usable("systemd-socket-activate"))
    )
    func debianSocket() async throws {
        let epmdPort = try FreePort.next()
        let httpPort = try FreePort.next()
        let notify = try NotifyListener()
        defer { notify.close() }
        let activation = try await Activation.start(
            listen: ["127.0.0.1:\(epmdPort)"],
            names: "epmd.socket",
            environment: ["NOTIFY_SOCKET": notify.path],
            arguments: ["-systemd", "--http-port", String(httpPort)]
        )
        defer { activation.stop() }
        let (registration, reply) = try await WireClient.register(port: epmdPort, name: "debian", nodePort: 7)
        defer { close(registration) }
        #expect(reply.prefix(2) == [0x76, 0])
        let ready = try await notify.first(within: .seconds(20)) { $0.hasPrefix("READY=1") }
        try #require(ready != nil, "no READY=1: \(notify.messages) \(activation.log)")
        #expect(ready?.text.contains("(epmd port \(epmdPort), HTTP port \(httpPort))") == true, "\(ready?.text ?? "")")
        let nodes = try await Curl.run(["http://127.0.0.1:\(httpPort)/v1/nodes"])
        #expect(nodes.status == 200 && nodes.body.contains("debian"), "\(nodes)")
        try await Task.sleep(for: .milliseconds(1500))
        #expect(!notify.messages.contains { $0.text == "WATCHDOG=1" }, "\(notify.messages)")
    }

    @Test(
        "a passed socket that is not a listening TCP socket is refused: exit 1, naming the descriptor and its name",
        .enabled(if: !TestBinary.isCEPMD && ExternalTool.usable("systemd-socket-activate"))
    )
    func datagramRefused() async throws {
        let port = try FreePort.next()
        let activation = try await Activation.start(
            listen: ["127.0.0.1:\(port)"],
            names: "epmd",
            datagram: true,
            environment: [:],
            arguments: ["-systemd"]
        )
        defer { activation.stop() }
        // A datagram makes systemd-socket-activate exec the gateway.
        let sender = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        try #require(sender >= 0)
        defer { close(sender) }
        let exited = try await Poll.until(timeout: .seconds(20)) {
            _ = WireClient.withSocketAddress(host: "127.0.0.1", port: port) { sendto(sender, "x", 1, 0, $0, $1) }
            return activation.exitStatus != nil
        }
        try #require(exited != nil, "\(activation.log)")
        #expect(activation.exitStatus == 1)
        #expect(
            activation.log.contains("systemd socket 3 (named \"epmd\") is not a listening TCP socket"),
            "\(activation.log)"
        )
    }

    /// The state letter of `/proc/PID/stat` (`T` when stopped).
    static func state(of pid: Int32) -> String? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return nil }
        return stat[stat.index(after: close)...].split(separator: " ").first.map(String.init)
    }
}

/// `systemd-socket-activate … BINARY ARGS`: it binds and listens, then execs the gateway in its own
/// process (same pid) at the first connection. It runs under a shell that waits for it and exits with
/// its status: systemd-socket-activate closes every descriptor it does not pass on, among them the one
/// by which Foundation's `Process` learns that a child ended, and Foundation then blocks in `waitpid`
/// for it (and notices no other child's end) until it really ends.
final class Activation: @unchecked Sendable {
    // @unchecked: the Process is only touched from the test that owns this object.
    let process: Process
    let logURL: URL

    private init(process: Process, logURL: URL) {
        self.process = process
        self.logURL = logURL
    }

    var log: String { (try? String(contentsOf: self.logURL, encoding: .utf8)) ?? "" }

    /// Starts it and waits until it listens (it prints "Listening on ... as N." for each socket).
    static func start(
        listen: [String],
        names: String,
        datagram: Bool = false,
        environment: [String: String],
        arguments: [String]
    ) async throws -> Activation {
        let tool = try ExternalTool.require("systemd-socket-activate")
        var command = listen.flatMap { ["-l", $0] } + ["--fdname=\(names)"]
        if datagram { command.append("--datagram") }
        command += environment.sorted { $0.key < $1.key }.flatMap { ["-E", "\($0.key)=\($0.value)"] }
        command += [TestBinary.url.path] + arguments
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", "\"$0\" \"$@\"; status=$?; exit $status", tool] + command
        var inherited = ProcessInfo.processInfo.environment
        for key in ["ERL_EPMD_PORT", "ERL_EPMD_ADDRESS", "NOTIFY_SOCKET", "WATCHDOG_USEC", "LISTEN_FDS"] {
            inherited.removeValue(forKey: key)
        }
        process.environment = inherited
        let logURL = Process.temporaryLog("epmd-gateway-activation")
        try process.logOutput(to: logURL)
        try await process.spawnUnmasked()
        let activation = Activation(process: process, logURL: logURL)
        let listening = try await Poll.until(timeout: .seconds(10)) {
            activation.log.components(separatedBy: "Listening on ").count > listen.count
                || process.exitStatus != nil
        }
        guard listening != nil, process.exitStatus == nil else {
            activation.stop()
            throw TestFailure("systemd-socket-activate did not listen: \(activation.log)")
        }
        return activation
    }

    /// The pid of systemd-socket-activate (then of the gateway it execs): the shell's child.
    var serverPID: Int32? {
        let shell = self.process.processIdentifier
        guard shell > 0,
            let children = try? String(contentsOfFile: "/proc/\(shell)/task/\(shell)/children", encoding: .utf8)
        else { return nil }
        return children.split(separator: " ").first.flatMap { Int32($0) }
    }

    /// The exit status of systemd-socket-activate or the gateway (the shell's), nil while it runs.
    var exitStatus: Int32? { self.process.exitStatus }

    /// SIGCONT and SIGKILL to the server, SIGKILL to the shell, and wait.
    func stop() {
        guard self.process.processIdentifier > 0, self.process.isRunning else { return }
        if let server = self.serverPID {
            kill(server, SIGCONT)
            kill(server, SIGKILL)
        }
        self.process.killAndWait()
    }

    deinit {
        self.stop()
        try? FileManager.default.removeItem(at: self.logURL)
    }
}

/// A datagram socket standing in for systemd's `NOTIFY_SOCKET`: a thread of its own reads every message
/// with the time it arrived.
final class NotifyListener: Sendable {
    struct Message: Sendable, CustomStringConvertible {
        var text: String
        var at: ContinuousClock.Instant
        var description: String { "\(self.text.replacingOccurrences(of: "\n", with: "|"))" }
    }

    let path: String
    private let directory: URL
    private let fd: Int32
    private let received = Mutex<[Message]>([])
    private let closed = Atomic<Bool>(false)
    private let done = DispatchSemaphore(value: 0)

    init() throws {
        self.directory = FileManager.default.temporaryDirectory.appendingPathComponent("sd-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: self.directory, withIntermediateDirectories: true)
        self.path = self.directory.appendingPathComponent("notify").path
        self.fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard self.fd >= 0 else { throw TestFailure("socket: errno \(errno)") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(self.path.utf8)) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(self.fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard bound == 0 else {
            Glibc.close(self.fd)
            throw TestFailure("bind \(self.path): errno \(errno)")
        }
        let (fd, done) = (self.fd, self.done)
        Thread { [self] in
            var buffer = [UInt8](repeating: 0, count: 4096)
            while !self.closed.load(ordering: .acquiring) {
                var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                guard poll(&entry, 1, 100) > 0 else { continue }
                let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
                guard count > 0 else { continue }
                let message = Message(text: String(decoding: buffer.prefix(count), as: UTF8.self), at: .now)
                self.received.withLock { $0.append(message) }
            }
            done.signal()
        }
        .start()
    }

    /// Every message so far.
    var messages: [Message] { self.received.withLock { $0 } }

    /// The first message that `matches` (of those that arrived at `since` or later), waiting for it at
    /// most `limit`.
    func first(
        within limit: Duration,
        since: ContinuousClock.Instant? = nil,
        _ matches: (String) -> Bool
    ) async throws -> Message? {
        var found: Message?
        _ = try await Poll.until(timeout: limit, interval: .milliseconds(20)) {
            found = self.messages.first { message in
                since.map { message.at >= $0 } != false && matches(message.text)
            }
            return found != nil
        }
        return found
    }

    func close() {
        guard !self.closed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        self.done.wait()
        Glibc.close(self.fd)
        try? FileManager.default.removeItem(at: self.directory)
    }
}
