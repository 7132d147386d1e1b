import EPMDPosix
import EPMDProtocol
import EPMDRegistry
import EPMDServer
import Foundation
import InMemoryLogging
import Logging
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// An in-process server on 127.0.0.1 port 0, its loop on a thread of its own.
final class ServerHarness: Sendable {
    let server: EPMDServer
    let port: UInt16
    /// What the loop logged (every level down to `trace`).
    let logs = InMemoryLogHandler()
    private let finished = DispatchSemaphore(value: 0)
    private let reason = ReasonBox()

    init(
        relaxed: Bool = false,
        packetTimeout: Int = 60,
        delayWrite: Int = 0,
        historyLimit: Int = 1000,
        registry: NodeRegistry? = nil,
        adopting snapshots: [EPMDConnectionSnapshot] = []
    ) throws {
        let configuration = EPMDServerConfiguration(
            port: 0,
            listeners: .bind([(.loopbackIPv4(port: 0), true), (.loopbackIPv6(port: 0), false)]),
            relaxedCommandCheck: relaxed,
            packetTimeout: packetTimeout,
            delayWrite: delayWrite,
            historyLimit: historyLimit
        )
        self.server = try EPMDServer(
            configuration: configuration,
            registry: registry ?? NodeRegistry(historyLimit: historyLimit),
            logger: Self.logger(self.logs)
        )
        self.port = self.server.boundPort
        let server = self.server
        let finished = self.finished
        let reason = self.reason
        let thread = Thread {
            let result = try? server.run(adopting: snapshots)
            reason.value.withLock { $0 = result }
            finished.signal()
        }
        thread.start()
    }

    static func logger(_ handler: InMemoryLogHandler) -> Logger {
        var logger = Logger(label: "epmd") { _ in handler }
        logger.logLevel = .trace
        return logger
    }

    /// The messages logged so far.
    var logLines: [String] { self.logs.entries.map { "\($0.message)" } }

    /// Waits (bounded) for the loop to end and returns why.
    func waitForExit(seconds: Double = 5) -> EPMDServer.ExitReason? {
        guard self.finished.wait(timeout: .now() + seconds) == .success else { return nil }
        self.finished.signal()
        return self.reason.value.withLock { $0 }
    }

    func stop() {
        self.server.shutdown()
        _ = self.waitForExit()
    }
}

/// A minimal blocking client for the in-process tests.
enum Wire {
    static func connect(_ port: UInt16, host: String = "127.0.0.1") throws -> Int32 {
        let v6 = host.contains(":")
        let fd = socket(v6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let address = try #require(SocketAddress(literal: host, port: port))
        let result = address.withSockaddrPublic { Glibc.connect(fd, $0, $1) }
        try #require(result == 0, "connect failed: errno \(errno)")
        return fd
    }

    static func send(_ fd: Int32, _ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    static func readToEOF(_ fd: Int32) -> [UInt8]? {
        var result: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count == 0 { return result }
            if count < 0 { return errno == ECONNRESET ? result : nil }
            result += buffer[0..<count]
        }
    }

    static func read(_ fd: Int32, _ count: Int) -> [UInt8] {
        var result: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: count)
        while result.count < count {
            let got = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, count - result.count, 0) }
            if got <= 0 { break }
            result += buffer[0..<got]
        }
        return result
    }

    static func request(_ port: UInt16, _ body: [UInt8]) throws -> [UInt8]? {
        let fd = try self.connect(port)
        defer { close(fd) }
        self.send(fd, [UInt8(body.count >> 8), UInt8(body.count & 0xFF)] + body)
        return self.readToEOF(fd)
    }

    static func register(_ port: UInt16, _ name: String, nodePort: UInt16, high: UInt16 = 6) throws -> (Int32, [UInt8])
    {
        let fd = try self.connect(port)
        let body = Alive2Request(port: nodePort, highestVersion: high, lowestVersion: 5, name: Array(name.utf8))
            .encode()
        self.send(fd, [UInt8(body.count >> 8), UInt8(body.count & 0xFF)] + body)
        return (fd, self.read(fd, high >= 6 ? 6 : 4))
    }

    static func names(_ port: UInt16) throws -> String {
        let reply = try #require(try self.request(port, [110]))
        return String(decoding: reply.dropFirst(4), as: UTF8.self)
    }

    /// Polls `condition` every 10 ms for up to `seconds`.
    static func eventually(seconds: Double = 2, _ condition: () throws -> Bool) rethrows -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try condition() { return true }
            usleep(10_000)
        }
        return try condition()
    }
}

final class ReasonBox: Sendable {
    let value = Mutex<EPMDServer.ExitReason?>(nil)
}
