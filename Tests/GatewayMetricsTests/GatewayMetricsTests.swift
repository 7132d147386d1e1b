import EPMDProtocol
import EPMDRegistry
import EPMDServer
import Logging
import Synchronization
import Testing

@testable import GatewayMetrics

#if canImport(Glibc)
import Glibc
#endif

@Suite struct GatewayMetricsTests {
    static let routes = ["/", "/livez", "/metrics", "/v1/nodes", "/v1/nodes/{name}", "other"]

    static func make(nodeInfo: Bool = false) -> GatewayMetrics {
        GatewayMetrics(
            build: BuildInfo(version: "9.8.7", libmicrohttpdVersion: "0.9.75", swiftVersion: "6.3.1"),
            httpRoutes: Self.routes,
            nodeInfo: nodeInfo,
            logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })
        )
    }

    /// A registry whose clock the test moves.
    final class TestClock: Sendable {
        private let now = Mutex<Double>(1_000_000)
        func advance(_ seconds: Double) { self.now.withLock { $0 += seconds } }
        var value: Double { self.now.withLock { $0 } }
    }

    static func register(
        _ registry: NodeRegistry,
        _ name: String,
        id: UInt64,
        port: UInt16 = 4000,
        type: UInt8 = 77
    ) throws {
        _ = try registry.register(
            Alive2Request(port: port, nodeType: type, name: Array(name.utf8)),
            connection: ConnectionID(id),
            fd: 3,
            peer: "127.0.0.1"
        ).get()
    }

    static func scrape(
        _ metrics: GatewayMetrics,
        _ registry: NodeRegistry = NodeRegistry(),
        open: Int = 0,
        watchers: Int? = 0
    ) -> ParsedExposition {
        let parsed = ParsedExposition(
            metrics.exposition(registry: registry, openConnections: open, eventWatchers: watchers)
        )
        #expect(parsed.errors.isEmpty, "unparsable lines: \(parsed.errors)")
        return parsed
    }

    @Test("a fresh exposition has every pre-made series at 0, build info at 1, and HELP/TYPE for every family")
    func fresh() {
        let parsed = Self.scrape(Self.make(), open: 7, watchers: 3)
        for reason in UnregisterReason.allCases {
            #expect(parsed["epmd_unregistrations_total", ("reason", reason.rawValue)] == 0)
        }
        for (kind, results) in LoopMetrics.requestResults {
            for result in results {
                #expect(parsed["epmd_requests_total", ("request", kind.label), ("result", result.rawValue)] == 0)
            }
            #expect(parsed["epmd_request_duration_seconds_count", ("request", kind.label)] == 0)
            #expect(
                parsed["epmd_request_duration_seconds_bucket", ("request", kind.label), ("le", "0.00005")] == 0
            )
            #expect(parsed["epmd_request_duration_seconds_bucket", ("request", kind.label), ("le", "0.5")] == 0)
        }
        #expect(parsed["epmd_requests_total", ("request", "names"), ("result", "refused")] == nil)
        // Every reason of the loop's closed reason types, made at 0; no `other`, since no reason can be unknown.
        for reason in EPMDMalformedReason.allCases.map(\.label) {
            #expect(parsed["epmd_malformed_packets_total", ("reason", reason)] == 0)
        }
        for reason in NodeRegistryError.allCases.map(\.label) {
            #expect(parsed["epmd_registration_failures_total", ("reason", reason)] == 0)
        }
        for reason in EPMDRefusalReason.allCases.map(\.label) {
            #expect(parsed["epmd_connections_rejected_total", ("reason", reason)] == 0)
        }
        #expect(LoopMetrics.malformedReasons.count == EPMDMalformedReason.allCases.count)
        #expect(
            LoopMetrics.malformedReasons.contains("invalid_length")
                && LoopMetrics.malformedReasons.contains("not_local")
        )
        #expect(LoopMetrics.rejectionReasons == ["emfile", "enfile", "no_memory", "accept_error", "max_connections"])
        for reason in EPMDEvictionReason.allCases.map(\.label) {
            #expect(parsed["epmd_connections_evicted_total", ("reason", reason)] == 0)
        }
        #expect(LoopMetrics.evictionReasons == ["max_connections", "per_address"])
        for reason in CloseReason.labels {
            #expect(parsed["epmd_connections_closed_total", ("reason", reason)] == 0, "\(reason)")
        }
        for reason in ["header_too_large", "uri_too_long", "malformed"] {
            #expect(parsed["epmd_gateway_http_requests_rejected_total", ("reason", reason)] == 0, "\(reason)")
        }
        #expect(parsed["epmd_connections_limit"] == 0)
        for part in ["reserve", "epmd", "http"] {
            #expect(parsed["epmd_gateway_descriptor_budget", ("part", part)] == 0)
        }
        for family in [
            "epmd_malformed_packets_total", "epmd_registration_failures_total", "epmd_connections_rejected_total",
            "epmd_connections_evicted_total", "epmd_connections_closed_total",
        ] {
            #expect(parsed[family, ("reason", "other")] == nil)
        }
        for type in ["normal", "hidden", "other"] { #expect(parsed["epmd_nodes", ("type", type)] == 0) }
        #expect(parsed["epmd_registrations_total"] == 0)
        #expect(parsed["epmd_node_flaps_total"] == 0)
        #expect(parsed["epmd_node_lifetime_seconds_count"] == 0)
        #expect(parsed["epmd_node_lifetime_seconds_bucket", ("le", "86400.0")] == 0)
        #expect(parsed["epmd_connections"] == 7)
        #expect(parsed["epmd_event_watchers"] == 3)
        #expect(parsed["epmd_registry_generation"] == 0)
        #expect(parsed["epmd_gateway_http_up"] == 0)
        #expect(
            parsed[
                "epmd_gateway_build_info",
                ("version", "9.8.7"),
                ("swift_version", "6.3.1"),
                ("libmicrohttpd_version", "0.9.75")
            ] == 1
        )
        #expect(parsed.types["epmd_request_duration_seconds"] == "histogram")
        #expect(parsed.types["epmd_node_lifetime_seconds"] == "histogram")
        #expect(parsed.types["process_cpu_seconds_total"] == "counter")
        #expect(parsed.types["epmd_nodes"] == "gauge")
        // No HTTP series before the first request, no node info unless enabled.
        #expect(parsed.types["http_requests_total"] == nil)
        #expect(parsed.types["epmd_node_info"] == nil)

        // Every sample belongs to a family with HELP and TYPE; counters end in _total.
        for name in Set(parsed.sampleNames) {
            let family = parsed.family(of: name)
            #expect(parsed.types[family] != nil, "no TYPE for \(name)")
            #expect(parsed.help[family].map { !$0.isEmpty } == true, "no HELP for \(name)")
            if parsed.types[family] == "counter" { #expect(family.hasSuffix("_total"), "\(family)") }
        }
        // Each series is written once.
        #expect(Set(parsed.seriesKeys).count == parsed.seriesKeys.count)
    }

    @Test("the loop's instruments land in the right series")
    func instruments() {
        let metrics = Self.make()
        for seconds in [0.00003, 0.0002, 0.0002, 0.003] {
            metrics.loop.requestServed(.portPlease2, result: .ok, seconds: seconds)
        }
        metrics.loop.requestServed(.portPlease2, result: .notFound, seconds: 0.00002)
        metrics.loop.requestServed(.names, result: .ok, seconds: 0.7)
        // A pair the loop never produces today is still counted (made on first use, then reused).
        metrics.loop.requestServed(.names, result: .refused, seconds: 0.0001)
        metrics.loop.requestServed(.names, result: .refused, seconds: 0.0001)
        metrics.loop.connectionAccepted()
        metrics.loop.connectionAccepted()
        metrics.loop.connectionRejected(.emfile)
        metrics.loop.connectionRejected(.acceptError)
        metrics.loop.packetMalformed(.protocolError(.unknownCode))
        metrics.loop.packetMalformed(.protocolError(.unknownCode))
        metrics.loop.packetMalformed(.notLocal)
        metrics.loop.packetMalformed(.strayData)
        metrics.loop.registrationFailed(.nameInUse)
        metrics.loop.connectionTimedOut()

        let parsed = Self.scrape(metrics)
        #expect(parsed["epmd_requests_total", ("request", "port_please2"), ("result", "ok")] == 4)
        #expect(parsed["epmd_requests_total", ("request", "port_please2"), ("result", "not_found")] == 1)
        #expect(parsed["epmd_requests_total", ("request", "names"), ("result", "ok")] == 1)
        #expect(parsed["epmd_requests_total", ("request", "names"), ("result", "refused")] == 2)
        let lookups: [(String, Double)] = [
            ("0.00005", 2), ("0.0001", 2), ("0.00025", 4), ("0.0025", 4), ("0.005", 5), ("0.5", 5), ("+Inf", 5),
        ]
        for (le, count) in lookups {
            #expect(
                parsed["epmd_request_duration_seconds_bucket", ("request", "port_please2"), ("le", le)] == count,
                "le=\(le)"
            )
        }
        #expect(parsed["epmd_request_duration_seconds_count", ("request", "port_please2")] == 5)
        let sum = parsed["epmd_request_duration_seconds_sum", ("request", "port_please2")] ?? 0
        #expect(abs(sum - 0.00345) < 1e-6)
        #expect(parsed["epmd_request_duration_seconds_bucket", ("request", "names"), ("le", "0.5")] == 2)
        #expect(parsed["epmd_request_duration_seconds_bucket", ("request", "names"), ("le", "+Inf")] == 3)
        #expect(parsed["epmd_connections_accepted_total"] == 2)
        #expect(parsed["epmd_connections_rejected_total", ("reason", "emfile")] == 1)
        #expect(parsed["epmd_connections_rejected_total", ("reason", "accept_error")] == 1)
        #expect(parsed["epmd_connections_rejected_total", ("reason", "other")] == nil)
        #expect(parsed["epmd_malformed_packets_total", ("reason", "unknown_code")] == 2)
        #expect(parsed["epmd_malformed_packets_total", ("reason", "not_local")] == 1)
        #expect(parsed["epmd_malformed_packets_total", ("reason", "stray_data")] == 1)
        #expect(parsed["epmd_malformed_packets_total", ("reason", "other")] == nil)
        #expect(parsed["epmd_registration_failures_total", ("reason", "name_in_use")] == 1)
        #expect(parsed["epmd_connection_timeouts_total"] == 1)
    }

    @Test("epmd connections closed, by reason: each reason counted under its label")
    func closes() {
        let metrics = Self.make()
        metrics.loop.connectionClosed(.peerClosed)
        metrics.loop.connectionClosed(.peerClosed)
        metrics.loop.connectionClosed(.ioError)
        metrics.loop.connectionClosed(.malformed(.unknownCode))
        metrics.loop.connectionClosed(.notLocal(.alive2Request))
        metrics.loop.connectionClosed(.answered)
        metrics.loop.connectionClosed(.evicted)
        let parsed = Self.scrape(metrics)
        let expected: [String: Double] = [
            "peer_closed": 2, "io_error": 1, "malformed": 1, "not_local": 1, "answered": 1, "evicted": 1,
        ]
        for label in CloseReason.labels {
            #expect(parsed["epmd_connections_closed_total", ("reason", label)] == expected[label] ?? 0, "\(label)")
        }
        #expect(parsed.types["epmd_connections_closed_total"] == "counter")
    }

    @Test("evictions and cap refusals by reason; the connection cap and the descriptor budget as gauges")
    func admission() {
        let metrics = Self.make()
        metrics.loop.connectionEvicted(.perAddress)
        metrics.loop.connectionEvicted(.perAddress)
        metrics.loop.connectionEvicted(.maxConnections)
        metrics.loop.connectionRejected(.maxConnections)
        metrics.loop.limits(maxConnections: 19312, reserve: 66, epmd: 19312, http: 622)
        let parsed = Self.scrape(metrics)
        #expect(parsed["epmd_connections_evicted_total", ("reason", "per_address")] == 2)
        #expect(parsed["epmd_connections_evicted_total", ("reason", "max_connections")] == 1)
        #expect(parsed["epmd_connections_rejected_total", ("reason", "max_connections")] == 1)
        #expect(parsed["epmd_connections_rejected_total", ("reason", "emfile")] == 0)
        #expect(parsed["epmd_connections_limit"] == 19312)
        #expect(parsed["epmd_gateway_descriptor_budget", ("part", "reserve")] == 66)
        #expect(parsed["epmd_gateway_descriptor_budget", ("part", "epmd")] == 19312)
        #expect(parsed["epmd_gateway_descriptor_budget", ("part", "http")] == 622)
        // EMFILE lowers the cap in force.
        metrics.loop.connectionLimitChanged(200)
        #expect(Self.scrape(metrics)["epmd_connections_limit"] == 200)
    }

    @Test("registry events: registrations, unregistrations by reason, lifetimes, flaps; scrape-time gauges")
    func registryEvents() throws {
        let clock = TestClock()
        let registry = NodeRegistry(flapWindow: 10, clock: { clock.value })
        let metrics = Self.make()
        registry.addChangeObserver { metrics.registry.record($0) }

        try Self.register(registry, "a", id: 1)
        try Self.register(registry, "b", id: 2)
        try Self.register(registry, "h", id: 3, type: 72)
        try Self.register(registry, "x", id: 4, type: 1)
        clock.advance(3)
        registry.unregister(connection: ConnectionID(2))  // 3 s: a flap
        clock.advance(100)
        registry.unregister(connection: ConnectionID(4), reason: .strayData)  // 103 s
        _ = registry.unregister(name: Array("h".utf8))  // STOP, 103 s
        try Self.register(registry, "b", id: 5)

        let parsed = Self.scrape(metrics, registry)
        #expect(parsed["epmd_nodes", ("type", "normal")] == 2)
        #expect(parsed["epmd_nodes", ("type", "hidden")] == 0)
        #expect(parsed["epmd_nodes", ("type", "other")] == 0)
        #expect(parsed["epmd_registrations_total"] == 5)
        #expect(parsed["epmd_unregistrations_total", ("reason", "closed")] == 1)
        #expect(parsed["epmd_unregistrations_total", ("reason", "stray_data")] == 1)
        #expect(parsed["epmd_unregistrations_total", ("reason", "stop")] == 1)
        #expect(parsed["epmd_unregistrations_total", ("reason", "shutdown")] == 0)
        #expect(parsed["epmd_node_flaps_total"] == 1)
        #expect(parsed["epmd_node_lifetime_seconds_count"] == 3)
        #expect(parsed["epmd_node_lifetime_seconds_bucket", ("le", "1.0")] == 0)
        #expect(parsed["epmd_node_lifetime_seconds_bucket", ("le", "5.0")] == 1)
        #expect(parsed["epmd_node_lifetime_seconds_bucket", ("le", "60.0")] == 1)
        #expect(parsed["epmd_node_lifetime_seconds_bucket", ("le", "300.0")] == 3)
        #expect(parsed["epmd_node_lifetime_seconds_sum"].map { abs($0 - 209) < 1e-6 } == true)
        #expect(parsed["epmd_registry_generation"] == 8)
    }

    @Test("HTTP requests are counted by route template and code; unknown routes and codes are 'other'")
    func http() {
        let metrics = Self.make()
        metrics.http.httpRequest(route: "/v1/nodes", status: 200, seconds: 0.0003)
        metrics.http.httpRequest(route: "/v1/nodes", status: 200, seconds: 0.0003)
        metrics.http.httpRequest(route: "/v1/nodes", status: 304, seconds: 0.00001)
        metrics.http.httpRequest(route: "/v1/nodes/{name}", status: 404, seconds: 0.2)
        metrics.http.httpRequest(route: "/some/raw/path/with/a/name", status: 404, seconds: 0.001)
        metrics.http.httpRequest(route: "/livez", status: 1234, seconds: -1)
        metrics.http.httpRequest(route: "/livez", status: 200, seconds: .nan)
        metrics.http.httpFrontStarted(true)

        let parsed = Self.scrape(metrics)
        #expect(parsed["http_requests_total", ("route", "/v1/nodes"), ("code", "200")] == 2)
        #expect(parsed["http_requests_total", ("route", "/v1/nodes"), ("code", "304")] == 1)
        #expect(parsed["http_requests_total", ("route", "/v1/nodes/{name}"), ("code", "404")] == 1)
        #expect(parsed["http_requests_total", ("route", "other"), ("code", "404")] == 1)
        #expect(parsed["http_requests_total", ("route", "/livez"), ("code", "other")] == 1)
        #expect(parsed["http_requests_total", ("route", "/livez"), ("code", "200")] == 1)
        #expect(parsed["http_request_duration_seconds_count", ("route", "/v1/nodes")] == 3)
        #expect(parsed["http_request_duration_seconds_bucket", ("route", "/v1/nodes"), ("le", "0.00005")] == 1)
        #expect(parsed["http_request_duration_seconds_bucket", ("route", "/v1/nodes"), ("le", "0.0005")] == 3)
        #expect(parsed["http_request_duration_seconds_bucket", ("route", "/livez"), ("le", "0.00005")] == 2)
        #expect(parsed["http_request_duration_seconds_count", ("route", "other")] == 1)
        #expect(parsed["epmd_gateway_http_up"] == 1)
        let routes = Set(parsed.seriesKeys.filter { $0.hasPrefix("http_requests_total") })
        #expect(routes.count == 6)

        metrics.http.httpFrontStarted(false)
        #expect(Self.scrape(metrics)["epmd_gateway_http_up"] == 0)
    }

    @Test("event watchers: an explicit count wins; otherwise the registered source is read at scrape")
    func eventWatchers() {
        let metrics = Self.make()
        #expect(Self.scrape(metrics, watchers: nil)["epmd_event_watchers"] == 0)
        let count = Atomic<Int>(4)
        metrics.http.readEventWatchers { count.load(ordering: .relaxed) }
        #expect(Self.scrape(metrics, watchers: nil)["epmd_event_watchers"] == 4)
        count.store(2, ordering: .relaxed)
        #expect(Self.scrape(metrics, watchers: nil)["epmd_event_watchers"] == 2)
        #expect(Self.scrape(metrics, watchers: 9)["epmd_event_watchers"] == 9)
    }

    @Test("epmd_node_info: only when enabled; label values escaped and read back intact")
    func nodeInfo() throws {
        let registry = NodeRegistry()
        let names = ["plain", "quote\"d", "back\\slash", "new\nline", "nöde_ユニ", "all\\\"\n"]
        for (index, name) in names.enumerated() {
            try Self.register(registry, name, id: UInt64(index + 1), port: UInt16(5000 + index))
        }
        try Self.register(registry, "hidden", id: 100, port: 6000, type: 72)
        try Self.register(registry, "odd", id: 101, port: 6001, type: 9)

        #expect(Self.scrape(Self.make(nodeInfo: false), registry).types["epmd_node_info"] == nil)

        let bytes = Self.make(nodeInfo: true).exposition(registry: registry, openConnections: 0, eventWatchers: 0)
        let text = String(decoding: bytes, as: UTF8.self)
        #expect(text.contains(#"epmd_node_info{name="quote\"d",port="5001",type="normal"} 1"#))
        #expect(text.contains(#"epmd_node_info{name="back\\slash",port="5002",type="normal"} 1"#))
        #expect(text.contains(#"epmd_node_info{name="new\nline",port="5003",type="normal"} 1"#))
        #expect(text.contains(#"epmd_node_info{name="all\\\"\n",port="5005",type="normal"} 1"#))
        let parsed = ParsedExposition(bytes)
        #expect(parsed.errors.isEmpty, "\(parsed.errors)")
        #expect(parsed.types["epmd_node_info"] == "gauge")
        #expect(parsed.help["epmd_node_info"]?.isEmpty == false)
        for (index, name) in names.enumerated() {
            #expect(
                parsed["epmd_node_info", ("name", name), ("port", String(5000 + index)), ("type", "normal")] == 1,
                "\(name.debugDescription)"
            )
        }
        #expect(parsed["epmd_node_info", ("name", "hidden"), ("port", "6000"), ("type", "hidden")] == 1)
        #expect(parsed["epmd_node_info", ("name", "odd"), ("port", "6001"), ("type", "other")] == 1)
        #expect(parsed.sampleNames.filter { $0 == "epmd_node_info" }.count == names.count + 2)
    }

    @Test("label values that are not UTF-8 are written as U+FFFD, never as raw bytes")
    func invalidUTF8LabelValue() {
        var buffer: [UInt8] = []
        TextExposition.appendLabelValue([0x61, 0xff, 0x22, 0x62], to: &buffer)
        #expect(String(validating: buffer, as: UTF8.self) == "a\u{FFFD}\\\"b")
        buffer = []
        TextExposition.appendLabelValue(Array("ok".utf8), to: &buffer)
        #expect(buffer == Array("ok".utf8))
    }

    @Test("ports are written in decimal without leading zeros")
    func decimal() {
        for value: UInt16 in [0, 1, 9, 10, 99, 100, 4369, 10000, 65535] {
            var buffer: [UInt8] = []
            TextExposition.appendDecimal(value, to: &buffer)
            #expect(String(decoding: buffer, as: UTF8.self) == String(value))
        }
    }

    @Test("sample values: integers without a fraction, others in Swift's shortest form, Inf and NaN spelled out")
    func values() {
        func text(_ value: Double) -> String {
            var buffer: [UInt8] = []
            TextExposition.appendValue(value, to: &buffer)
            return String(decoding: buffer, as: UTF8.self)
        }
        #expect(text(0) == "0")
        #expect(text(12) == "12")
        #expect(text(0.25) == "0.25")
        #expect(text(.infinity) == "+Inf")
        #expect(text(-.infinity) == "-Inf")
        #expect(text(.nan) == "NaN")
        #expect(Double(text(1e20)) == 1e20)
    }

    @Test("durations handed to the histograms are clamped, never a trap")
    func clampedDurations() {
        #expect(GatewayMetrics.duration(seconds: -3) == .zero)
        #expect(GatewayMetrics.duration(seconds: .nan) == .zero)
        #expect(GatewayMetrics.duration(seconds: .infinity) == .zero)
        #expect(GatewayMetrics.duration(seconds: 1e300) == .seconds(1_000_000_000))
        #expect(GatewayMetrics.duration(seconds: 0.00025) == .microseconds(250))
    }

    @Test("/proc/self/stat is parsed from the last ')' (command names may hold spaces and parentheses)")
    func parseStat() throws {
        // Fields 3...24 after the command: state, ppid, ..., utime (14) = 250, stime (15) = 50,
        // vsize (23) = 123456789, rss (24) = 1000 pages.
        var fields = ["S"] + (4...52).map { String($0) }
        fields[14 - 3] = "250"
        fields[15 - 3] = "50"
        fields[23 - 3] = "123456789"
        fields[24 - 3] = "1000"
        let line = "4242 (a (weird) name) " + fields.joined(separator: " ") + "\n"
        let parsed = try #require(ProcessStatistics.parseStat(Array(line.utf8), ticksPerSecond: 100, pageSize: 4096))
        #expect(parsed.cpuSeconds == 3)
        #expect(parsed.virtualMemoryBytes == 123_456_789)
        #expect(parsed.residentMemoryBytes == 4_096_000)
        #expect(ProcessStatistics.parseStat(Array("garbage".utf8), ticksPerSecond: 100, pageSize: 4096) == nil)
        #expect(ProcessStatistics.parseStat(Array("1 (x) S 1 2".utf8), ticksPerSecond: 100, pageSize: 4096) == nil)
    }

    @Test("open descriptors: one poll over the descriptor table counts what listing /proc/self/fd counts")
    func descriptorCounts() throws {
        var limit = rlimit()
        try #require(getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0)
        let table = try #require(ProcessStatistics.descriptorTableSize())
        #expect(table >= 64)
        // Parallel tests open and close descriptors, so the two counts are compared a few times.
        var seen: [(Int?, Int?)] = []
        for _ in 0..<20 {
            var pipes: [Int32] = [0, 0]
            try #require(pipe(&pipes) == 0)
            let listed = ProcessStatistics.countByListing()
            let polled = ProcessStatistics.countByPoll(tableSize: table, softLimit: limit.rlim_cur)
            for fd in pipes { close(fd) }
            seen.append((listed, polled))
            if let listed, listed == polled { break }
        }
        #expect(seen.contains { $0.0 != nil && $0.0 == $0.1 }, "listed/polled: \(seen)")
        // Only slots under the soft limit are polled (poll refuses more); an empty table is not polled.
        #expect(ProcessStatistics.countByPoll(tableSize: table, softLimit: 3) == 3)
        #expect(ProcessStatistics.countByPoll(tableSize: 0, softLimit: 32) == nil)
        #expect(ProcessStatistics.countByPoll(tableSize: 64, softLimit: 0) == nil)
        #expect(ProcessStatistics.parseFDSize(Array("Name:\tx\nFDSize:\t4096\nGroups:\t\n".utf8)) == 4096)
        #expect(ProcessStatistics.parseFDSize(Array("Name:\tx\n".utf8)) == nil)
    }

    @Test("process_* families come from /proc/self and getrlimit")
    func processFamilies() throws {
        let before = NodeRegistry.systemClock()
        let metrics = Self.make()
        // Three more descriptors are counted as three more. Tests running in parallel open and close
        // descriptors too (every scrape opens two for a moment), so a few tries are allowed.
        var counted: [(Int?, Int?)] = []
        for _ in 0..<20 {
            let before = ProcessStatistics.current().openFDs
            var pipes: [Int32] = [0, 0]
            try #require(pipe(&pipes) == 0)
            let third = dup(pipes[0])
            let after = ProcessStatistics.current().openFDs
            for fd in pipes + [third] { close(fd) }
            counted.append((before, after))
            if let before, after == before + 3 { break }
        }
        #expect(counted.contains { $0.0.map { $0 + 3 } == $0.1 }, "open descriptors before/after: \(counted)")

        let parsed = Self.scrape(metrics)
        let start = try #require(parsed["process_start_time_seconds"])
        #expect(start >= before - 1 && start <= NodeRegistry.systemClock() + 1)
        #expect((parsed["process_cpu_seconds_total"] ?? -1) > 0)
        #expect((parsed["process_resident_memory_bytes"] ?? 0) > 1_000_000)
        #expect((parsed["process_virtual_memory_bytes"] ?? 0) >= (parsed["process_resident_memory_bytes"] ?? 0))
        #expect((parsed["process_open_fds"] ?? 0) >= 3)
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        #expect(parsed["process_max_fds"] == Double(limit.rlim_cur))
    }

    // Timing is measured by scripts/bench-events, never asserted here.
    @Test("a scrape with 19,000 registrations does no per-node work: its size does not grow with the registry")
    func largeRegistry() throws {
        let registry = NodeRegistry()
        let count = 19_000
        for index in 0..<count {
            try Self.register(registry, "node\(index)", id: UInt64(index + 1), port: UInt16(1024 + index % 60000))
        }
        let metrics = Self.make()
        let plain = metrics.exposition(registry: registry, openConnections: count, eventWatchers: 0)
        #expect(plain.count < 20_000, "\(plain.count) bytes: the exposition grows with the registry")
        let parsed = Self.scrape(metrics, registry, open: count)
        #expect(parsed["epmd_nodes", ("type", "normal")] == Double(count))
        #expect(parsed["epmd_connections"] == Double(count))

        // With node info on, one series per node, all of them present.
        let withInfo = Self.make(nodeInfo: true)
        let bytes = withInfo.exposition(registry: registry, openConnections: count, eventWatchers: 0)
        let parsed19000 = ParsedExposition(bytes)
        #expect(parsed19000.sampleNames.filter { $0 == "epmd_node_info" }.count == count)
        #expect(
            parsed19000["epmd_node_info", ("name", "node18999"), ("port", String(1024 + 18999)), ("type", "normal")]
                == 1
        )
    }

    @Test("epmd_node_info: made once per registry generation; a new generation renders only new registrations")
    func nodeInfoCache() throws {
        let registry = NodeRegistry()
        for index in 0..<100 {
            try Self.register(registry, "n\(index)", id: UInt64(index + 1), port: UInt16(5000 + index))
        }
        let metrics = Self.make(nodeInfo: true)
        func nodeInfo() -> [String: Double] {
            let parsed = Self.scrape(metrics, registry)
            #expect(parsed.sampleNames.filter { $0 == "epmd_node_info" }.count == registry.count)
            var ports: [String: Double] = [:]
            for index in 0..<200 {
                let name = "n\(index)"
                if parsed["epmd_node_info", ("name", name), ("port", String(5000 + index)), ("type", "normal")] == 1 {
                    ports[name] = 1
                }
            }
            return ports
        }
        #expect(nodeInfo().count == 100)
        #expect(metrics.nodeInfoCache.statistics.linesRendered == 100)
        // A burst at one generation renders nothing more, and serves the same block.
        let first = metrics.exposition(registry: registry, openConnections: 0, eventWatchers: 0)
        for _ in 0..<50 { _ = metrics.exposition(registry: registry, openConnections: 0, eventWatchers: 0) }
        let again = metrics.exposition(registry: registry, openConnections: 0, eventWatchers: 0)
        #expect(metrics.nodeInfoCache.statistics.linesRendered == 100)
        #expect(metrics.nodeInfoCache.statistics.generation == registry.generation)
        func block(_ bytes: [UInt8]) -> [Substring] {
            String(decoding: bytes, as: UTF8.self).split(separator: "\n").filter { $0.contains("epmd_node_info") }
        }
        #expect(block(first) == block(again) && block(first).count == 100 + 2)

        // One registration more, one less: one line rendered, the gone node's line dropped.
        try Self.register(registry, "n150", id: 151, port: 5150)
        #expect(registry.unregister(name: Array("n7".utf8)) != nil)
        let ports = nodeInfo()
        #expect(ports.count == 100 && ports["n150"] != nil && ports["n7"] == nil, "\(ports.keys.sorted())")
        let statistics = metrics.nodeInfoCache.statistics
        #expect(statistics.linesRendered == 101 && statistics.linesKept == 100, "\(statistics)")
        #expect(statistics.generation == registry.generation)

        // A name registered again (a new registration) is rendered again, with its new port.
        #expect(registry.unregister(name: Array("n3".utf8)) != nil)
        try Self.register(registry, "n3", id: 300, port: 5199)
        let parsed = Self.scrape(metrics, registry)
        #expect(parsed["epmd_node_info", ("name", "n3"), ("port", "5199"), ("type", "normal")] == 1)
        #expect(parsed["epmd_node_info", ("name", "n3"), ("port", "5003"), ("type", "normal")] == nil)
        #expect(metrics.nodeInfoCache.statistics.linesRendered == 102)
    }

    @Test("instruments and scrapes from many threads at once lose no count")
    func concurrency() async {
        let metrics = Self.make()
        let registry = NodeRegistry()
        await withTaskGroup(of: Void.self) { group in
            for worker in 0..<8 {
                group.addTask {
                    for index in 0..<1000 {
                        metrics.loop.requestServed(.portPlease2, result: .ok, seconds: 0.0001)
                        metrics.http.httpRequest(route: "/v1/nodes", status: 200 + worker % 2, seconds: 0.0001)
                        if index % 100 == 0 {
                            _ = metrics.exposition(registry: registry, openConnections: 0, eventWatchers: 0)
                        }
                    }
                }
            }
        }
        let parsed = Self.scrape(metrics)
        #expect(parsed["epmd_requests_total", ("request", "port_please2"), ("result", "ok")] == 8000)
        #expect(parsed["epmd_request_duration_seconds_count", ("request", "port_please2")] == 8000)
        #expect(parsed["http_requests_total", ("route", "/v1/nodes"), ("code", "200")] == 4000)
        #expect(parsed["http_requests_total", ("route", "/v1/nodes"), ("code", "201")] == 4000)
    }
}
