import EPMDProtocol
import EPMDRegistry
import Foundation
import GatewayHTTP
import GatewayTestSupport
import InMemoryLogging
import Logging
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The libmicrohttpd daemon for real, driven by curl on loopback.
@Suite(.timeLimit(.minutes(1))) struct MicroHTTPDServerTests {
    @Test(
        "curl against a live daemon on 127.0.0.1 and ::1: nodes, health, probes, errors",
        .enabled(if: ExternalTool.usable("curl"))
    )
    func live() throws {
        let registry = NodeRegistry()
        _ = registry.register(
            Alive2Request(port: 4242, name: Array("web".utf8)),
            connection: ConnectionID(1),
            fd: 3,
            peer: "127.0.0.1"
        )
        let router = HTTPRouter(registry: registry, build: .init(version: "test", libmicrohttpd: "0.9.75"))
        for address in ["127.0.0.1", "::1"] {
            let server = try MicroHTTPDServer.started(configuration: .init(address: address, port: 0, threads: 2)) {
                router.respond(to: $0)
            }
            defer { server.stop() }
            #expect(server.port != 0)
            let host = address.contains(":") ? "[\(address)]" : address
            let base = "http://\(host):\(server.port)"
            let nodes = try Curl.runBlocking(["\(base)/v1/nodes"])
            #expect(nodes.status == 200)
            #expect(nodes.body.contains("\"name\":\"web\",\"port\":4242"))
            #expect(try Curl.runBlocking(["\(base)/v1/nodes/web/health"]).status == 200)
            #expect(try Curl.runBlocking(["-I", "\(base)/v1/nodes/web/health"]).status == 200)
            #expect(try Curl.runBlocking(["\(base)/v1/nodes/gone/health"]).status == 503)
            #expect(try Curl.runBlocking(["\(base)/livez"]).body == "ok\n")
            #expect(try Curl.runBlocking(["-X", "DELETE", "\(base)/v1/nodes"]).status == 405)
            #expect(try Curl.runBlocking(["\(base)/nowhere"]).status == 404)
            #expect(try Curl.runBlocking(["-H", "If-None-Match: \"1\"", "\(base)/v1/nodes"]).status == 304)
            // No endpoint takes a body: a request with one is refused at its head, unread (413, closed).
            #expect(
                try Curl.runBlocking(["-X", "POST", "--data", String(repeating: "x", count: 100_000), "\(base)/livez"])
                    .status
                    == 413
            )
            #expect(try Curl.runBlocking(["-X", "POST", "\(base)/livez"]).status == 405)
        }
    }

    @Test(
        "long-poll: a waiting GET /v1/nodes returns when a node registers, or when its wait ends",
        .enabled(if: ExternalTool.usable("curl"))
    )
    func longPoll() async throws {
        let registry = NodeRegistry()
        let router = HTTPRouter(registry: registry, build: .init(version: "test", libmicrohttpd: "0.9.75"))
        let server = try MicroHTTPDServer.started(
            configuration: .init(port: 0),
            longPoll: { router.longPollWait(for: $0) },
            handler: { router.respond(to: $0) }
        )
        defer { server.stop() }
        registry.addChangeObserver { server.generationChanged($0.id) }
        let base = "http://127.0.0.1:\(server.port)"
        let clock = ContinuousClock()

        var start = clock.now
        let timedOut = try Curl.runBlocking(["\(base)/v1/nodes?index=0&wait=1"])
        #expect(timedOut.body.hasPrefix("{\"generation\":0,"))
        #expect(start.duration(to: clock.now) >= .milliseconds(900))

        // A raw socket (no curl process holding a concurrency thread): the request is seen suspended
        // before the registration, so the answer proves the wake-up, not a race.
        start = clock.now
        let waiting = try RawHTTP.send(port: server.port, "/v1/nodes?index=0&wait=20")
        defer { close(waiting) }
        let suspended = try await Poll.until(timeout: .seconds(10), interval: .milliseconds(10)) {
            server.suspendedConnections == 1
        }
        #expect(suspended != nil, "the long-poll was not suspended")
        // Timed from the registration: the wait above runs on the shared concurrency pool, which other
        // tests' blocking calls can hold up for seconds; the read below is a plain blocking read.
        start = clock.now
        _ = registry.register(
            Alive2Request(port: 9, name: Array("late".utf8)),
            connection: ConnectionID(1),
            fd: 3,
            peer: ""
        )
        let answer = RawHTTP.response(waiting)
        #expect(answer.hasPrefix("HTTP/1.1 200"))
        #expect(answer.contains("\"generation\":1") && answer.contains("late"))
        #expect(start.duration(to: clock.now) < .seconds(10))
    }

    @Test("a port already in use is an error, not a crash")
    func portInUse() throws {
        let router = HTTPRouter(registry: NodeRegistry(), build: .init(version: "test", libmicrohttpd: "0.9.75"))
        let first = try MicroHTTPDServer.started(configuration: .init(port: 0)) { router.respond(to: $0) }
        defer { first.stop() }
        #expect(throws: MicroHTTPDError.self) {
            _ = try MicroHTTPDServer.started(configuration: .init(port: first.port)) { router.respond(to: $0) }
        }
        #expect(throws: MicroHTTPDError.self) {
            _ = try MicroHTTPDServer.started(configuration: .init(address: "localhost")) { router.respond(to: $0) }
        }
    }

    @Test(
        "lifecycle: init only configures, start binds once, stop answers a suspended long-poll at once and is idempotent"
    )
    func lifecycle() async throws {
        let registry = NodeRegistry()
        let router = HTTPRouter(registry: registry, build: .init(version: "test", libmicrohttpd: "0.9.75"))
        let logs = InMemoryLogHandler()
        var logger = Logger(label: "test.http") { _ in logs }
        logger.logLevel = .trace
        let server = MicroHTTPDServer(
            configuration: .init(port: 0),
            logger: logger,
            longPoll: { router.longPollWait(for: $0) },
            handler: { router.respond(to: $0) }
        )
        #expect(server.port == 0)
        try server.start()
        #expect(server.port != 0)
        #expect(throws: MicroHTTPDError.self) { try server.start() }
        let clock = ContinuousClock()
        let start = clock.now
        // Two requests suspended for up to 60 s; stop resumes them, waits for their answers, then stops.
        let first = try RawHTTP.send(port: server.port, "/v1/nodes?index=0&wait=60")
        let second = try RawHTTP.send(port: server.port, "/v1/nodes?index=0&wait=1m")
        defer {
            close(first)
            close(second)
        }
        let suspended = try await Poll.until(timeout: .seconds(10), interval: .milliseconds(10)) {
            server.suspendedConnections == 2
        }
        #expect(suspended != nil, "the two long-polls were not suspended in time")
        let stopping = clock.now
        server.stop()
        #expect(stopping.duration(to: clock.now) < .seconds(2))
        #expect(RawHTTP.status(first) == 200)
        #expect(RawHTTP.status(second) == 200)
        // Both answered by the stop, long before their 60 s waits (timed from the stop: the wait for
        // the suspension runs on the shared concurrency pool, which other tests can hold up).
        #expect(stopping.duration(to: clock.now) < .seconds(12))
        #expect(start.duration(to: clock.now) < .seconds(50))
        #expect(server.suspendedConnections == 0)
        #expect(server.port == 0)
        server.stop()
        #expect(throws: MicroHTTPDError.self) { try server.start() }
        let messages = logs.entries.map { "\($0.level) \($0.message)" }
        #expect(messages.contains { $0.contains("HTTP daemon started") })
        #expect(messages.filter { $0.contains("HTTP daemon stopped") }.count == 1)
        #expect(!messages.contains { $0.contains("not completed") })
    }
}
