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

/// The HTTP front while one client floods it from 127.0.0.2: idle connections, slow loris (one header
/// byte a second), idle keep-alive connections, a full front. Probes from 127.0.0.1 (a kubelet, a load
/// balancer) keep their answers within 1 s; the flooder's connections are refused at its share or
/// closed at their head deadline, and each cause is counted. Small fronts and 2-second deadlines keep
/// every case to a few seconds and a hundred connections or so (the live hostile suite does thousands).
/// Serialized: each case holds a few hundred descriptors at once.
@Suite(.serialized, .timeLimit(.minutes(1))) struct HTTPFloodTests {
    static let router = HTTPRouter(registry: NodeRegistry(), build: .init(version: "test", libmicrohttpd: "0.9.75"))

    /// A request head that would complete only after its last byte.
    static let head = Array("GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".utf8)

    static func start(
        _ configuration: MicroHTTPDServer.Configuration,
        logs: InMemoryLogHandler = InMemoryLogHandler(),
        events: ServerEvents = ServerEvents()
    ) throws -> MicroHTTPDServer {
        var logger = Logger(label: "test.http") { _ in logs }
        logger.logLevel = .trace
        let server = MicroHTTPDServer(
            configuration: configuration,
            logger: logger,
            connectionObserver: { events.record($0, $1) },
            handler: { Self.router.respond(to: $0) }
        )
        try server.start()
        return server
    }

    /// `/livez` and `/readyz` from 127.0.0.1 answer 200 within 1 s.
    static func expectProbesAnswer(port: UInt16, _ when: String) throws {
        for path in ["/livez", "/readyz"] {
            let probe = try Probe.get(path, port: port)
            #expect(probe.status == 200, "\(path) \(when): status \(probe.status)")
            #expect(probe.seconds < 1, "\(path) \(when): answered after \(probe.seconds) s")
        }
    }

    /// Every late-head close the server counted came at the deadline: `seconds` after the connect (or
    /// the answer) it counts from, give or take 50 ms of coalescing and a loaded machine's scheduling.
    static func expectClosedAtDeadline(
        _ times: [ContinuousClock.Instant],
        count: Int,
        from first: ContinuousClock.Instant,
        to last: ContinuousClock.Instant,
        seconds: Double
    ) {
        #expect(times.count == count, "\(times.count) late heads counted")
        let early = times.filter { WireClient.seconds(first.duration(to: $0)) < seconds - 0.02 }
        #expect(early.isEmpty, "\(early.count) closed before the deadline")
        let late = times.map { WireClient.seconds(last.duration(to: $0)) }.filter { $0 > seconds + 2 }
        #expect(late.isEmpty, "closed late, seconds after the deadline's start: \(late)")
    }

    /// The warning lines whose message contains `text`.
    static func lines(_ logs: InMemoryLogHandler, _ text: String) -> [InMemoryLogHandler.Entry] {
        logs.entries.filter { $0.level == .warning && "\($0.message)".contains(text) }
    }

    @Test("idle connections from 127.0.0.2: held to the share (refusals counted), closed at the head deadline")
    func idleFlood() async throws {
        let logs = InMemoryLogHandler()
        let events = ServerEvents()
        let server = try Self.start(
            .init(port: 0, connectionLimit: 64, connectionsPerAddress: 40, headerTimeout: 3),
            logs: logs,
            events: events
        )
        defer { server.stop() }
        let flood = try FloodClients(100, port: server.port)
        // The kernel queues connections in order: the first 40 fill the share, the other 60 are closed
        // at once (counted as per_address). Blocking: this phase's timing is the point.
        let held = Array(0..<40)
        #expect(flood.blockingWaitUntil(within: .seconds(2)) { $0.closedCount >= 60 })
        #expect(flood.stillOpen == held, "closed early: \(held.filter { flood.closedAt[$0] != nil })")
        #expect(flood.received.allSatisfy { $0.isEmpty }, "a refused connection got bytes")
        try Self.expectProbesAnswer(port: server.port, "while 40 idle connections from 127.0.0.2 are open")
        #expect(server.connectionStatistics.refusedPerAddress == 60)
        #expect(server.connectionStatistics.refusedAtLimit == 0)

        // The 40 it kept send nothing: each is closed at its head deadline, 3 s after its connect.
        #expect(try await flood.waitUntil(within: .seconds(15)) { $0.stillOpen.isEmpty })
        Self.expectClosedAtDeadline(
            events.times(.headerTimeout),
            count: 40,
            from: flood.opened[0],
            to: flood.opened[39],
            seconds: 3
        )
        #expect(server.connectionStatistics.headerTimeouts == 40)
        let drained = try await Poll.until(timeout: .seconds(5)) { server.connectionStatistics.open == 0 }
        #expect(drained != nil, "connections left open: \(server.connectionStatistics)")

        // The share is free again: the same address is served.
        let again = try Probe.get("/livez", port: server.port, from: "127.0.0.2")
        #expect(again.status == 200)
        // One log line per cause per interval, with a count: 60 refusals, 40 late heads, two lines.
        let refusals = Self.lines(logs, "too many connections from one address")
        #expect(refusals.count == 1)
        #expect(refusals.first?.metadata["address"] == "127.0.0.2")
        #expect(Self.lines(logs, "request head not complete in time").count == 1)
    }

    @Test("slow loris from 127.0.0.2 (one header byte a second): closed at the deadline, counted; probes answer")
    func slowLoris() async throws {
        let events = ServerEvents()
        let server = try Self.start(
            .init(port: 0, connectionLimit: 64, connectionsPerAddress: 48, headerTimeout: 2),
            events: events
        )
        defer { server.stop() }
        let flood = try FloodClients(48, port: server.port)
        // One byte a second each: the inactivity timeout (30 s) never fires, the head needs 41 s.
        var sent = 0
        while !flood.stillOpen.isEmpty && sent < 15 {
            flood.send([Self.head[sent]])
            sent += 1
            try Self.expectProbesAnswer(port: server.port, "with \(flood.stillOpen.count) slow clients open")
            _ = try await flood.waitUntil(within: .seconds(1)) { $0.stillOpen.isEmpty }
        }
        #expect(flood.stillOpen.isEmpty, "\(flood.stillOpen.count) slow connections still open after \(sent) s")
        Self.expectClosedAtDeadline(
            events.times(.headerTimeout),
            count: 48,
            from: flood.opened[0],
            to: flood.opened[47],
            seconds: 2
        )
        #expect(server.connectionStatistics.headerTimeouts == 48)
        #expect(server.connectionStatistics.refusedPerAddress == 0)
        try Self.expectProbesAnswer(port: server.port, "after the slow clients were closed")
    }

    @Test("control: without a head deadline, the same slow loris outlives 2 s (the inactivity timeout never fires)")
    func slowLorisWithoutDeadline() async throws {
        let server = try Self.start(.init(port: 0, connectionLimit: 64, connectionsPerAddress: 48, headerTimeout: 0))
        defer { server.stop() }
        let flood = try FloodClients(8, port: server.port)
        for index in 0..<4 {
            flood.send([Self.head[index]])
            _ = try await flood.waitUntil(within: .seconds(1)) { $0.closedCount > 0 }
        }
        #expect(flood.closedCount == 0, "closed without a deadline")
        #expect(server.connectionStatistics.headerTimeouts == 0)
    }

    @Test("idle keep-alive connections from 127.0.0.2: closed at the deadline counted from the end of the response")
    func idleKeepAlive() async throws {
        let events = ServerEvents()
        let server = try Self.start(
            .init(port: 0, connectionLimit: 64, connectionsPerAddress: 48, headerTimeout: 2),
            events: events
        )
        defer { server.stop() }
        let flood = try FloodClients(48, port: server.port)
        // The first 47 make one request each and then idle; the last makes a second one after 1.2 s.
        // Blocking until that second request: its timing against the deadline is the point.
        flood.send(Self.head)
        let sent = flood.clock.now
        #expect(flood.blockingWaitUntil(within: .seconds(1)) { $0.received.allSatisfy { !$0.isEmpty } })
        #expect(flood.received.allSatisfy { $0.starts(with: Array("HTTP/1.1 200".utf8)) })
        #expect(flood.closedCount == 0, "a keep-alive connection was closed after its response")
        try Self.expectProbesAnswer(port: server.port, "with 48 idle keep-alive connections open")
        usleep(1_200_000)
        flood.look()
        let last = flood.fds.count - 1
        #expect(flood.closedAt[last] == nil)
        flood.send(Self.head, to: [last])
        let second = flood.clock.now

        #expect(try await flood.waitUntil(within: .seconds(10)) { $0.stillOpen.isEmpty })
        #expect(Probe.occurrences(of: "HTTP/1.1 200", in: flood.received[last]) == 2, "no second answer")
        var times = events.times(.headerTimeout).sorted()
        // The second request restarted its deadline: closed 2 s after its second answer.
        let lastClosed = times.popLast()
        #expect(lastClosed.map { WireClient.seconds(second.duration(to: $0)) >= 1.98 } == true)
        Self.expectClosedAtDeadline(times, count: 47, from: sent, to: sent.advanced(by: .seconds(1)), seconds: 2)
        #expect(server.connectionStatistics.headerTimeouts == 48)
        try Self.expectProbesAnswer(port: server.port, "after the keep-alive connections were closed")
    }

    @Test(
        "a full front: connections past the limit are refused at once and counted as limit; slots come back",
        arguments: [1, 3]
    )
    func fullFront(threads: Int) async throws {
        let logs = InMemoryLogHandler()
        // No share: the flooder can fill the front (16 slots), then every client is refused until the
        // flooder's idle connections reach their deadline. With a pool of threads too: each worker
        // accepts on its own, the limit is the front's.
        let server = try Self.start(
            .init(port: 0, threads: threads, connectionLimit: 16, connectionsPerAddress: 0, headerTimeout: 2),
            logs: logs
        )
        defer { server.stop() }
        let flood = try FloodClients(24, port: server.port)
        #expect(flood.blockingWaitUntil(within: .seconds(1)) { $0.closedCount >= 8 })
        #expect(flood.closedCount == 8)
        let refused = try Probe.get("/livez", port: server.port)
        #expect(refused.status == -1 && refused.seconds < 1, "the probe was not refused at once: \(refused)")
        #expect(server.connectionStatistics.refusedAtLimit == 9)
        #expect(server.connectionStatistics.refusedPerAddress == 0)
        #expect(Self.lines(logs, "connection limit reached").count == 1)

        #expect(try await flood.waitUntil(within: .seconds(10)) { $0.stillOpen.isEmpty })
        #expect(server.connectionStatistics.headerTimeouts == 16)
        // The flooder sees the end of its streams at the shutdown; the slots come back when libmicrohttpd
        // has read that end and closed the connections, on its own thread's next pass.
        let released = try await Poll.until(timeout: .seconds(5)) { server.connectionStatistics.open == 0 }
        #expect(released != nil, "slots still held: \(server.connectionStatistics.open)")
        try Self.expectProbesAnswer(port: server.port, "once the flooder's connections reached their deadline")
    }

    @Test("a long-poll and an event stream are past their head: the deadline does not cut them")
    func suspendedConnections() async throws {
        let (router, registry) = EventStreamTests.router()
        let server = try MicroHTTPDServer.started(
            configuration: .init(port: 0, heartbeatSeconds: 1, headerTimeout: 1),
            longPoll: { router.longPollWait(for: $0) },
            events: router,
            handler: { router.respond(to: $0) }
        )
        defer { server.stop() }
        registry.addChangeObserver { server.generationChanged($0.id) }
        let clock = ContinuousClock()
        let started = clock.now
        let waiting = try RawHTTP.send(port: server.port, "/v1/nodes?index=0&wait=3")
        defer { close(waiting) }
        let stream = try WireClient.connect(port: server.port)
        defer { close(stream) }
        WireClient.send(stream, Array("GET /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".utf8))

        // 2.5 s: past the head deadline (1 s) of both, the stream gets its heartbeats and stays open.
        let streamed = await WireClient.collect(stream, for: .milliseconds(2500))
        #expect(streamed.ending == .open, "the event stream was closed: \(streamed)")
        #expect(EventStreamTests.text(streamed.bytes).contains(": ping"))
        // The long-poll is answered when its wait ends, not cut at 1 s.
        let answer = await WireClient.collect(waiting, for: .seconds(5))
        #expect(EventStreamTests.text(answer.bytes).hasPrefix("HTTP/1.1 200"))
        #expect(started.duration(to: clock.now) >= .milliseconds(2900))
        #expect(server.connectionStatistics.headerTimeouts == 0)
    }

    @Test(
        "libmicrohttpd's own 431 and 414 answers (huge header, thousands of headers, huge URL) are counted and logged"
    )
    func libraryAnswers() throws {
        let logs = InMemoryLogHandler()
        let events = ServerEvents()
        let server = try Self.start(
            .init(port: 0, connectionLimit: 64, connectionsPerAddress: 48),
            logs: logs,
            events: events
        )
        defer { server.stop() }
        let big = [UInt8](repeating: UInt8(ascii: "a"), count: 100_000)
        let requests: [(target: [UInt8], headers: [[UInt8]], status: Int)] = [
            (Array("/livez".utf8), [Array("X-Big: ".utf8) + big], 431),
            (Array("/livez".utf8), (0..<10_000).map { Array("X-H\($0): v".utf8) }, 431),
            (Array("/v1/nodes/".utf8) + big, [], 414),
            (Array("/v1/nodes/".utf8) + big, [], 414),
        ]
        for request in requests {
            let fd = try RawHTTP.send(port: server.port, target: request.target, headers: request.headers)
            defer { close(fd) }
            #expect(try RawHTTP.statusCode(fd) == request.status)
        }
        // Counted when libmicrohttpd logs its answer (before the close the client saw, or just after).
        let counted = (0..<200).contains { _ in
            if server.connectionStatistics.rejectedByLibrary >= 4 { return true }
            usleep(10_000)
            return false
        }
        #expect(counted, "\(server.connectionStatistics)")
        #expect(server.connectionStatistics.rejectedByLibrary == 4)
        #expect(events.times(.headTooLarge).count == 2 && events.times(.uriTooLong).count == 2)
        #expect(events.times(.rejectedByLibrary).isEmpty)
        let lines = Self.lines(logs, "by libmicrohttpd")
        #expect(lines.contains { "\($0.message)".contains("answered 431 by libmicrohttpd (request head too large)") })
        #expect(lines.contains { "\($0.message)".contains("answered 414 by libmicrohttpd (request line too long)") })
        // A well-formed request still answers.
        try Self.expectProbesAnswer(port: server.port, "after the huge heads")
    }

    @Test("an error status libmicrohttpd answered itself: 431 and 414 by name, any other as one cause")
    func libraryStatuses() {
        #expect(HTTPConnectionEvent(libraryStatus: 431) == .headTooLarge)
        #expect(HTTPConnectionEvent(libraryStatus: 414) == .uriTooLong)
        #expect(HTTPConnectionEvent(libraryStatus: 400) == .rejectedByLibrary)
        #expect(HTTPConnectionEvent(libraryStatus: 505) == .rejectedByLibrary)
    }
}
