import Foundation
import GatewayTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Issue 9, part 4: hostile clients against the built binary, live, loopback only.
///
/// Each case starts its own gateway (options in the case), registers two real `erl` nodes, puts an
/// attack in place (``HostileClients``: a thread of its own, bounded in count and time), and while it is
/// in place checks (``HostileScene/expectServing(sourceLocation:)``): the gateway's pid lives; `/livez`
/// answers a client from 127.0.0.1 within 1 s; raw PORT_PLEASE2 and NAMES from a new client answer with
/// both nodes; a third erl node started during the attack registers, looks both nodes up through the
/// gateway and pings them. Then the cause is checked in `/metrics` (the family and label named in
/// briefs/metrics9.md). Each case's doc comment says what the same attack did before issue 9.
///
/// Serialized: the cases are heavy (thousands of connections, three erl nodes each) and must not
/// compound one another on a 2-core machine. Every assertion is strict.
@Suite(
    "Hostile clients, live (issue 9, part 4)",
    .serialized,
    .enabled(if: !TestBinary.isCEPMD && ExternalTool.usable("erl") && ExternalTool.usable("curl")),
    .timeLimit(.minutes(2))
)
struct HostileClientTests {
    typealias W = WireClient

    /// A keep-alive `GET path` (HTTP/1.1, no `Connection: close`).
    static func get(_ path: String) -> [UInt8] {
        Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".utf8)
    }

    /// Sleeps until `duration` has passed since `start` (a snapshot late enough to see a deadline act).
    static func sleep(until duration: Duration, since start: ContinuousClock.Instant) async throws {
        let left = duration - start.duration(to: ContinuousClock().now)
        if left > .zero { try await Task.sleep(for: left) }
    }

    /// Prints one line for the lead's before/after table.
    static func report(_ label: String, _ details: String) {
        print("[hostile] \(label): \(details)")
    }

    // MARK: - 1. Idle HTTP connections

    /// Before issue 9: 1,100 connections that sent nothing, or that made one keep-alive request, filled
    /// libmicrohttpd's 1,024 slots; `/livez`, `/readyz` and `/metrics` timed out for every other client
    /// until the 30 s inactivity timeout fired, and a client that reconnected kept them down.
    ///
    /// Options: the defaults (per-address share 128, head deadline 10 s). The flooders reconnect at once
    /// when closed.
    @Test("1. 1,100 idle and 1,100 keep-alive-then-idle HTTP connections (127.0.0.2, 127.0.0.3), reconnecting")
    func idleHTTPConnections() async throws {
        try await ConformanceFDBudget.with(2_500) {
            let scene = try await HostileScene.start()
            defer { scene.stopBlocking() }
            let before = try await scene.metrics()
            let idle = HostileClients(
                port: scene.httpPort,
                sources: ["127.0.0.2"],
                count: 1_100,
                behaviour: .idle,
                reconnect: true
            )
            let keepAlive = HostileClients(
                port: scene.httpPort,
                sources: ["127.0.0.3"],
                count: 1_100,
                behaviour: .requestThenIdle(Self.get("/livez")),
                reconnect: true
            )
            defer {
                idle.stop()
                keepAlive.stop()
            }
            try await idle.start()
            try await keepAlive.start()
            try await Task.sleep(for: .seconds(1))

            try await scene.expectServing()
            let after = try await scene.metrics()
            // Each flooder holds at most its share; the rest is refused at accept (closed at once). Counted
            // once they stop reconnecting: then what they hold is what the server admitted.
            let (idleStats, keepAliveStats) = (
                try await idle.settled(share: 128), try await keepAlive.settled(share: 128)
            )
            #expect(idleStats.open <= 128 && keepAliveStats.open <= 128, "\(idleStats) / \(keepAliveStats)")
            // (A close noticed late on a loaded machine counts as "later": both are refusals here.)
            #expect(idleStats.closedAtOnce + idleStats.closedLater >= 1_100 - 128, "\(idleStats)")
            #expect((keepAliveStats.statusCodes[200] ?? 0) >= 1, "no keep-alive request answered: \(keepAliveStats)")
            let refused = after.delta(
                before,
                "epmd_gateway_http_connections_rejected_total",
                ("reason", "per_address")
            )
            #expect(refused >= 2 * (1_100 - 128), "refused per address: \(refused)")
            let open = after["epmd_gateway_http_connections"]
            #expect(open != nil && open ?? 0 <= 2 * 128 + 8, "HTTP connections open: \(open ?? -1)")
            Self.report("1 idle HTTP", "idle \(idleStats); keep-alive \(keepAliveStats)")
        }
    }

    // MARK: - 2. HTTP slowloris

    /// Before issue 9: 1,030 connections that each sent one header byte every few seconds kept the HTTP
    /// front down for as long as they liked: the timeout measured only inactivity.
    ///
    /// Options: `--http-header-timeout 2`. 1,030 dribblers from 127.0.0.2, one byte a second, reconnecting.
    @Test("2. HTTP slowloris: 1,030 connections from 127.0.0.2 sending a header byte a second")
    func httpSlowloris() async throws {
        try await ConformanceFDBudget.with(1_200) {
            let scene = try await HostileScene.start([HostileOption("--http-header-timeout", "2")])
            defer { scene.stopBlocking() }
            let before = try await scene.metrics()
            let head =
                Array("GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ".utf8) + Array(repeating: 97, count: 200)
            let loris = HostileClients(
                port: scene.httpPort,
                sources: ["127.0.0.2"],
                count: 1_030,
                behaviour: .dribble(head),
                reconnect: true
            )
            defer { loris.stop() }
            let started = ContinuousClock().now
            try await loris.start()
            try await Task.sleep(for: .seconds(1))

            try await scene.expectServing()
            // Well past the 2 s head deadline: every dribbler admitted has been closed (and replaced).
            try await Self.sleep(until: .seconds(5), since: started)
            let after = try await scene.metrics()
            let stats = try await loris.settled(share: 128)
            #expect(stats.open <= 128, "\(stats)")
            #expect(stats.closedAtOnce + stats.closedLater >= 1_030 - 128, "\(stats)")
            #expect(stats.closedLater >= 100, "dribblers closed by the head deadline: \(stats)")
            #expect(stats.longestLifetime < .milliseconds(3_500), "a dribbler lived \(stats.longestLifetime)")
            #expect(stats.oldestOpen < .milliseconds(3_500), "a dribbler is open since \(stats.oldestOpen)")
            let timeouts = after.delta(before, "epmd_gateway_http_header_timeouts_total")
            #expect(timeouts >= 100, "head timeouts counted: \(timeouts), \(stats)")
            let refused = after.delta(
                before,
                "epmd_gateway_http_connections_rejected_total",
                ("reason", "per_address")
            )
            #expect(refused >= 1_030 - 128, "refused per address: \(refused), \(stats)")
            Self.report("2 HTTP slowloris", "\(stats)")
        }
    }

    // MARK: - 3. Descriptor exhaustion from the epmd port

    /// Before issue 9 (`ulimit -n 512`, 600 idle connections on the epmd port): `/livez` and `/metrics`
    /// timed out; a new ALIVE2 timed out; new lookups were closed with no reply; libmicrohttpd's thread
    /// spun at 100% of a core; the log grew by about 10 lines a second. The epmd listener had no cap.
    /// This case, run against the binary before the budget branch: 2.8 s of CPU in the 3 s window (three
    /// HTTP and three epmd clients waiting), none of them answered, `/livez` and lookups without answer.
    ///
    /// Options: none (the budget is derived from RLIMIT_NOFILE = 512:512, set in the child by
    /// `ulimit -n 512` before exec). 600 idle connections, 100 from each of 127.0.0.1 ... 127.0.0.6
    /// (under the per-address cap: the epmd cap itself is what bites), held.
    @Test("3. Descriptor exhaustion: RLIMIT_NOFILE 512 and 600 idle epmd connections from 127.0.0.1-6")
    func descriptorExhaustion() async throws {
        try await ConformanceFDBudget.with(800) {
            let scene = try await HostileScene.start(shellPrefix: "ulimit -n 512;")
            defer { scene.stopBlocking() }
            let before = try await scene.metrics()
            let crowd = HostileClients(
                port: scene.port,
                sources: (1...6).map { "127.0.0.\($0)" },
                count: 600,
                behaviour: .idle
            )
            defer { crowd.stop() }
            try await crowd.start()
            try await Task.sleep(for: .milliseconds(500))

            // No spin, no log flood: over 3 s, little CPU and a few lines at most, while new clients wait on
            // both ports (before issue 9, a pending HTTP connection made libmicrohttpd's accept spin on EMFILE).
            let node = Array(scene.nodes[0].name.utf8)
            var pending: (http: [Int32], epmd: [Int32]) = ([], [])
            defer { for fd in pending.http + pending.epmd { close(fd) } }
            for _ in 0..<3 {
                pending.http.append(try RawHTTP.send(port: scene.httpPort, "/livez"))
                let fd = try W.connect(port: scene.port)
                pending.epmd.append(fd)
                W.send(fd, W.frame([122] + node))
            }
            let cpuBefore = ProcessCPU.seconds(pid: scene.pid)
            let linesBefore = scene.logLines
            try await Task.sleep(for: .seconds(3))
            let cpuAfter = ProcessCPU.seconds(pid: scene.pid)
            let linesAfter = scene.logLines
            let cpu = (cpuAfter ?? 0) - (cpuBefore ?? 0)
            #expect(cpuBefore != nil && cpuAfter != nil)
            #expect(cpu < 0.3, "the gateway used \(cpu) s of CPU in 3 s (spinning?)")
            #expect(
                linesAfter - linesBefore <= 4,
                "stderr grew by \(linesAfter - linesBefore) lines in 3 s: \(scene.gateway.log.suffix(1500))"
            )
            // The clients that waited meanwhile were answered.
            for fd in pending.http {
                #expect((try? RawHTTP.statusCode(fd, timeout: 1)) == 200, "a pending /livez was not answered")
            }
            for fd in pending.epmd {
                let reply = await W.collect(fd, for: .seconds(1))
                #expect(Array(reply.bytes.prefix(4)) == [119, 0] + W.be16(Int(scene.nodePorts[0])), "\(reply)")
            }
            try await scene.expectServing()
            let after = try await scene.metrics()
            let stats = crowd.statistics
            let limit = after["epmd_connections_limit"] ?? 0
            #expect(limit > 0 && limit < 512, "epmd_connections_limit \(limit)")
            let parts = ["reserve", "epmd", "http"].map { after["epmd_gateway_descriptor_budget", ("part", $0)] }
            #expect(parts.allSatisfy { $0 != nil }, "descriptor budget parts: \(parts)")
            #expect(parts.reduce(0) { $0 + ($1 ?? 0) } <= 512, "descriptor budget parts: \(parts)")
            let evicted = after.delta(before, "epmd_connections_evicted_total", ("reason", "max_connections"))
            let refused = after.delta(before, "epmd_connections_rejected_total", ("reason", "max_connections"))
            #expect(evicted + refused >= 600 - limit, "evicted \(evicted), refused \(refused), limit \(limit)")
            #expect(evicted >= 1, "no unregistered connection was evicted at the cap")
            #expect(after.delta(before, "epmd_connections_rejected_total", ("reason", "emfile")) == 0)
            #expect(stats.closedAtOnce + stats.closedLater >= Int(600 - limit), "\(stats)")
            Self.report(
                "3 descriptor exhaustion",
                "\(crowd.statistics); gateway CPU \(cpu) s in 3 s, stderr +\(linesAfter - linesBefore) lines"
            )
        }
    }

    // MARK: - 4. epmd slowloris

    /// Before issue 9: the packet timeout already counted from connect (architecture issue), so
    /// dribblers were closed after `-packet_timeout`; C epmd 25.2.3 refreshed it on every byte (kept them
    /// for ever). Nothing capped connections per address.
    ///
    /// Options: `-packet_timeout 2`. 300 dribblers (150 from 127.0.0.1, 150 from 127.0.0.2) sending one
    /// byte a second of a PORT_PLEASE2 for a 200-byte name, reconnecting.
    @Test("4. epmd slowloris: 300 connections from 127.0.0.1 and 127.0.0.2 sending a byte a second")
    func epmdSlowloris() async throws {
        try await ConformanceFDBudget.with(400) {
            let scene = try await HostileScene.start([HostileOption("-packet_timeout", "2")])
            defer { scene.stopBlocking() }
            let before = try await scene.metrics()
            let loris = HostileClients(
                port: scene.port,
                sources: ["127.0.0.1", "127.0.0.2"],
                count: 300,
                behaviour: .dribble(W.frame([122] + Array(repeating: 110, count: 200))),
                reconnect: true
            )
            defer { loris.stop() }
            try await loris.start()
            try await Task.sleep(for: .seconds(1))

            try await scene.expectServing()
            try await Task.sleep(for: .seconds(1))
            let after = try await scene.metrics()
            let stats = loris.statistics
            // Closed by the packet timeout (2 s from connect) or evicted: none lives past ~3.5 s.
            #expect(stats.longestLifetime < .milliseconds(3_500), "a dribbler lived \(stats.longestLifetime)")
            #expect(stats.oldestOpen < .milliseconds(3_500), "a dribbler is open since \(stats.oldestOpen)")
            #expect(stats.closedAtOnce + stats.closedLater >= 300, "\(stats)")
            let timeouts = after.delta(before, "epmd_connection_timeouts_total")
            let evicted = after.delta(before, "epmd_connections_evicted_total", ("reason", "per_address"))
            #expect(timeouts + evicted >= 300, "timeouts \(timeouts), evicted per address \(evicted): \(stats)")
            #expect(timeouts >= 1, "no packet timeout counted")
            Self.report("4 epmd slowloris", "\(stats); timeouts \(timeouts), evicted per address \(evicted)")
        }
    }

    // MARK: - 5. Half-closed and vanishing connections

    /// Before issue 9: the epmd loop closed a half-closed connection at its EOF; libmicrohttpd kept a
    /// half-closed connection with a partial head open until its 30 s inactivity timeout (128 of them per
    /// address held that address's whole share).
    ///
    /// Options: `--http-header-timeout 2`. On each port: 1,000 clients from 127.0.0.2 that send a partial
    /// frame or head and `shutdown(SHUT_WR)` (reconnecting when closed), and waves of 500 from 127.0.0.3
    /// that connect and close at once, every second.
    @Test("5. Thousands of half-closed and connect-then-vanish connections on both ports")
    func halfClosedConnections() async throws {
        try await ConformanceFDBudget.with(2_500) {
            let scene = try await HostileScene.start([HostileOption("--http-header-timeout", "2")])
            defer { scene.stopBlocking() }
            let before = try await scene.metrics()
            let crowds = [
                HostileClients(
                    port: scene.port,
                    sources: ["127.0.0.2"],
                    count: 1_000,
                    behaviour: .halfClose([0, 30, 122, 110, 111]),
                    reconnect: true
                ),
                HostileClients(port: scene.port, sources: ["127.0.0.3"], count: 500, behaviour: .vanish),
                HostileClients(
                    port: scene.httpPort,
                    sources: ["127.0.0.2"],
                    count: 1_000,
                    behaviour: .halfClose(Array("GET /livez HTTP/1.1\r\nHo".utf8)),
                    reconnect: true
                ),
                HostileClients(port: scene.httpPort, sources: ["127.0.0.3"], count: 500, behaviour: .vanish),
            ]
            defer { for crowd in crowds { crowd.stop() } }
            let started = ContinuousClock().now
            for crowd in crowds { try await crowd.start() }
            try await Task.sleep(for: .seconds(1))

            try await scene.expectServing()
            // Well past the 2 s head deadline.
            try await Self.sleep(until: .seconds(5), since: started)
            let after = try await scene.metrics()
            let stats = crowds.map(\.statistics)
            // The epmd loop closes a half-closed connection at its EOF.
            #expect(stats[0].oldestOpen < .seconds(1), "half-closed epmd connection left open: \(stats[0])")
            #expect(stats[0].closedAtOnce + stats[0].closedLater >= 1_000, "\(stats[0])")
            #expect(stats[1].oneShots >= 1_000 && stats[3].oneShots >= 1_000, "\(stats[1]) / \(stats[3])")
            // Counted: every connection accepted, none left open on the epmd port (two registrations).
            let accepted = after.delta(before, "epmd_connections_accepted_total")
            #expect(accepted >= 3_000, "epmd connections accepted: \(accepted)")
            // ... and closed at their EOF, counted by cause.
            let peerClosed = after.delta(before, "epmd_connections_closed_total", ("reason", "peer_closed"))
            #expect(peerClosed >= 1_000, "epmd connections closed at the peer's EOF: \(peerClosed)")
            #expect(
                stats[2].oldestOpen < .milliseconds(3_500),
                "half-closed HTTP connection left open: \(stats[2])"
            )
            #expect(stats[2].closedLater >= 1, "\(stats[2])")
            let timeouts = after.delta(before, "epmd_gateway_http_header_timeouts_total")
            #expect(timeouts >= 100, "head timeouts: \(timeouts), \(stats[2])")
            for crowd in crowds { crowd.stop() }
            let settled = try await Poll.until(timeout: .seconds(5)) {
                let now = try await scene.metrics()
                return (now["epmd_connections"] ?? 99) <= 2 && (now["epmd_gateway_http_connections"] ?? 0) <= 1
            }
            #expect(settled != nil, "connections left open after the crowds stopped")
            Self.report(
                "5 half-closed/vanish",
                stats.map(\.description).joined(separator: " | ") + "; epmd peer_closed \(peerClosed)"
            )
        }
    }

    // MARK: - 6. Clients that never read

    /// Before issue 9: held up (300 clients that never read a 229 KB NAMES reply).
    ///
    /// Options: the defaults. 1,000 raw ALIVE2 registrations with 200-byte names (NAMES about 220 KB,
    /// `/v1/nodes` about 390 KB), then 300 NAMES clients (127.0.0.2-4) and 240 HTTP clients (`/v1/nodes`
    /// from 127.0.0.2, `/metrics` from 127.0.0.3) that never read.
    @Test("6. Clients that never read a large NAMES, /v1/nodes or /metrics answer")
    func clientsThatNeverRead() async throws {
        try await ConformanceFDBudget.with(1_800) {
            let scene = try await HostileScene.start()
            defer { scene.stopBlocking() }
            let registered = try await Self.registerThousand(port: scene.port)
            defer { for fd in registered { close(fd) } }
            let before = try await scene.metrics()
            let crowds = [
                HostileClients(
                    port: scene.port,
                    sources: ["127.0.0.2", "127.0.0.3", "127.0.0.4"],
                    count: 300,
                    behaviour: .neverRead(W.frame([110]))
                ),
                HostileClients(
                    port: scene.httpPort,
                    sources: ["127.0.0.2"],
                    count: 120,
                    behaviour: .neverRead(Self.get("/v1/nodes"))
                ),
                HostileClients(
                    port: scene.httpPort,
                    sources: ["127.0.0.3"],
                    count: 120,
                    behaviour: .neverRead(Self.get("/metrics"))
                ),
            ]
            defer { for crowd in crowds { crowd.stop() } }
            for crowd in crowds { try await crowd.start() }
            try await Task.sleep(for: .seconds(1))

            try await scene.expectServing()
            let after = try await scene.metrics()
            let stats = crowds.map(\.statistics)
            let namesAnswered = after.delta(before, "epmd_requests_total", ("request", "names"), ("result", "ok"))
            #expect(namesAnswered >= 300, "NAMES counted: \(namesAnswered)")
            let nodes = after.delta(before, "http_requests_total", ("code", "200"), ("route", "/v1/nodes"))
            #expect(nodes >= 120, "/v1/nodes counted: \(nodes)")
            let metrics = after.delta(before, "http_requests_total", ("code", "200"), ("route", "/metrics"))
            #expect(metrics >= 120, "/metrics counted: \(metrics)")
            #expect(stats.allSatisfy { $0.connectFailures == 0 }, "\(stats)")
            Self.report("6 never read", stats.map(\.description).joined(separator: " | "))
        }
    }

    /// Finding of this suite (not in the list). Before: with `--metrics-node-info` and 1,000
    /// nodes, `/metrics` is about 260 KB and took about 20-75 ms to render (debug build), most of it the
    /// `epmd_node_info` block; 120 scrapes at once from 127.0.0.3 (within its per-address share) kept
    /// libmicrohttpd's one worker thread busy for 3-9 s, and `/livez` from 127.0.0.1 waited as long.
    /// Now the block is made once per registry generation (``NodeInfoCache``, each registration's line
    /// kept while it lives): a scrape takes about 2 ms and `/livez` answers within 1 s.
    ///
    /// Options: `--metrics-node-info`. 1,000 raw registrations with 200-byte names, then 120 clients
    /// from 127.0.0.3 that each request `/metrics` and never read.
    @Test("6b. 120 /metrics scrapes at once with --metrics-node-info and 1,000 nodes: /livez still answers")
    func metricsScrapeBurst() async throws {
        try await ConformanceFDBudget.with(1_300) {
            let scene = try await HostileScene.start([HostileOption("--metrics-node-info")])
            defer { scene.stopBlocking() }
            let registered = try await Self.registerThousand(port: scene.port)
            defer { for fd in registered { close(fd) } }
            let before = try await scene.metrics()
            let scrapers = HostileClients(
                port: scene.httpPort,
                sources: ["127.0.0.3"],
                count: 120,
                behaviour: .neverRead(Self.get("/metrics"))
            )
            defer { scrapers.stop() }
            try await scrapers.start()
            try await Task.sleep(for: .milliseconds(300))
            try await scene.expectLivez()
            try await scene.expectServing()
            // Every scrape of the burst was answered (and counted); the exposition lists every node.
            var after = before
            let served = try await Poll.until(timeout: .seconds(5)) {
                after = try await scene.metrics()
                return after.delta(before, "http_requests_total", ("code", "200"), ("route", "/metrics")) >= 120
            }
            let scrapes = after.delta(before, "http_requests_total", ("code", "200"), ("route", "/metrics"))
            #expect(served != nil, "/metrics answered \(scrapes) times")
            let series = after.samples.keys.filter { $0.hasPrefix("epmd_node_info{") }.count
            #expect(series >= 1_002, "epmd_node_info series: \(series)")
            #expect(scrapers.statistics.connectFailures == 0, "\(scrapers.statistics)")
            Self.report("6b metrics burst", "\(scrapers.statistics); /metrics answered \(scrapes) times")
        }
    }

    /// Registers 1,000 names of 200 bytes with raw ALIVE2 clients from 127.0.0.1; returns their connections.
    static func registerThousand(port: UInt16) async throws -> [Int32] {
        let names = (0..<1_000).map { "r\($0)_" + String(repeating: "x", count: 190) }
        let registered = try await W.registerMany(port: port, names: names) { UInt16(10_000 + $0) }
        #expect(registered.allSatisfy { $0.reply.prefix(2) == [118, 0] })
        return registered.map(\.fd)
    }

    // MARK: - 7. Clients that reset

    /// Before issue 9: held up (3,000 clients that reset).
    ///
    /// Options: the defaults. Every second, on each port: 1,000 clients from 127.0.0.2 that send part of a
    /// request and reset (SO_LINGER 0), and 500 from 127.0.0.3 that send a whole request (NAMES,
    /// `GET /metrics`) and reset before the answer is read.
    @Test("7. Thousands of clients that reset mid-request on both ports")
    func clientsThatReset() async throws {
        try await ConformanceFDBudget.with(3_200) {
            let scene = try await HostileScene.start()
            defer { scene.stopBlocking() }
            let before = try await scene.metrics()
            let crowds = [
                HostileClients(
                    port: scene.port,
                    sources: ["127.0.0.2"],
                    count: 1_000,
                    behaviour: .reset([0, 30, 122, 110])
                ),
                HostileClients(port: scene.port, sources: ["127.0.0.3"], count: 500, behaviour: .reset(W.frame([110]))),
                HostileClients(
                    port: scene.httpPort,
                    sources: ["127.0.0.2"],
                    count: 1_000,
                    behaviour: .reset(Array("GET /v1/nodes HTTP/1.1\r\nHost: 127.0.0.1\r\nX-".utf8))
                ),
                HostileClients(
                    port: scene.httpPort,
                    sources: ["127.0.0.3"],
                    count: 500,
                    behaviour: .reset(Self.get("/metrics"))
                ),
            ]
            defer { for crowd in crowds { crowd.stop() } }
            for crowd in crowds { try await crowd.start() }
            try await Task.sleep(for: .seconds(1))

            try await scene.expectServing()
            let after = try await scene.metrics()
            let stats = crowds.map(\.statistics)
            #expect(stats[0].oneShots + stats[1].oneShots >= 3_000, "\(stats)")
            #expect(stats[2].oneShots + stats[3].oneShots >= 3_000, "\(stats)")
            let accepted = after.delta(before, "epmd_connections_accepted_total")
            #expect(accepted >= 3_000, "epmd connections accepted: \(accepted)")
            // The resets are counted by cause (a reset read as an error; a reset noticed after the reply, or
            // after an end of file, as the peer's close).
            let ioErrors = after.delta(before, "epmd_connections_closed_total", ("reason", "io_error"))
            let peerClosed = after.delta(before, "epmd_connections_closed_total", ("reason", "peer_closed"))
            let answered = after.delta(before, "epmd_connections_closed_total", ("reason", "answered"))
            #expect(ioErrors >= 1, "no reset counted as io_error (peer_closed \(peerClosed), answered \(answered))")
            #expect(ioErrors + peerClosed + answered >= 3_000, "io_error \(ioErrors), peer_closed \(peerClosed)")
            for crowd in crowds { crowd.stop() }
            let settled = try await Poll.until(timeout: .seconds(5)) {
                let now = try await scene.metrics()
                return (now["epmd_connections"] ?? 99) <= 2 && (now["epmd_gateway_http_connections"] ?? 0) <= 1
            }
            #expect(settled != nil, "connections left open after the resets stopped")
            Self.report(
                "7 resets",
                stats.map(\.description).joined(separator: " | ")
                    + "; epmd closes: io_error \(ioErrors), peer_closed \(peerClosed), answered \(answered)"
            )
        }
    }

    // MARK: - 8. Huge headers and URLs

    /// Before issue 9: libmicrohttpd answered 431 (100 KB header, 10,000 headers) and 414 (100 KB URL)
    /// itself, at once; the answers were not counted in `/metrics`. Now they are, read from
    /// libmicrohttpd's own log line (`epmd_gateway_http_requests_rejected_total{reason}`).
    ///
    /// Options: the defaults. 30 clients of each kind from 127.0.0.2, at once.
    @Test("8. Huge headers and URLs (100 KB header, 100 KB URL, 10,000 headers): a 4xx or a close, never a hang")
    func hugeHeadersAndURLs() async throws {
        try await ConformanceFDBudget.with(200) {
            let scene = try await HostileScene.start()
            defer { scene.stopBlocking() }
            let before = try await scene.metrics()
            let big = String(repeating: "a", count: 100_000)
            let requests: [[UInt8]] = [
                Array("GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: \(big)\r\n\r\n".utf8),
                Array("GET /v1/nodes/\(big) HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".utf8),
                Array("GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n".utf8)
                    + (0..<10_000).flatMap { Array("X-H\($0): v\r\n".utf8) } + Array("\r\n".utf8),
            ]
            let crowds = requests.map {
                HostileClients(port: scene.httpPort, sources: ["127.0.0.2"], count: 30, behaviour: .requestThenIdle($0))
            }
            defer { for crowd in crowds { crowd.stop() } }
            for crowd in crowds { try await crowd.start() }

            try await scene.expectServing()
            // Never a hang: within 5 s every client got an answer or was closed, and every answer is a 4xx.
            let answered = try await Poll.until(timeout: .seconds(5)) {
                crowds.allSatisfy { $0.statistics.silent == 0 }
            }
            let stats = crowds.map(\.statistics)
            #expect(answered != nil, "a client with a huge request hangs: \(stats)")
            for crowdStats in stats {
                let answers = crowdStats.statusCodes.values.reduce(0, +)
                #expect(answers + crowdStats.closedAtOnce + crowdStats.closedLater >= 30, "\(crowdStats)")
                #expect(crowdStats.statusCodes.keys.allSatisfy { [400, 413, 414, 431].contains($0) }, "\(crowdStats)")
            }
            for crowd in crowds { crowd.stop() }
            let settled = try await Poll.until(timeout: .seconds(5)) {
                (try await scene.metrics()["epmd_gateway_http_connections"] ?? 0) <= 1
            }
            #expect(settled != nil)
            // Counted by cause: every 431 and 414 libmicrohttpd answered itself.
            let answered431 = stats[0].statusCodes[431, default: 0] + stats[2].statusCodes[431, default: 0]
            let answered414 = stats[1].statusCodes[414, default: 0]
            let after = try await scene.metrics()
            let tooLarge = after.delta(
                before,
                "epmd_gateway_http_requests_rejected_total",
                ("reason", "header_too_large")
            )
            let tooLong = after.delta(before, "epmd_gateway_http_requests_rejected_total", ("reason", "uri_too_long"))
            #expect(tooLarge >= Double(max(answered431, 1)), "431 counted \(tooLarge), seen \(answered431)")
            #expect(tooLong >= Double(max(answered414, 1)), "414 counted \(tooLong), seen \(answered414)")
            Self.report(
                "8 huge heads",
                stats.map(\.description).joined(separator: " | ") + "; counted 431 \(tooLarge), 414 \(tooLong)"
            )
        }
    }

    // MARK: - 9. Thousands of idle keep-alive connections

    /// Before issue 9: as case 1, for as long as the flooder liked (a keep-alive connection that
    /// reconnects within 30 s holds a slot for ever); 1,024 of them took every slot.
    ///
    /// Options: `--http-header-timeout 2`. 2,000 clients from 127.0.0.2 that make one keep-alive request
    /// and idle, reconnecting when closed.
    @Test("9. 2,000 idle keep-alive HTTP connections from 127.0.0.2, reconnecting")
    func idleKeepAliveConnections() async throws {
        try await ConformanceFDBudget.with(2_300) {
            let scene = try await HostileScene.start([HostileOption("--http-header-timeout", "2")])
            defer { scene.stopBlocking() }
            let before = try await scene.metrics()
            let crowd = HostileClients(
                port: scene.httpPort,
                sources: ["127.0.0.2"],
                count: 2_000,
                behaviour: .requestThenIdle(Self.get("/livez")),
                reconnect: true
            )
            defer { crowd.stop() }
            let started = ContinuousClock().now
            try await crowd.start()
            try await Task.sleep(for: .seconds(1))

            try await scene.expectServing()
            // Well past the 2 s head deadline (counted from the end of each keep-alive response).
            try await Self.sleep(until: .seconds(5), since: started)
            let after = try await scene.metrics()
            let stats = try await crowd.settled(share: 128)
            #expect(stats.open <= 128, "\(stats)")
            #expect((stats.statusCodes[200] ?? 0) >= 100, "\(stats)")
            #expect(stats.closedLater >= 100, "keep-alive connections closed by the head deadline: \(stats)")
            #expect(
                stats.oldestOpen < .milliseconds(3_500),
                "a keep-alive connection is open since \(stats.oldestOpen)"
            )
            let timeouts = after.delta(before, "epmd_gateway_http_header_timeouts_total")
            #expect(timeouts >= 100, "head timeouts counted: \(timeouts)")
            let refused = after.delta(
                before,
                "epmd_gateway_http_connections_rejected_total",
                ("reason", "per_address")
            )
            #expect(refused >= 2_000 - 128, "refused per address: \(refused)")
            Self.report("9 idle keep-alive", "\(stats)")
        }
    }
}
