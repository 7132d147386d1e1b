import EPMDApp
import EPMDPosix
import GatewayMetrics
import InMemoryLogging
import Logging
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A `Gateway` built on loopback port 0 (epmd and HTTP) and run on its own thread, as the executable runs it.
@Suite(.timeLimit(.minutes(1))) struct GatewayTests {
    /// Loopback only, both ports chosen by the kernel.
    static func options(grace: Int = 0, http: Bool = true) -> EPMDOptions {
        var options = EPMDOptions()
        options.port = 0
        options.addresses = "127.0.0.1"
        options.httpPort = 0
        options.httpEnabled = http
        options.shutdownGrace = grace
        return options
    }

    /// A logger that keeps its entries, at `debug` (the transitions' level).
    static func logger() -> (Logger, InMemoryLogHandler) {
        let handler = InMemoryLogHandler()
        var logger = Logger(label: "gateway-test", factory: { _ in handler })
        logger.logLevel = .debug
        return (logger, handler)
    }

    /// `gateway.run()` on a thread of its own; `result` once it returned.
    final class Runner: Sendable {
        private final class Outcome: Sendable {
            let value = Mutex<Result<Gateway.StopReason, GatewayError>?>(nil)
        }

        let gateway: Gateway
        private let outcome = Outcome()
        private let thread: PosixThread

        init(_ gateway: Gateway) throws {
            self.gateway = gateway
            let outcome = self.outcome
            self.thread = try PosixThread(name: "gateway-test") {
                let result = Result { () throws(GatewayError) in try gateway.run() }
                outcome.value.withLock { $0 = result }
            }
        }

        var result: Result<Gateway.StopReason, GatewayError>? { self.outcome.value.withLock { $0 } }

        /// Waits (bounded) until `run()` returned, and joins the thread.
        func finish(within seconds: Int = 10) async throws -> Result<Gateway.StopReason, GatewayError> {
            try #require(await poll(seconds: seconds) { self.result != nil }, "run() did not return in \(seconds) s")
            self.thread.join()
            return try #require(self.result)
        }
    }

    /// Polls `condition` every 10 ms for at most `seconds`.
    static func poll(seconds: Int, _ condition: () -> Bool) async -> Bool {
        for _ in 0..<(seconds * 100) {
            if condition() { return true }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return condition()
    }

    /// The status code of `GET path` on the HTTP front, or nil when nothing answers.
    static func httpStatus(_ port: UInt16, _ path: String) -> Int? {
        guard let socket = try? ClientSocket.connect(to: .loopbackIPv4(port: port)) else { return nil }
        guard (try? socket.sendAll(Array("GET \(path) HTTP/1.0\r\nHost: localhost\r\n\r\n".utf8))) != nil else {
            return nil
        }
        let reply = socket.readToEnd()
        // "HTTP/1.x NNN ..."
        guard reply.count >= 12 else { return nil }
        return reply[9..<12].reduce(0) { $0 * 10 + Int($1) - 48 }
    }

    /// The port an epmd NAMES request reports (its 4-byte prefix: the configured port, 0 here), or nil
    /// when nothing answers.
    static func namesPort(_ port: UInt16) -> UInt32? {
        guard let socket = try? ClientSocket.connect(to: .loopbackIPv4(port: port)),
            (try? socket.sendAll([0, 1, 110])) != nil
        else { return nil }
        let reply = socket.readToEnd()
        guard reply.count >= 4 else { return nil }
        return reply.prefix(4).reduce(0) { $0 << 8 | UInt32($1) }
    }

    @Test("built on port 0: run serves both fronts; shutdown twice is one shutdown; run() again fails; stopped")
    func lifecycle() async throws {
        let (logger, _) = Self.logger()
        let gateway = try Gateway.build(options: Self.options(), environment: [:], logger: logger)
        #expect(gateway.state == .starting)
        #expect(gateway.epmdPort != 0)
        #expect(gateway.httpPort == nil)
        #expect(!gateway.isReady)
        let runner = try Runner(gateway)
        defer { gateway.shutdown() }  // a failed #require must not leave the run thread behind
        try #require(await Self.poll(seconds: 10) { gateway.state == .running }, "not running: \(gateway.state)")
        #expect(gateway.isReady)
        let httpPort = try #require(gateway.httpPort)
        #expect(Self.httpStatus(httpPort, "/readyz") == 200)
        #expect(Self.namesPort(gateway.epmdPort) == 0)

        // A second run() while the first runs.
        #expect(throws: GatewayError.alreadyRun) { try gateway.run() }
        #expect(gateway.state == .running)

        gateway.shutdown()
        gateway.shutdown()
        let result = try await runner.finish()
        #expect(result == .success(.shutdown))
        #expect(gateway.state == .stopped)
        #expect(!gateway.isReady)
        #expect(gateway.httpPort == nil)
        gateway.shutdown()
        #expect(gateway.state == .stopped)
        #expect(throws: GatewayError.alreadyRun) { try gateway.run() }
        // Both fronts are closed.
        #expect(Self.namesPort(gateway.epmdPort) == nil)
        #expect(Self.httpStatus(httpPort, "/readyz") == nil)
    }

    @Test("shutdown() drains as SIGTERM does: readiness 503 and the epmd port answering for the grace, then stopped")
    func shutdownGrace() async throws {
        let (logger, _) = Self.logger()
        let gateway = try Gateway.build(options: Self.options(grace: 1), environment: [:], logger: logger)
        let runner = try Runner(gateway)
        defer { gateway.shutdown() }  // a failed #require must not leave the run thread behind
        try #require(await Self.poll(seconds: 10) { gateway.state == .running })
        let httpPort = try #require(gateway.httpPort)
        let clock = ContinuousClock()
        let start = clock.now
        gateway.shutdown()
        #expect(gateway.state == .draining)
        #expect(!gateway.isReady)
        #expect(Self.httpStatus(httpPort, "/readyz") == 503)
        #expect(Self.httpStatus(httpPort, "/livez") == 200)
        #expect(Self.namesPort(gateway.epmdPort) == 0)
        gateway.shutdown()
        #expect(gateway.state == .draining)
        let result = try await runner.finish()
        let elapsed = start.duration(to: clock.now)
        #expect(result == .success(.shutdown))
        #expect(gateway.state == .stopped)
        #expect(elapsed >= .milliseconds(900), "stopped after \(elapsed), before the 1 s grace")
    }

    @Test("every state transition is logged at debug, with the states as metadata")
    func transitionsLogged() async throws {
        let (logger, logs) = Self.logger()
        let gateway = try Gateway.build(options: Self.options(http: false), environment: [:], logger: logger)
        let runner = try Runner(gateway)
        defer { gateway.shutdown() }  // a failed #require must not leave the run thread behind
        try #require(await Self.poll(seconds: 10) { gateway.state == .running })
        gateway.shutdown()
        _ = try await runner.finish()
        let transitions = logs.entries.filter { $0.metadata["gateway.state.to"] != nil }
        #expect(
            transitions.map { "\($0.message)" } == [
                "gateway starting -> running", "gateway running -> draining", "gateway draining -> stopped",
            ]
        )
        #expect(transitions.allSatisfy { $0.level == .debug })
        #expect(transitions.map { $0.metadata["gateway.state.from"] } == ["starting", "running", "draining"])
        #expect(transitions.map { $0.metadata["gateway.state.to"] } == ["running", "draining", "stopped"])
        // C epmd's own lines, at the levels `-d` prints them.
        let running = logs.entries.first { "\($0.message)" == "epmd running - daemon = 0" }
        #expect(running?.level == .info)
        #expect(logs.entries.contains { "\($0.message)" == "loop ended: shutdown" && $0.level == .info })
    }

    @Test("shutdown() before run(): the sockets close at once, the gateway is stopped, run() fails")
    func shutdownBeforeRun() throws {
        let (logger, logs) = Self.logger()
        let gateway = try Gateway.build(options: Self.options(), environment: [:], logger: logger)
        let port = gateway.epmdPort
        gateway.shutdown()
        #expect(gateway.state == .stopped)
        #expect(Self.namesPort(port) == nil)
        #expect(throws: GatewayError.alreadyRun) { try gateway.run() }
        gateway.shutdown()
        #expect(logs.entries.map { "\($0.message)" }.contains("gateway starting -> stopped"))
    }

    @Test("KILL ends run() with .killed (exit 0)")
    func kill() async throws {
        let (logger, _) = Self.logger()
        let gateway = try Gateway.build(options: Self.options(http: false), environment: [:], logger: logger)
        let runner = try Runner(gateway)
        defer { gateway.shutdown() }  // a failed #require must not leave the run thread behind
        try #require(await Self.poll(seconds: 10) { gateway.state == .running })
        let socket = try ClientSocket.connect(to: .loopbackIPv4(port: gateway.epmdPort))
        try socket.sendAll([0, 1, 107])
        #expect(socket.readToEnd() == Array("OK".utf8))
        let result = try await runner.finish()
        #expect(result == .success(.killed))
        #expect((try? result.get())?.exitStatus == 0)
        #expect(gateway.state == .stopped)
    }

    @Test("an epmd port in use is GatewayError.addressInUse (exit 0); a taken HTTP port is not fatal")
    func portsTaken() async throws {
        let (logger, logs) = Self.logger()
        let first = try Gateway.build(options: Self.options(), environment: [:], logger: logger)
        let runner = try Runner(first)
        defer { first.shutdown() }
        try #require(await Self.poll(seconds: 10) { first.state == .running })
        let httpPort = try #require(first.httpPort)

        var sameEPMDPort = Self.options()
        sameEPMDPort.port = Int(first.epmdPort)
        #expect(throws: GatewayError.addressInUse("there is already a epmd running at port \(first.epmdPort)")) {
            try Gateway.build(options: sameEPMDPort, environment: [:], logger: logger)
        }

        var sameHTTPPort = Self.options()
        sameHTTPPort.httpPort = Int(httpPort)
        let second = try Gateway.build(options: sameHTTPPort, environment: [:], logger: logger)
        let secondRunner = try Runner(second)
        defer { second.shutdown() }
        try #require(await Self.poll(seconds: 10) { second.state == .running })
        #expect(second.httpPort == nil)
        #expect(second.isReady)
        #expect(Self.namesPort(second.epmdPort) == 0)
        #expect(logs.entries.contains { "\($0.message)".hasPrefix("HTTP front disabled") && $0.level == .warning })
        let exposition = String(
            decoding: second.metrics.exposition(registry: second.registry, openConnections: 0),
            as: UTF8.self
        )
        #expect(exposition.contains("\nepmd_gateway_http_up 0"))

        second.shutdown()
        first.shutdown()
        #expect(try await secondRunner.finish() == .success(.shutdown))
        #expect(try await runner.finish() == .success(.shutdown))
    }

    @Test(
        "NOTIFY_SOCKET without -systemd, when systemd started this process: READY once both fronts serve, STOPPING at the drain, Exited at the end"
    )
    func notifyWithoutSystemdOption() async throws {
        let path = "/tmp/epmd-gateway-notify-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let notify = try NotifySocket(path: path)
        defer { notify.close() }
        func received() -> [String] { notify.received() }

        // Another process's SYSTEMD_EXEC_PID (an erl in some Type=notify unit started us): silence.
        let (logger, _) = Self.logger()
        let foreign = ["NOTIFY_SOCKET": path, "SYSTEMD_EXEC_PID": "\(getpid() &+ 1)"]
        let quiet = try Gateway.build(options: Self.options(), environment: foreign, logger: logger)
        let quietRunner = try Runner(quiet)
        try #require(await Self.poll(seconds: 10) { quiet.state == .running })
        quiet.shutdown()
        _ = try await quietRunner.finish()
        #expect(received() == [])

        let own = ["NOTIFY_SOCKET": path, "SYSTEMD_EXEC_PID": "\(getpid())"]
        let gateway = try Gateway.build(options: Self.options(grace: 1), environment: own, logger: logger)
        let runner = try Runner(gateway)
        defer { gateway.shutdown() }
        var messages: [String] = []
        try #require(
            await Self.poll(seconds: 10) {
                messages += received()
                return !messages.isEmpty
            }
        )
        let httpPort = try #require(gateway.httpPort)
        #expect(
            messages.first
                == "READY=1\nSTATUS=Serving 0 nodes (epmd port \(gateway.epmdPort), HTTP port \(httpPort))\nMAINPID=\(getpid())"
        )
        #expect(Self.httpStatus(httpPort, "/readyz") == 200)
        #expect(Self.namesPort(gateway.epmdPort) == 0)
        gateway.shutdown()
        #expect(try await runner.finish() == .success(.shutdown))
        messages += received()
        #expect(
            messages.dropFirst() == [
                "STOPPING=1\nSTATUS=Draining for 1 s, 0 nodes registered", "STATUS=Exited.\nERRNO=0",
            ],
            "\(messages)"
        )
    }

    @Test("bad socket activation and address lists are GatewayError.cannotStart with C epmd's messages")
    func cannotStart() {
        let (logger, _) = Self.logger()
        var systemd = Self.options()
        systemd.systemd = true
        #expect(throws: GatewayError.cannotStart("cannot obtain sockets from systemd")) {
            try Gateway.build(options: systemd, environment: ["LISTEN_FDS": "x"], logger: logger)
        }
        #expect(throws: GatewayError.cannotStart("systemd provides no sockets")) {
            try Gateway.build(options: systemd, environment: [:], logger: logger)
        }
        // LISTEN_PID names another process: the descriptors are not ours.
        #expect(throws: GatewayError.cannotStart("systemd provides no sockets")) {
            try Gateway.build(options: systemd, environment: ["LISTEN_FDS": "1", "LISTEN_PID": "1"], logger: logger)
        }
        var hostname = Self.options()
        hostname.addresses = "localhost"
        #expect(throws: GatewayError.cannotStart("cannot parse IP address \"localhost\"")) {
            try Gateway.build(options: hostname, environment: [:], logger: logger)
        }
    }

    @Test(
        "the descriptor budget: derived from RLIMIT_NOFILE, exported, logged; explicit limits that do not fit stop the start"
    )
    func descriptorBudget() throws {
        let (logger, logs) = Self.logger()
        let gateway = try Gateway.build(options: Self.options(), environment: [:], logger: logger)
        defer { gateway.shutdown() }
        let expected = try DescriptorBudget(limit: System.descriptorLimit(), options: Self.options())
        #expect(gateway.descriptorBudget == expected)
        let exposition = String(
            decoding: gateway.metrics.exposition(registry: gateway.registry, openConnections: 0),
            as: UTF8.self
        )
        #expect(exposition.contains("\nepmd_connections_limit \(expected.epmd).0\n"))
        #expect(exposition.contains("\nepmd_gateway_descriptor_budget{part=\"reserve\"} \(expected.reserve).0\n"))
        #expect(exposition.contains("\nepmd_gateway_descriptor_budget{part=\"http\"} \(expected.http).0\n"))
        #expect(
            logs.entries.contains {
                "\($0.message)"
                    == "descriptor limit \(expected.limit): reserve \(expected.reserve), epmd \(expected.epmd), HTTP \(expected.http)"
            }
        )

        var tooMany = Self.options()
        tooMany.maxConnections = System.descriptorLimit()
        #expect {
            try Gateway.build(options: tooMany, environment: [:], logger: logger)
        } throws: { error in
            guard case .cannotStart(let message) = error as? GatewayError else { return false }
            return message.hasPrefix("--max-connections \(System.descriptorLimit()) and one HTTP connection do not fit")
        }
    }
}
