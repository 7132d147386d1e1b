import Foundation
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
        try #require(self.path(name), "\(name) is not installed (CI installs it in .ci/run)", sourceLocation: sourceLocation)
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Ports for tests: ask the kernel for a free one on 127.0.0.1 (and check ::1 too, since the gateway
/// binds both). Never 4369.
enum FreePort {
    static func next() throws -> UInt16 {
        for _ in 0..<50 {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { throw TestFailure("socket: errno \(errno)") }
            defer { close(fd) }
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            addr.sin_port = 0
            let rc = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            guard rc == 0 else { continue }
            var len = socklen_t(MemoryLayout<sockaddr_in>.size)
            _ = withUnsafeMutablePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
            }
            let port = UInt16(bigEndian: addr.sin_port)
            if port != 4369, self.freeOnIPv6Loopback(port) { return port }
        }
        throw TestFailure("no free port found")
    }

    private static func freeOnIPv6Loopback(_ port: UInt16) -> Bool {
        let fd = socket(AF_INET6, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return true }
        defer { close(fd) }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in6()
        addr.sin6_family = sa_family_t(AF_INET6)
        addr.sin6_addr = in6addr_loopback
        addr.sin6_port = port.bigEndian
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size))
            }
        }
        return rc == 0 || errno == EADDRNOTAVAIL
    }
}

/// A running server binary (the gateway, or C epmd for reference runs) on a free loopback port.
final class GatewayProcess: @unchecked Sendable {
    // @unchecked: the Process is only touched from the test that owns this object.
    let port: UInt16
    let process: Process
    let stderrURL: URL

    /// Starts `binary -port P <arguments>` and waits until 127.0.0.1:P accepts connections.
    /// - Parameters:
    ///   - arguments: extra epmd flags after `-port P`.
    ///   - environment: variables added to the inherited environment.
    static func start(
        arguments: [String] = [],
        environment: [String: String] = [:],
        port: UInt16? = nil
    ) async throws -> GatewayProcess {
        let port = try port ?? FreePort.next()
        let process = Process()
        process.executableURL = TestBinary.url
        process.arguments = ["-port", String(port)] + arguments
        var env = ProcessInfo.processInfo.environment
        env.removeValue(forKey: "ERL_EPMD_PORT")
        env.removeValue(forKey: "ERL_EPMD_ADDRESS")
        env.removeValue(forKey: "ERL_EPMD_RELAXED_COMMAND_CHECK")
        for (key, value) in environment { env[key] = value }
        process.environment = env
        let stderrURL = FileManager.default.temporaryDirectory
            .appendingPathComponent("epmd-gateway-test-\(port)-\(UUID().uuidString).log")
        FileManager.default.createFile(atPath: stderrURL.path, contents: nil)
        let handle = try FileHandle(forWritingTo: stderrURL)
        process.standardError = handle
        process.standardOutput = handle
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let gateway = GatewayProcess(port: port, process: process, stderrURL: stderrURL)
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            if WireClient.canConnect(port: port) { return gateway }
            if !process.isRunning {
                throw TestFailure("server exited with \(process.terminationStatus): \(gateway.log)")
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        gateway.stop()
        throw TestFailure("server did not listen on \(port) within 10 s: \(gateway.log)")
    }

    private init(port: UInt16, process: Process, stderrURL: URL) {
        self.port = port
        self.process = process
        self.stderrURL = stderrURL
    }

    var log: String { (try? String(contentsOf: self.stderrURL, encoding: .utf8)) ?? "" }

    /// SIGTERM, then SIGKILL after 5 s; waits for the exit.
    func stop() {
        guard self.process.isRunning else { return }
        kill(self.process.processIdentifier, SIGTERM)
        let deadline = Date().addingTimeInterval(5)
        while self.process.isRunning && Date() < deadline { usleep(10_000) }
        if self.process.isRunning { kill(self.process.processIdentifier, SIGKILL) }
        self.process.waitUntilExit()
    }

    deinit { self.stop() }
}

/// A blocking raw-socket epmd client for tests: every call is bounded by a receive timeout.
enum WireClient {
    static func canConnect(port: UInt16, host: String = "127.0.0.1") -> Bool {
        guard let fd = try? self.connect(port: port, host: host) else { return false }
        close(fd)
        return true
    }

    /// Opens a TCP connection to host:port (IPv4 or IPv6 literal) with a 5 s receive timeout.
    static func connect(port: UInt16, host: String = "127.0.0.1", timeout: TimeInterval = 5) throws -> Int32 {
        let isV6 = host.contains(":")
        let fd = socket(isV6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket: errno \(errno)") }
        var tv = timeval(tv_sec: Int(timeout), tv_usec: .init((timeout - Double(Int(timeout))) * 1_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let rc: Int32
        if isV6 {
            var addr = sockaddr_in6()
            addr.sin6_family = sa_family_t(AF_INET6)
            inet_pton(AF_INET6, host, &addr.sin6_addr)
            addr.sin6_port = port.bigEndian
            rc = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size))
                }
            }
        } else {
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_addr.s_addr = inet_addr(host)
            addr.sin_port = port.bigEndian
            rc = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        }
        guard rc == 0 else {
            let err = errno
            close(fd)
            throw TestFailure("connect to \(host):\(port): errno \(err)")
        }
        return fd
    }

    static func send(_ fd: Int32, _ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw TestFailure("send: errno \(errno)") }
            offset += n
        }
    }

    /// Reads until EOF. Throws on timeout (the server did not close).
    static func readToEOF(_ fd: Int32) throws -> [UInt8] {
        var result: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n == 0 { return result }
            if n < 0 {
                if errno == EINTR { continue }
                if errno == ECONNRESET { return result }
                throw TestFailure("recv: errno \(errno) after \(result.count) bytes (no EOF)")
            }
            result += buffer[0..<n]
        }
    }

    /// Reads exactly `count` bytes (or throws on EOF/timeout).
    static func read(_ fd: Int32, count: Int) throws -> [UInt8] {
        var result: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: count)
        while result.count < count {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, count - result.count, 0) }
            if n == 0 { throw TestFailure("EOF after \(result.count) of \(count) bytes") }
            if n < 0 {
                if errno == EINTR { continue }
                throw TestFailure("recv: errno \(errno) after \(result.count) of \(count) bytes")
            }
            result += buffer[0..<n]
        }
        return result
    }

    /// One request on a fresh connection; returns everything up to the server's close.
    static func request(port: UInt16, _ body: [UInt8], host: String = "127.0.0.1") throws -> [UInt8] {
        let fd = try self.connect(port: port, host: host)
        defer { close(fd) }
        try self.send(fd, self.frame(body))
        return try self.readToEOF(fd)
    }

    static func frame(_ body: [UInt8]) -> [UInt8] {
        [UInt8(body.count >> 8 & 0xff), UInt8(body.count & 0xff)] + body
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
        var body: [UInt8] = [120, UInt8(port >> 8), UInt8(port & 0xff), type, proto]
        body += [UInt8(high >> 8), UInt8(high & 0xff), UInt8(low >> 8), UInt8(low & 0xff)]
        body += [UInt8(name.count >> 8 & 0xff), UInt8(name.count & 0xff)] + name
        body += [UInt8(extra.count >> 8 & 0xff), UInt8(extra.count & 0xff)] + extra
        return body
    }

    /// Registers a name and returns the open connection (closing it unregisters) and the reply.
    static func register(
        port: UInt16,
        name: String,
        nodePort: UInt16,
        high: UInt16 = 6,
        low: UInt16 = 5,
        host: String = "127.0.0.1"
    ) throws -> (fd: Int32, reply: [UInt8]) {
        let fd = try self.connect(port: port, host: host)
        try self.send(fd, self.frame(self.alive2(name: Array(name.utf8), port: nodePort, high: high, low: low)))
        let reply = try self.read(fd, count: high >= 6 ? 6 : 4)
        return (fd, reply)
    }

    /// NAMES_REQ; returns the reply after the 4-byte port prefix as text, and the prefix.
    static func names(port: UInt16, host: String = "127.0.0.1") throws -> (prefix: UInt32, text: String) {
        let reply = try self.request(port: port, [110], host: host)
        guard reply.count >= 4 else { throw TestFailure("NAMES reply too short: \(reply)") }
        let prefix = reply[0..<4].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        return (prefix, String(decoding: reply[4...], as: UTF8.self))
    }
}

/// Runs a command to completion with a time bound; returns status, stdout and stderr.
struct CommandResult {
    var status: Int32
    var stdout: String
    var stderr: String
}

enum Command {
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
        for (key, value) in environment { env[key] = value }
        process.environment = env
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cmd-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("out")
        let err = dir.appendingPathComponent("err")
        FileManager.default.createFile(atPath: out.path, contents: nil)
        FileManager.default.createFile(atPath: err.path, contents: nil)
        process.standardOutput = try FileHandle(forWritingTo: out)
        process.standardError = try FileHandle(forWritingTo: err)
        process.standardInput = FileHandle.nullDevice
        try process.run()
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
}

// MARK: - Added for WireConformanceTests / LimitsTests (starting the server through a shell)

extension GatewayProcess {
    /// Starts `/bin/sh -c '<shellPrefix> exec BINARY -port P <arguments>'` (for example with
    /// `shellPrefix: "ulimit -n 256;"`) and waits until 127.0.0.1:P accepts connections. The shell execs,
    /// so the process (and its pid) is the server itself.
    static func start(shellPrefix: String, arguments: [String] = []) async throws -> GatewayProcess {
        let port = try FreePort.next()
        let command = ([TestBinary.url.path, "-port", String(port)] + arguments)
            .map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }
            .joined(separator: " ")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", "\(shellPrefix) exec \(command)"]
        var env = ProcessInfo.processInfo.environment
        for key in ["ERL_EPMD_PORT", "ERL_EPMD_ADDRESS", "ERL_EPMD_RELAXED_COMMAND_CHECK"] {
            env.removeValue(forKey: key)
        }
        process.environment = env
        let stderrURL = FileManager.default.temporaryDirectory
            .appendingPathComponent("epmd-gateway-test-\(port)-\(UUID().uuidString).log")
        _ = FileManager.default.createFile(atPath: stderrURL.path, contents: nil)
        let handle = try FileHandle(forWritingTo: stderrURL)
        process.standardError = handle
        process.standardOutput = handle
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let gateway = GatewayProcess(port: port, process: process, stderrURL: stderrURL)
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            if WireClient.canConnect(port: port) { return gateway }
            if !process.isRunning {
                throw TestFailure("server exited with \(process.terminationStatus): \(gateway.log)")
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        await gateway.stopWithoutBlocking()
        throw TestFailure("server did not listen on \(port) within 10 s: \(gateway.log)")
    }
}
