import EPMDProtocol
import EPMDRegistry
import Foundation
import GatewayHTTP
import GatewayTestSupport
import Synchronization
import Testing

/// `/v1/events` and `/v1/events/history`: the router's part as values, then live streams through
/// libmicrohttpd (suspend/resume) read by curl.
@Suite(.timeLimit(.minutes(1))) struct EventStreamTests {
    static func router(capacity: Int = 1024, flapWindow: Double = 10) -> (HTTPRouter, NodeRegistry) {
        let clock = ManualClock(start: 1_795_411_787.25)
        let registry = NodeRegistry(eventCapacity: capacity, flapWindow: flapWindow, clock: { clock.now })
        return (HTTPRouter(registry: registry, build: .init(version: "test", libmicrohttpd: "0.9.75")), registry)
    }

    static func register(_ registry: NodeRegistry, _ name: String, id: UInt64) {
        _ = registry.register(
            Alive2Request(port: UInt16(id), name: Array(name.utf8)),
            connection: ConnectionID(id),
            fd: 9,
            peer: "127.0.0.1"
        )
    }

    static func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

    /// The `id:` values of a stream, in order.
    static func ids(_ stream: String) -> [UInt64] {
        stream.split(separator: "\n").compactMap { line in
            line.hasPrefix("id: ") ? UInt64(line.dropFirst(4)) : nil
        }
    }

    // MARK: - The router

    @Test("stream start: fresh without Last-Event-ID, after it with one (header wins over the query form)")
    func streamStart() {
        let (router, _) = Self.router()
        func start(_ headers: [String: String], _ query: [String: String] = [:]) -> EventStreamStart? {
            router.eventStreamStart(
                for: HTTPRequest(method: "GET", path: "/v1/events", query: query, headers: headers)
            )
        }
        #expect(start([:]) == .fresh)
        #expect(start(["last-event-id": "7"]) == .after(7))
        #expect(start(["last-event-id": "7"], ["lastEventId": "3"]) == .after(7))
        #expect(start([:], ["lastEventId": "3"]) == .after(3))
        #expect(start(["last-event-id": "x"]) == .fresh)
        #expect(start([:], ["follow": "false"]) == nil)
        #expect(start([:], ["follow": "maybe"]) == nil)
        #expect(router.eventStreamStart(for: HTTPRequest(method: "HEAD", path: "/v1/events")) == nil)
        #expect(router.eventStreamStart(for: HTTPRequest(method: "GET", path: "/v1/nodes")) == nil)
    }

    @Test("chunks: a reset with the sorted table first, then one frame per event, nothing when current")
    func chunks() {
        let (router, registry) = Self.router()
        Self.register(registry, "zed", id: 1)
        Self.register(registry, "alpha", id: 2)
        let first = router.eventStreamChunk(after: nil)
        #expect(first.lastID == 2)
        let reset = Self.text(first.bytes)
        #expect(reset.hasPrefix("event: reset\nid: 2\ndata: {\"generation\":2,\"nodes\":[{\"name\":\"alpha\""))
        #expect(reset.hasSuffix("}]}\n\n"))
        #expect(router.eventStreamChunk(after: 2).bytes.isEmpty)

        registry.unregister(connection: ConnectionID(1), reason: .closed)
        let next = router.eventStreamChunk(after: 2)
        #expect(next.lastID == 3)
        let frame = Self.text(next.bytes)
        #expect(frame.hasPrefix("event: unregistered\nid: 3\ndata: {\"id\":3,\"type\":\"unregistered\",\"time\":\""))
        #expect(
            frame.contains(
                "\"reason\":\"closed\",\"lifetimeSeconds\":0.000,\"flapping\":true,\"node\":{\"name\":\"zed\""
            )
        )
        #expect(frame.hasSuffix("}}\n\n"))
        #expect(Self.ids(Self.text(router.eventStreamChunk(after: 0).bytes)) == [1, 2, 3])
    }

    @Test("an id older than the buffer, or from another run, resets with the full table")
    func resetWhenTooOld() {
        let (router, registry) = Self.router(capacity: 2)
        for index in 1...5 { Self.register(registry, "n\(index)", id: UInt64(index)) }
        #expect(Self.text(router.eventStreamChunk(after: 1).bytes).hasPrefix("event: reset\nid: 5\n"))
        #expect(Self.ids(Self.text(router.eventStreamChunk(after: 3).bytes)) == [4, 5])
        #expect(Self.text(router.eventStreamChunk(after: 99).bytes).hasPrefix("event: reset\nid: 5\n"))
    }

    @Test("GET /v1/events?follow=false is a finite snapshot; HEAD answers headers; bad follow is 400")
    func snapshot() {
        let (router, registry) = Self.router()
        Self.register(registry, "a", id: 1)
        let response = router.respond(
            to: HTTPRequest(method: "GET", path: "/v1/events", query: ["follow": "false"])
        )
        #expect(response.status == 200 && response.header("Content-Type") == "text/event-stream")
        #expect(Self.text(response.body).hasPrefix("retry: 2000\n\nevent: reset\nid: 1\n"))
        #expect(response.route == "/v1/events")
        let resumed = router.respond(
            to: HTTPRequest(method: "GET", path: "/v1/events", query: ["follow": "false", "lastEventId": "0"])
        )
        #expect(Self.ids(Self.text(resumed.body)) == [1])
        #expect(Self.text(resumed.body).contains("event: registered\n"))
        #expect(router.respond(to: HTTPRequest(method: "HEAD", path: "/v1/events")).status == 200)
        #expect(
            router.respond(to: HTTPRequest(method: "GET", path: "/v1/events", query: ["follow": "no"])).status == 400
        )
        #expect(router.respond(to: HTTPRequest(method: "POST", path: "/v1/events")).status == 405)
    }

    @Test("GET /v1/events/history: events oldest first with flapping flags and flap counts, most first")
    func history() {
        let clock = ManualClock(start: 1_000)
        let registry = NodeRegistry(flapWindow: 5, clock: { clock.now })
        let router = HTTPRouter(registry: registry, build: .init(version: "t", libmicrohttpd: "t"))
        for round in 1...2 {
            Self.register(registry, "flappy", id: UInt64(round))
            clock.advance(1)
            registry.unregister(connection: ConnectionID(UInt64(round)))
        }
        Self.register(registry, "steady", id: 10)
        clock.advance(60)
        registry.unregister(connection: ConnectionID(10), reason: .error)
        Self.register(registry, "blip", id: 11)
        registry.unregister(name: Array("blip".utf8))

        let response = router.respond(to: HTTPRequest(method: "GET", path: "/v1/events/history"))
        #expect(response.status == 200 && response.route == "/v1/events/history")
        let text = Self.text(response.body)
        #expect(
            text.hasPrefix("{\"generation\":8,\"capacity\":1024,\"flapWindowSeconds\":5.000,\"events\":[{\"id\":1,")
        )
        #expect(text.contains("\"reason\":\"error\",\"lifetimeSeconds\":60.000,\"flapping\":false"))
        // An operator's STOP is not a flap, however soon it comes.
        #expect(text.contains("\"reason\":\"stop\",\"lifetimeSeconds\":0.000,\"flapping\":false"))
        #expect(text.hasSuffix("\"flaps\":[{\"name\":\"flappy\",\"count\":2}]}\n"))
    }

    @Test("route labels are templates, never raw paths")
    func routes() {
        let (router, _) = Self.router()
        let cases: [(String, String)] = [
            ("/", "/"), ("/v1/nodes/abc", "/v1/nodes/{name}"), ("/v1/nodes/abc/health", "/v1/nodes/{name}/health"),
            ("/v1/events", "/v1/events"), ("/v1/events/history", "/v1/events/history"), ("/metrics", "/metrics"),
            ("/nowhere/at/all", "other"), ("/v1/nodes", "/v1/nodes"), ("/%ZZ", "other"),
        ]
        for (path, route) in cases {
            #expect(router.respond(to: HTTPRequest(method: "GET", path: path)).route == route, "\(path)")
            #expect(HTTPRoute.allCases.map(\.label).contains(route))
        }
        #expect(router.respond(to: HTTPRequest(method: "GET", path: "/metrics")).status == 404)
        let withMetrics = HTTPRouter(
            registry: NodeRegistry(),
            build: .init(version: "t", libmicrohttpd: "t"),
            metrics: { Array("up 1\n".utf8) }
        )
        let metrics = withMetrics.respond(to: HTTPRequest(method: "GET", path: "/metrics"))
        #expect(metrics.status == 200 && metrics.body == Array("up 1\n".utf8))
        #expect(metrics.header("Content-Type") == "text/plain; version=0.0.4; charset=utf-8")
    }

    // MARK: - Live streams through libmicrohttpd

    static func liveServer(
        maxWatchers: Int = 8,
        heartbeat: Int = 15
    ) throws -> (MicroHTTPDServer, NodeRegistry, String) {
        let registry = NodeRegistry()
        let router = HTTPRouter(registry: registry, build: .init(version: "test", libmicrohttpd: "0.9.75"))
        let server = try MicroHTTPDServer.started(
            configuration: .init(port: 0, threads: 2, maxWatchers: maxWatchers, heartbeatSeconds: heartbeat),
            events: router,
            handler: { router.respond(to: $0) }
        )
        registry.addChangeObserver { server.generationChanged($0.id) }
        return (server, registry, "http://127.0.0.1:\(server.port)")
    }

    @Test(
        "live: a stream gets its reset, then every change as it happens, ids contiguous; resume misses nothing",
        .enabled(if: ExternalTool.usable("curl"))
    )
    func liveStream() async throws {
        let (server, registry, base) = try Self.liveServer()
        defer { server.stop() }
        Self.register(registry, "before", id: 1)
        let stream = try CurlStream("\(base)/v1/events", seconds: 20)
        defer { stream.stop() }
        try await stream.wait(for: "event: reset\nid: 1\n")
        #expect(server.eventWatchers == 1)
        for index in 2...40 { Self.register(registry, "n\(index)", id: UInt64(index)) }
        registry.unregister(connection: ConnectionID(1))
        try await stream.wait(for: "id: 41\n")
        #expect(Self.ids(stream.text) == Array(1...41))
        #expect(stream.text.hasPrefix("retry: 2000\n\nevent: reset\n"))

        // A reconnect with the last id seen gets exactly what came after it.
        let resumed = try CurlStream("\(base)/v1/events", seconds: 20, headers: ["Last-Event-ID: 38"])
        defer { resumed.stop() }
        try await resumed.wait(for: "id: 41\n")
        #expect(Self.ids(resumed.text) == [39, 40, 41])
        #expect(!resumed.text.contains("event: reset"))
    }

    @Test(
        "live: the watcher cap answers 503 with Retry-After; heartbeats flow on idle streams; stop ends streams",
        .enabled(if: ExternalTool.usable("curl"))
    )
    func capHeartbeatAndStop() async throws {
        let (server, _, base) = try Self.liveServer(maxWatchers: 2, heartbeat: 1)
        let first = try CurlStream("\(base)/v1/events", seconds: 20)
        let second = try CurlStream("\(base)/v1/events", seconds: 20)
        defer {
            first.stop()
            second.stop()
        }
        try await first.wait(for: "event: reset")
        try await second.wait(for: "event: reset")
        let refused = try Curl.runBlocking(["-i", "\(base)/v1/events"])
        #expect(refused.status == 503)
        #expect(refused.body.lowercased().contains("retry-after: 5"))
        #expect(refused.body.contains("application/problem+json"))

        try await first.wait(for: ": ping\n\n", timeout: .seconds(5))

        let clock = ContinuousClock()
        let start = clock.now
        server.stop()
        #expect(start.duration(to: clock.now) < .seconds(3))
        #expect(first.finish() == 200)
        #expect(second.finish() == 200)
        #expect(server.eventWatchers == 0)
    }

    @Test(
        "live: a watcher that hangs up while idle is dropped within seconds (no event, no heartbeat due)",
        .enabled(if: ExternalTool.usable("curl"))
    )
    func watcherLeaves() async throws {
        // A heartbeat far away: only the hang-up check can notice the closed peer.
        let (server, registry, base) = try Self.liveServer(maxWatchers: 1, heartbeat: 600)
        defer { server.stop() }
        let gone = try CurlStream("\(base)/v1/events", seconds: 20)
        try await gone.wait(for: "event: reset")
        #expect(server.eventWatchers == 1)
        gone.stop()
        _ = gone.finish()
        _ = try await Poll.until(timeout: .seconds(10)) { server.eventWatchers == 0 }
        #expect(server.eventWatchers == 0)
        Self.register(registry, "next", id: 1)
        let next = try CurlStream("\(base)/v1/events", seconds: 20)
        defer { next.stop() }
        try await next.wait(for: "event: reset\nid: 1\n")
    }
}

/// A settable clock for registries.
final class ManualClock: Sendable {
    private let value: Mutex<Double>

    init(start: Double) { self.value = Mutex(start) }

    var now: Double { self.value.withLock { $0 } }

    func advance(_ seconds: Double) { self.value.withLock { $0 += seconds } }
}
