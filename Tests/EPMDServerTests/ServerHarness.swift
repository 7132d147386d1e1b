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
        maxConnections: Int = 0,
        connectionsPerAddress: Int = EPMDServerConfiguration.defaultConnectionsPerAddress,
        refusalLogInterval: Int = 10,
        adopting snapshots: [EPMDConnectionSnapshot] = []
    ) throws {
        let configuration = EPMDServerConfiguration(
            port: 0,
            listeners: .bind([(.loopbackIPv4(port: 0), true), (.loopbackIPv6(port: 0), false)]),
            relaxedCommandCheck: relaxed,
            packetTimeout: packetTimeout,
            delayWrite: delayWrite,
            historyLimit: historyLimit,
            maxConnections: maxConnections,
            connectionsPerAddress: connectionsPerAddress,
            refusalLogInterval: refusalLogInterval
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

final class ReasonBox: Sendable {
    let value = Mutex<EPMDServer.ExitReason?>(nil)
}
