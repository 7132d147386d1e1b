import Foundation
import GatewayTestSupport
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Where the binary under test lives: `EPMD_GATEWAY_BINARY` if set (point it at `/usr/bin/epmd` to check
/// that a test describes C epmd's behaviour), otherwise `epmd-gateway` beside the test bundle.
enum TestBinary {
    static var url: URL {
        if let path = ProcessInfo.processInfo.environment["EPMD_GATEWAY_BINARY"], !path.isEmpty {
            return URL(fileURLWithPath: path)
        }
        let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        return exe.deletingLastPathComponent().appendingPathComponent("epmd-gateway")
    }

    /// True when the binary under test is OTP's C epmd rather than the gateway.
    static var isCEPMD: Bool {
        self.url.lastPathComponent == "epmd"
            && ProcessInfo.processInfo.environment["EPMD_GATEWAY_BINARY"] != nil
    }
}

// MARK: - Ports

/// Ports for servers under test: random in 10000-19999, free on every IPv4 and IPv6 address (so on
/// 127.0.0.1 and ::1), and never handed out twice in one test run. Never 4369.
///
/// The range lies below the kernel's ephemeral range (`ip_local_port_range`, 32768-60999 here): the kernel
/// never gives these ports to outgoing connections (the suites open thousands), so between this check and
/// the server's bind only an explicit bind can take one. A server that finds its port taken anyway exits 0
/// like C epmd, and `GatewayProcess.start` then tries another port. Real nodes listen in 20000-32767
/// (`ErlangEnvironment.distributionArguments`), apart from these too.
enum FreePort {
    static let range: ClosedRange<UInt16> = 10000...19999

    private static let handedOut = Mutex<Set<UInt16>>([])

    static func next() throws -> UInt16 {
        let ephemeral = self.ephemeralRange
        for _ in 0..<1000 {
            let port = UInt16.random(in: self.range)
            // Skipped if a lowered ip_local_port_range reaches into our range.
            guard !ephemeral.contains(port), self.handedOut.withLock({ $0.insert(port).inserted }) else { continue }
            if self.isFree(port, family: AF_INET) && self.isFree(port, family: AF_INET6) { return port }
        }
        throw TestFailure("no free port in \(self.range) outside the ephemeral range \(ephemeral)")
    }

    /// The kernel's ephemeral port range, from /proc/sys/net/ipv4/ip_local_port_range.
    static let ephemeralRange: ClosedRange<UInt16> = {
        let text = (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8)) ?? ""
        let bounds = text.split(whereSeparator: \.isWhitespace).compactMap { UInt16($0) }
        guard bounds.count == 2, bounds[0] <= bounds[1] else { return 32768...60999 }
        return bounds[0]...bounds[1]
    }()

    /// True if `port` can be bound on the wildcard address of `family` (no SO_REUSEADDR), so that no socket
    /// uses it on any address of that family. Without IPv6 on the machine, every port is free there.
    private static func isFree(_ port: UInt16, family: Int32) -> Bool {
        let isV6 = family == AF_INET6
        let fd = socket(family, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return isV6 }
        defer { close(fd) }
        if isV6 {
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &one, socklen_t(MemoryLayout<Int32>.size))
        }
        let rc = WireClient.withSocketAddress(host: isV6 ? "::" : "0.0.0.0", port: port) { bind(fd, $0, $1) }
        return rc == 0 || (isV6 && errno == EADDRNOTAVAIL)
    }
}

// MARK: - The server under test

/// A running server binary (the gateway, or C epmd for reference runs) on a `FreePort`.
final class GatewayProcess: @unchecked Sendable {
    // @unchecked: the Process is only touched from the test that owns this object.
    let port: UInt16
    let process: Process
    let stderrURL: URL

    /// Starts `binary -port P <arguments>` on a `FreePort` P and waits until 127.0.0.1:P accepts
    /// connections. A server that exits 0 before that found its port taken (the "already running" rule of
    /// C epmd): it is started again on a new port, three tries in all.
    /// - Parameters:
    ///   - arguments: extra epmd flags after `-port P`.
    ///   - environment: variables added to the inherited environment, from which ERL_EPMD_PORT,
    ///     ERL_EPMD_ADDRESS and ERL_EPMD_RELAXED_COMMAND_CHECK are removed.
    ///   - shellPrefix: if set, the server is started as
    ///     `/bin/sh -c '<shellPrefix> exec BINARY -port P <arguments>'`, for example with
    ///     `shellPrefix: "ulimit -n 256;"`. The shell execs, so the process (and its pid) is the server itself.
    static func start(
        arguments: [String] = [],
        environment: [String: String] = [:],
        shellPrefix: String? = nil
    ) async throws -> GatewayProcess {
        var exitedAtOnce: [String] = []
        for _ in 0..<3 {
            let gateway = try await self.launch(
                port: FreePort.next(),
                arguments: arguments,
                environment: environment,
                shellPrefix: shellPrefix
            )
            let process = gateway.process
            let listening = try await Poll.until(timeout: .seconds(10), interval: .milliseconds(10)) {
                !process.isRunning || WireClient.canConnect(port: gateway.port)
            }
            if process.isRunning {
                if listening != nil { return gateway }
                await gateway.stop()
                throw TestFailure("server did not listen on \(gateway.port) within 10 s: \(gateway.log)")
            }
            guard process.terminationReason == .exit && process.terminationStatus == 0 else {
                throw TestFailure("server exited with \(process.terminationStatus): \(gateway.log)")
            }
            exitedAtOnce.append("port \(gateway.port): \(gateway.log)")
        }
        throw TestFailure("server exited with 0 at once three times (ports taken?): \(exitedAtOnce)")
    }

    private static func launch(
        port: UInt16,
        arguments: [String],
        environment: [String: String],
        shellPrefix: String?
    ) async throws -> GatewayProcess {
        let command = [TestBinary.url.path, "-port", String(port)] + arguments
        let process = Process()
        if let shellPrefix {
            let quoted = command.map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }
            process.executableURL = URL(fileURLWithPath: "/bin/sh")
            process.arguments = ["-c", "\(shellPrefix) exec \(quoted.joined(separator: " "))"]
        } else {
            process.executableURL = TestBinary.url
            process.arguments = Array(command.dropFirst())
        }
        var env = ProcessInfo.processInfo.environment
        for key in ["ERL_EPMD_PORT", "ERL_EPMD_ADDRESS", "ERL_EPMD_RELAXED_COMMAND_CHECK"] {
            env.removeValue(forKey: key)
        }
        env.merge(environment) { $1 }
        process.environment = env
        let stderrURL = Process.temporaryLog("epmd-gateway-test-\(port)")
        try process.logOutput(to: stderrURL)
        try await process.spawnUnmasked()
        return GatewayProcess(port: port, process: process, stderrURL: stderrURL)
    }

    /// Starts a server (see `start`), runs `body` with it, and stops it afterwards, also when `body` throws.
    static func with<T>(
        arguments: [String] = [],
        environment: [String: String] = [:],
        shellPrefix: String? = nil,
        _ body: (GatewayProcess) async throws -> T
    ) async throws -> T {
        let gateway = try await self.start(arguments: arguments, environment: environment, shellPrefix: shellPrefix)
        do {
            let value = try await body(gateway)
            await gateway.stop()
            return value
        } catch {
            await gateway.stop()
            throw error
        }
    }

    private init(port: UInt16, process: Process, stderrURL: URL) {
        self.port = port
        self.process = process
        self.stderrURL = stderrURL
    }

    var log: String { (try? String(contentsOf: self.stderrURL, encoding: .utf8)) ?? "" }

    /// SIGTERM; SIGKILL if the server still runs 1 s later; then up to 2 s for the exit.
    private static let stopSequence: [(signal: Int32, grace: Duration)] = [
        (SIGTERM, .seconds(1)), (SIGKILL, .seconds(2)),
    ]

    /// Stops the server (see `stopSequence`), blocking the calling thread for the few milliseconds that
    /// takes: for `defer` and `deinit`. Async code uses `await stop()`.
    func stop() {
        for (signal, grace) in Self.stopSequence {
            guard self.process.isRunning else { return }
            kill(self.process.processIdentifier, signal)
            let process = self.process
            _ = Poll.blockingUntil(timeout: grace, interval: .milliseconds(5)) { !process.isRunning }
        }
    }

    /// Stops the server like `stop()`, waiting with `Task.sleep` instead of blocking the thread.
    func stop() async {
        for (signal, grace) in Self.stopSequence {
            guard self.process.isRunning else { return }
            kill(self.process.processIdentifier, signal)
            if await self.waitForExit(within: grace) != nil { return }
        }
    }

    /// Waits (with `Task.sleep`) for the server to exit; returns its exit status (the signal number if a
    /// signal ended it), or nil if it still runs after `limit`.
    func waitForExit(within limit: Duration) async -> Int32? {
        let process = self.process
        let exited = try? await Poll.until(timeout: limit, interval: .milliseconds(20)) { !process.isRunning }
        return exited == nil ? nil : process.terminationStatus
    }

    deinit {
        self.stop()
        try? FileManager.default.removeItem(at: self.stderrURL)
    }
}
