import Foundation
import Synchronization
import Testing

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

/// External tools (erl, elixir, epmd). In CI (`CI` set) a missing tool is a failure, never a skip.
enum ExternalTool {
    static var inCI: Bool { ProcessInfo.processInfo.environment["CI"] != nil }

    static func path(_ name: String) -> String? {
        let dirs = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":")
        for dir in dirs {
            let candidate = "\(dir)/\(name)"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        return nil
    }

    /// Use as a trait: `.enabled(if: ExternalTool.usable("erl"))`. In CI this is always true, so the
    /// test runs and fails on the missing tool instead of being skipped.
    static func usable(_ name: String) -> Bool {
        self.inCI || self.path(name) != nil
    }

    static func require(_ name: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        try #require(
            self.path(name),
            "\(name) is not installed (CI installs it in .ci/run)",
            sourceLocation: sourceLocation
        )
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

// MARK: - Threads, child processes, polling

extension Process {
    /// SIGKILL and wait (at most `seconds`) until Foundation sees the exit; returns whether it did.
    @discardableResult
    func killAndWait(seconds: TimeInterval = 5) -> Bool {
        guard self.processIdentifier > 0, self.isRunning else { return true }
        Glibc.kill(self.processIdentifier, SIGKILL)
        let deadline = Date().addingTimeInterval(seconds)
        while self.isRunning && Date() < deadline { usleep(10_000) }
        return !self.isRunning
    }

    /// `run()`, called from a new thread whose signal mask is empty: the child starts with no signal
    /// blocked, as from a shell. Every child process of these tests is started this way.
    ///
    /// Foundation's `Process` hands the calling thread's signal mask to the child, and the threads that
    /// run Swift Testing's tests block nearly every signal: a process started from a test directly starts
    /// with SIGTERM, SIGINT, SIGHUP, SIGCHLD... blocked, so C epmd (which never unblocks them) ignores
    /// SIGTERM. Foundation notices a child's exit through a socket pair and waitpid on its own thread, not
    /// through SIGCHLD or the starting thread, so starting from a short-lived thread changes nothing for
    /// it. The caller waits only for the spawn itself.
    func runUnmasked() throws {
        final class Outcome: @unchecked Sendable {
            // @unchecked: written by the spawning thread before `done.signal()`, read after `done.wait()`.
            var error: (any Error)?
        }
        let outcome = Outcome()
        let done = DispatchSemaphore(value: 0)
        Thread {
            var none = sigset_t()
            sigemptyset(&none)
            pthread_sigmask(SIG_SETMASK, &none, nil)
            do { try self.run() } catch { outcome.error = error }
            done.signal()
        }
        .start()
        done.wait()
        if let error = outcome.error { throw error }
    }
}

/// Runs blocking work (a `Command.run` that waits for a process, say) on a thread of its own, so that the
/// two threads of the cooperative pool on this 2-core machine stay free for the other tests running in
/// parallel.
enum Blocking {
    static func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            Thread { continuation.resume(with: Result { try body() }) }.start()
        }
    }
}

/// The one polling loop of these tests.
enum Poll {
    /// Checks `condition` until it holds or `timeout` passes, waiting with `Task.sleep` in between: first
    /// 5 ms, doubling up to `interval`. Returns the time it took, or nil on timeout. `condition` runs on
    /// the calling task, so it must not block for long (loopback connections, /proc reads are fine).
    static func until(
        timeout: Duration,
        interval: Duration = .milliseconds(50),
        _ condition: () async throws -> Bool
    ) async throws -> Duration? {
        let clock = ContinuousClock()
        let start = clock.now
        var pause = min(.milliseconds(5), interval)
        while true {
            if try await condition() { return start.duration(to: clock.now) }
            if start.duration(to: clock.now) >= timeout { return nil }
            try await Task.sleep(for: pause)
            pause = min(pause * 2, interval)
        }
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
            let gateway = try self.launch(
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
    ) throws -> GatewayProcess {
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
        let stderrURL = FileManager.default.temporaryDirectory
            .appendingPathComponent("epmd-gateway-test-\(port)-\(UUID().uuidString).log")
        _ = FileManager.default.createFile(atPath: stderrURL.path, contents: nil)
        let handle = try FileHandle(forWritingTo: stderrURL)
        process.standardError = handle
        process.standardOutput = handle
        process.standardInput = FileHandle.nullDevice
        try process.runUnmasked()
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
            let deadline = ContinuousClock.now.advanced(by: grace)
            while self.process.isRunning && ContinuousClock.now < deadline { usleep(5000) }
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

// MARK: - Raw epmd client

/// A raw-socket epmd client for tests. Reads never block a thread: they poll with `MSG_DONTWAIT` and wait
/// with `Task.sleep`, so that the many tests that wait for timeouts can run in parallel on two cores.
enum WireClient {
    /// How a read ended.
    enum Ending: Equatable, CustomStringConvertible {
        /// The server closed (FIN).
        case eof
        /// The connection was reset (or another socket error, errno kept).
        case reset(Int32)
        /// Still open when the time ran out (or when the wanted byte count arrived).
        case open

        var closed: Bool { self != .open }

        var description: String {
            switch self {
            case .eof: "EOF"
            case .reset(let err): "reset (errno \(err))"
            case .open: "still open"
            }
        }
    }

    struct Outcome: CustomStringConvertible {
        var bytes: [UInt8]
        var ending: Ending
        /// Time spent in `collect`.
        var elapsed: Duration

        var description: String { "\(ending) after \(elapsed) with bytes [\(hex(bytes))]" }
    }

    // MARK: Bytes

    static func hex(_ bytes: some Collection<UInt8>) -> String {
        let shown = bytes.prefix(64).map { String(format: "%02x", $0) }.joined(separator: " ")
        return bytes.count > 64 ? shown + " … (\(bytes.count) bytes)" : shown
    }

    static func be16(_ value: Int) -> [UInt8] { [UInt8(value >> 8 & 0xff), UInt8(value & 0xff)] }

    static func be32(_ value: UInt32) -> [UInt8] {
        [UInt8(value >> 24 & 0xff), UInt8(value >> 16 & 0xff), UInt8(value >> 8 & 0xff), UInt8(value & 0xff)]
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    static func frame(_ body: [UInt8]) -> [UInt8] {
        self.be16(body.count) + body
    }

    /// An ALIVE2_REQ body.
    static func alive2(
        name: [UInt8],
        port: UInt16,
        type: UInt8 = 77,
        protocol proto: UInt8 = 0,
        high: UInt16 = 6,
        low: UInt16 = 5,
        extra: [UInt8] = []
    ) -> [UInt8] {
        [120] + self.be16(Int(port)) + [type, proto] + self.be16(Int(high)) + self.be16(Int(low))
            + self.be16(name.count) + name + self.be16(extra.count) + extra
    }

    /// The reply `77 00 …` that PORT_PLEASE2 gives for a registration.
    static func port2Found(
        name: [UInt8],
        nodePort: UInt16,
        type: UInt8 = 77,
        protocol proto: UInt8 = 0,
        high: UInt16 = 6,
        low: UInt16 = 5,
        extra: [UInt8] = []
    ) -> [UInt8] {
        [119, 0] + self.be16(Int(nodePort)) + [type, proto] + self.be16(Int(high)) + self.be16(Int(low))
            + self.be16(name.count) + name + self.be16(extra.count) + extra
    }

    // MARK: Sockets

    /// Calls `body` with the socket address of `host` (an IPv4 or IPv6 literal) and `port`.
    static func withSocketAddress<R>(
        host: String,
        port: UInt16,
        _ body: (UnsafePointer<sockaddr>, socklen_t) -> R
    ) -> R {
        if host.contains(":") {
            var addr = sockaddr_in6()
            addr.sin6_family = sa_family_t(AF_INET6)
            inet_pton(AF_INET6, host, &addr.sin6_addr)
            addr.sin6_port = port.bigEndian
            return withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    body($0, socklen_t(MemoryLayout<sockaddr_in6>.size))
                }
            }
        }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        inet_pton(AF_INET, host, &addr.sin_addr)
        addr.sin_port = port.bigEndian
        return withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                body($0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
    }

    static func canConnect(port: UInt16, host: String = "127.0.0.1") -> Bool {
        guard let fd = try? self.connect(port: port, host: host) else { return false }
        close(fd)
        return true
    }

    /// Opens a TCP connection to host:port (IPv4 or IPv6 literal). Blocking, like `connect(2)`; reads on
    /// it go through `collect`, which never blocks.
    static func connect(port: UInt16, host: String = "127.0.0.1") throws -> Int32 {
        let fd = socket(host.contains(":") ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket: errno \(errno)") }
        let rc = self.withSocketAddress(host: host, port: port) { Glibc.connect(fd, $0, $1) }
        guard rc == 0 else {
            let err = errno
            close(fd)
            throw TestFailure("connect to \(host):\(port): errno \(err)")
        }
        return fd
    }

    /// Sends everything; returns false if the peer had already closed (EPIPE/ECONNRESET).
    @discardableResult
    static func send(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return false }
            offset += n
        }
        return true
    }

    /// Closes with SO_LINGER {1, 0}: the peer gets an RST instead of a FIN.
    static func resetClose(_ fd: Int32) {
        var lingerOption = linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lingerOption, socklen_t(MemoryLayout<linger>.size))
        close(fd)
    }

    /// Reads whatever arrives until the peer closes, `limit` passes, or `count` bytes have arrived.
    static func collect(_ fd: Int32, for limit: Duration, upTo count: Int? = nil) async -> Outcome {
        let clock = ContinuousClock()
        let start = clock.now
        let deadline = start.advanced(by: limit)
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        var pause = Duration.microseconds(200)
        while true {
            let want = count.map { min($0 - bytes.count, buffer.count) } ?? buffer.count
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, want, Int32(MSG_DONTWAIT)) }
            if n > 0 {
                bytes += buffer[0..<n]
                pause = .microseconds(200)
                if let count, bytes.count >= count {
                    return Outcome(bytes: bytes, ending: .open, elapsed: start.duration(to: clock.now))
                }
                continue
            }
            if n == 0 { return Outcome(bytes: bytes, ending: .eof, elapsed: start.duration(to: clock.now)) }
            let err = errno
            if err == EINTR { continue }
            if err != EAGAIN && err != EWOULDBLOCK {
                return Outcome(bytes: bytes, ending: .reset(err), elapsed: start.duration(to: clock.now))
            }
            if clock.now >= deadline {
                return Outcome(bytes: bytes, ending: .open, elapsed: start.duration(to: clock.now))
            }
            try? await Task.sleep(for: pause)
            pause = min(pause * 2, .milliseconds(20))
        }
    }

    /// Reads exactly `count` bytes; throws if the connection ends or the time runs out first.
    static func read(_ fd: Int32, count: Int, within limit: Duration = .seconds(10)) async throws -> [UInt8] {
        let outcome = await self.collect(fd, for: limit, upTo: count)
        guard outcome.bytes.count == count else {
            throw TestFailure("wanted \(count) bytes, got \(outcome)")
        }
        return outcome.bytes
    }

    // MARK: Requests

    /// Connects, sends `raw` as is (no framing added) and collects until the server closes.
    static func exchange(
        port: UInt16,
        raw: [UInt8],
        host: String = "127.0.0.1",
        within limit: Duration = .seconds(10)
    ) async throws -> Outcome {
        let fd = try self.connect(port: port, host: host)
        defer { close(fd) }
        self.send(fd, raw)
        return await self.collect(fd, for: limit)
    }

    /// One framed request on a fresh connection; everything up to the server's close.
    static func request(
        port: UInt16,
        _ body: [UInt8],
        host: String = "127.0.0.1",
        within limit: Duration = .seconds(10)
    ) async throws -> Outcome {
        try await self.exchange(port: port, raw: self.frame(body), host: host, within: limit)
    }

    /// Sends an ALIVE2_REQ body on a new connection and reads the 6- or 4-byte reply.
    /// The connection stays open (closing it unregisters the name).
    static func register(
        port: UInt16,
        body: [UInt8],
        replySize: Int,
        host: String = "127.0.0.1"
    ) async throws -> (fd: Int32, reply: [UInt8]) {
        let fd = try self.connect(port: port, host: host)
        do {
            guard self.send(fd, self.frame(body)) else { throw TestFailure("send failed: errno \(errno)") }
            return (fd, try await self.read(fd, count: replySize))
        } catch {
            close(fd)
            throw error
        }
    }

    /// Registers `name` (UTF-8) with the usual fields; returns the open connection and the reply.
    static func register(
        port: UInt16,
        name: String,
        nodePort: UInt16,
        type: UInt8 = 77,
        high: UInt16 = 6,
        low: UInt16 = 5,
        extra: [UInt8] = [],
        host: String = "127.0.0.1"
    ) async throws -> (fd: Int32, reply: [UInt8]) {
        let body = self.alive2(
            name: Array(name.utf8),
            port: nodePort,
            type: type,
            high: high,
            low: low,
            extra: extra
        )
        return try await self.register(port: port, body: body, replySize: high >= 6 ? 6 : 4, host: host)
    }

    /// Registers many names with pipelining (connect a batch, send all, then read all replies).
    /// Returns the open connections and replies in the order of `names`.
    static func registerMany(
        port: UInt16,
        names: [String],
        nodePort: (Int) -> UInt16,
        batch: Int = 250
    ) async throws -> [(fd: Int32, reply: [UInt8])] {
        var result: [(fd: Int32, reply: [UInt8])] = []
        result.reserveCapacity(names.count)
        var pending: [Int32] = []
        do {
            var index = 0
            while index < names.count {
                let end = min(index + batch, names.count)
                for i in index..<end {
                    let fd = try self.connect(port: port)
                    pending.append(fd)
                    let body = self.alive2(name: Array(names[i].utf8), port: nodePort(i))
                    guard self.send(fd, self.frame(body)) else {
                        throw TestFailure("send of ALIVE2 for \(names[i]) failed: errno \(errno)")
                    }
                }
                for fd in pending {
                    let reply = try await self.read(fd, count: 6, within: .seconds(30))
                    result.append((fd, reply))
                }
                pending.removeAll()
                index = end
            }
            return result
        } catch {
            for fd in pending { close(fd) }
            for entry in result { close(entry.fd) }
            throw error
        }
    }

    // MARK: NAMES

    /// The whole NAMES reply; the server must close after it.
    static func namesReply(port: UInt16, host: String = "127.0.0.1") async throws -> [UInt8] {
        let outcome = try await self.request(port: port, [110], host: host, within: .seconds(30))
        guard outcome.ending.closed, outcome.bytes.count >= 4 else {
            throw TestFailure("NAMES: \(outcome)")
        }
        return outcome.bytes
    }

    /// The NAMES reply split into its 4-byte port prefix and the text after it.
    static func names(port: UInt16, host: String = "127.0.0.1") async throws -> (prefix: UInt32, text: String) {
        let reply = try await self.namesReply(port: port, host: host)
        let prefix = reply[0..<4].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        return (prefix, String(decoding: reply[4...], as: UTF8.self))
    }

    /// The NAMES text lines (without the 4-byte port prefix and without the trailing newlines).
    static func nameLines(port: UInt16, host: String = "127.0.0.1") async throws -> [String] {
        try await self.names(port: port, host: host).text.split(separator: "\n").map(String.init)
    }

    /// Polls NAMES until `predicate` holds or `limit` passes; returns the last lines seen.
    static func waitForNames(
        port: UInt16,
        within limit: Duration = .seconds(10),
        _ predicate: ([String]) -> Bool
    ) async throws -> [String] {
        var lines: [String] = []
        _ = try await Poll.until(timeout: limit, interval: .milliseconds(200)) {
            lines = try await self.nameLines(port: port)
            return predicate(lines)
        }
        return lines
    }
}

/// Parsing of NAMES text (`name X at port N\n` lines).
enum NamesText {
    static func entries(_ text: String) -> [(name: String, port: UInt16)] {
        text.split(separator: "\n").compactMap { line in
            guard line.hasPrefix("name "), let range = line.range(of: " at port ", options: .backwards) else {
                return nil
            }
            let name = String(line[line.index(line.startIndex, offsetBy: 5)..<range.lowerBound])
            guard let port = UInt16(line[range.upperBound...]) else { return nil }
            return (name, port)
        }
    }

    static func port(of name: String, in text: String) -> UInt16? {
        self.entries(text).first { $0.name == name }?.port
    }
}

// MARK: - One-shot commands

/// What `Command.run` returns.
struct CommandResult {
    var status: Int32
    var stdout: String
    var stderr: String
}

enum Command {
    /// Runs a command to completion with a time bound (blocking the calling thread: from async code, call
    /// it inside `Blocking.run`); returns status, stdout and stderr.
    static func run(
        _ path: String,
        _ arguments: [String],
        environment: [String: String] = [:],
        timeout: TimeInterval = 30
    ) throws -> CommandResult {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        env.merge(environment) { $1 }
        process.environment = env
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cmd-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("out")
        let err = dir.appendingPathComponent("err")
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        _ = FileManager.default.createFile(atPath: err.path, contents: nil)
        process.standardOutput = try FileHandle(forWritingTo: out)
        process.standardError = try FileHandle(forWritingTo: err)
        process.standardInput = FileHandle.nullDevice
        try process.runUnmasked()
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            throw TestFailure("\(path) \(arguments) did not finish within \(timeout) s")
        }
        return CommandResult(
            status: process.terminationStatus,
            stdout: (try? String(contentsOf: out, encoding: .utf8)) ?? "",
            stderr: (try? String(contentsOf: err, encoding: .utf8)) ?? ""
        )
    }

    /// Runs `binary -port P <arguments>` (an epmd client mode, usually) on a thread of its own (see
    /// `Blocking`), with a 10 s bound.
    static func epmd(_ binary: String, port: UInt16, _ arguments: [String]) async throws -> CommandResult {
        try await Blocking.run { try self.run(binary, ["-port", String(port)] + arguments, timeout: 10) }
    }
}
