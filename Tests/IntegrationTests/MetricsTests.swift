import Foundation
import GatewayTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `GET /metrics` of the built binary: real `erl` nodes, `promtool check metrics`, and a real Prometheus
/// server scraping it. Gateway-only (C epmd has no HTTP front).
@Suite("Prometheus metrics", .timeLimit(.minutes(3)))
struct MetricsTests {
    typealias W = WireClient

    // MARK: - Tests

    @Test(
        "real erl nodes, lookups and a malformed packet: /metrics passes promtool check metrics and counts them",
        .enabled(
            if: !TestBinary.isCEPMD && ExternalTool.usable("erl") && ExternalTool.usable("curl")
                && ExternalTool.usable("promtool")
        )
    )
    func promtoolAndValues() async throws {
        let httpPort = try FreePort.next()
        let gateway = try await GatewayProcess.start(arguments: [
            "--http-port", String(httpPort), "--metrics-node-info",
        ])
        defer { gateway.stop() }
        let cookie = NodeNames.cookie()
        let nodes = try await Self.startNodes(2, cookie: cookie, epmdPort: gateway.port)
        defer { for node in nodes { node.kill() } }
        var nodePorts: [String: UInt16] = [:]
        for node in nodes { nodePorts[node.name] = try await node.waitUntilRegistered(epmdPort: gateway.port) }
        // A hidden node whose name needs escaping in a label value (epmd_node_info).
        let oddName = "odd\"name\\with-escapes"
        let odd = try await W.register(port: gateway.port, name: oddName, nodePort: 4242, type: 72)
        defer { close(odd.fd) }
        #expect(odd.reply[0..<2] == [118, 0])

        let before = try await Self.scrape(httpPort)
        for node in nodes {
            let found = try await W.request(port: gateway.port, [122] + Array(node.name.utf8))
            #expect(found.bytes.prefix(2) == [119, 0])
        }
        let missing = try await W.request(port: gateway.port, [122] + Array("nobody_here".utf8))
        #expect(missing.bytes == [119, 1])
        // A zero length prefix: malformed, closed without a reply.
        let malformed = try await W.exchange(port: gateway.port, raw: [0, 0])
        #expect(malformed.bytes.isEmpty && malformed.ending.closed)

        let text = try await Self.metricsText(httpPort)
        try await Self.expectPromtoolClean(text)
        let after = Samples(text)
        #expect(after.errors.isEmpty, "unparsable lines: \(after.errors)")
        #expect(after["epmd_nodes", ("type", "normal")] == 2)
        #expect(after["epmd_nodes", ("type", "hidden")] == 1)
        #expect(after["epmd_registrations_total"] == 3)
        #expect(after["epmd_requests_total", ("request", "alive2"), ("result", "ok")] == 3)
        let lookups = ("request", "port_please2")
        #expect(
            after.delta(before, "epmd_requests_total", lookups, ("result", "ok")) == 2,
            "PORT_PLEASE2 found: \(after["epmd_requests_total", lookups, ("result", "ok")] ?? -1)"
        )
        #expect(after.delta(before, "epmd_requests_total", lookups, ("result", "not_found")) == 1)
        #expect(after.delta(before, "epmd_request_duration_seconds_count", lookups) == 3)
        #expect(after.delta(before, "epmd_malformed_packets_total", ("reason", "invalid_length")) == 1)
        #expect((after["epmd_connections_accepted_total"] ?? 0) >= 7)
        // The three registrations hold their connections.
        #expect((after["epmd_connections"] ?? 0) >= 3)
        #expect(after["epmd_gateway_http_up"] == 1)
        #expect(after["http_requests_total", ("route", "/metrics"), ("code", "200")] == 1)
        // Generations start at a per-run base; nothing registered or left between the two scrapes.
        let generation = after["epmd_registry_generation"] ?? 0
        #expect(generation > 0 && generation == before["epmd_registry_generation"])
        for node in nodes {
            let port = String(nodePorts[node.name] ?? 0)
            #expect(after["epmd_node_info", ("name", node.name), ("port", port), ("type", "normal")] == 1)
        }
        #expect(after["epmd_node_info", ("name", oddName), ("port", "4242"), ("type", "hidden")] == 1)
        #expect(text.contains(#"name="odd\"name\\with-escapes""#))
        let build = after.samples.keys.first { $0.hasPrefix("epmd_gateway_build_info{") } ?? ""
        #expect(build.contains("libmicrohttpd_version=\"0.9") && build.contains("version=\""), "\(build)")
        #expect((after["process_open_fds"] ?? 0) >= 5)
        #expect((after["process_max_fds"] ?? 0) >= (after["process_open_fds"] ?? 0))
        #expect((after["process_resident_memory_bytes"] ?? 0) > 1_000_000)
        #expect((after["process_cpu_seconds_total"] ?? -1) >= 0)
        let started = after["process_start_time_seconds"] ?? 0
        #expect(abs(Date().timeIntervalSince1970 - started) < 300, "start time \(started)")

        // One node dies: its unregistration, lifetime and the gauges follow.
        nodes[0].kill()
        var last = after
        let gone = try await Poll.until(timeout: .seconds(10), interval: .milliseconds(100)) {
            last = try await Self.scrape(httpPort)
            return last["epmd_unregistrations_total", ("reason", "closed")] == 1
        }
        #expect(
            gone != nil,
            "no unregistration counted: \(last["epmd_unregistrations_total", ("reason", "closed")] ?? -1)"
        )
        #expect(last["epmd_nodes", ("type", "normal")] == 1)
        #expect(last["epmd_node_lifetime_seconds_count"] == 1)
        #expect(last["epmd_registry_generation"] == generation + 1)
        #expect(
            last[
                "epmd_node_info",
                ("name", nodes[0].name),
                ("port", String(nodePorts[nodes[0].name] ?? 0)),
                ("type", "normal")
            ] == nil
        )
        #expect(last["http_requests_total", ("route", "/metrics"), ("code", "200")].map { $0 >= 2 } == true)
        try await Self.expectPromtoolClean(try await Self.metricsText(httpPort))
    }

    @Test(
        "a real Prometheus server scrapes the gateway: up is 1, epmd_nodes counts the erl nodes, registrations grow",
        .enabled(
            if: !TestBinary.isCEPMD && ExternalTool.usable("erl") && ExternalTool.usable("curl")
                && ExternalTool.usable("prometheus") && ExternalTool.usable("promtool")
        )
    )
    func realPrometheus() async throws {
        let prometheusPath = try ExternalTool.require("prometheus")
        let httpPort = try FreePort.next()
        let gateway = try await GatewayProcess.start(arguments: ["--http-port", String(httpPort)])
        defer { gateway.stop() }
        let cookie = NodeNames.cookie()
        let nodes = try await Self.startNodes(2, cookie: cookie, epmdPort: gateway.port)
        defer { for node in nodes { node.kill() } }
        for node in nodes { try await node.waitUntilRegistered(epmdPort: gateway.port) }

        let prometheus = try await PrometheusServer.start(path: prometheusPath, target: "127.0.0.1:\(httpPort)")
        defer { prometheus.stop() }

        // The first successful scrape.
        var upValue: Double?
        let up = try await Poll.until(timeout: .seconds(30), interval: .milliseconds(250)) {
            upValue = try await prometheus.value(#"up{job="epmd-gateway"}"#)
            return upValue == 1
        }
        try #require(up != nil, "up never became 1 (last \(upValue.map { "\($0)" } ?? "none")): \(prometheus.log)")

        var nodesValue: Double?
        let counted = try await Poll.until(timeout: .seconds(30), interval: .milliseconds(250)) {
            nodesValue = try await prometheus.value(#"epmd_nodes{type="normal"}"#)
            return nodesValue == 2
        }
        #expect(counted != nil, "epmd_nodes{type=\"normal\"} is \(nodesValue.map { "\($0)" } ?? "absent"), not 2")
        let registrations = try await prometheus.value("epmd_registrations_total")
        #expect(registrations == 2)
        // Histograms arrive whole: PromQL can compute a quantile of the lookups' latency buckets.
        let buckets = try await prometheus.value(#"count(epmd_request_duration_seconds_bucket{request="alive2"})"#)
        #expect(buckets == 12)

        let third = try await ErlangNode.start(name: NodeNames.unique("prom"), cookie: cookie, epmdPort: gateway.port)
        defer { third.kill() }
        try await third.waitUntilRegistered(epmdPort: gateway.port)
        var latest: Double?
        let grew = try await Poll.until(timeout: .seconds(30), interval: .milliseconds(250)) {
            latest = try await prometheus.value("epmd_registrations_total")
            return (latest ?? 0) > (registrations ?? 2)
        }
        #expect(grew != nil, "epmd_registrations_total stayed at \(latest.map { "\($0)" } ?? "none")")
        let normal = try await Poll.until(timeout: .seconds(30), interval: .milliseconds(250)) {
            try await prometheus.value(#"epmd_nodes{type="normal"}"#) == 3
        }
        #expect(normal != nil)
    }

    // MARK: - Helpers

    static func startNodes(_ count: Int, cookie: String, epmdPort: UInt16) async throws -> [ErlangNode] {
        var nodes: [ErlangNode] = []
        for _ in 0..<count {
            nodes.append(try await ErlangNode.start(name: NodeNames.unique("met"), cookie: cookie, epmdPort: epmdPort))
        }
        return nodes
    }

    /// `curl -s http://127.0.0.1:PORT/metrics`; throws unless it answers 200 with the 0.0.4 content type.
    static func metricsText(_ httpPort: UInt16) async throws -> String {
        let response = try await Curl.run(["http://127.0.0.1:\(httpPort)/metrics"])
        guard response.status == 200 else {
            throw TestFailure("curl /metrics answered \(response)")
        }
        #expect(response.contentType == "text/plain; version=0.0.4; charset=utf-8")
        return response.body
    }

    static func scrape(_ httpPort: UInt16) async throws -> Samples {
        Samples(try await self.metricsText(httpPort))
    }

    /// `promtool check metrics < text` exits 0 (lint problems exit 3, parse errors 1).
    static func expectPromtoolClean(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let promtool = try ExternalTool.require("promtool")
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("metrics-\(UUID().uuidString).txt")
        try Data(text.utf8).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        let result = try await Blocking.run {
            try Command.run("/bin/sh", ["-c", "exec \"$0\" check metrics < \"$1\"", promtool, file.path], timeout: 30)
        }
        #expect(
            result.status == 0,
            "promtool check metrics exited \(result.status): \(result.stdout) \(result.stderr)",
            sourceLocation: sourceLocation
        )
    }
}

// MARK: - A real Prometheus server

/// `prometheus` scraping one target every second, in a temporary directory that goes with it.
final class PrometheusServer: @unchecked Sendable {
    // @unchecked: the Process is only touched from the test that owns this object.
    let process: Process
    let port: UInt16
    let directory: URL

    /// - Parameter scrapeOptions: extra lines of the job (`scheme: https`, a `tls_config:` block), as
    ///   YAML indented for the job's level.
    static func start(path: String, target: String, scrapeOptions: [String] = []) async throws -> PrometheusServer {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("epmd-gateway-prometheus-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let config = directory.appendingPathComponent("prometheus.yml")
        let job = ["metrics_path: /metrics"] + scrapeOptions + ["static_configs:", "  - targets: ['\(target)']"]
        let yaml =
            """
            global:
              scrape_interval: 1s
              scrape_timeout: 1s
              evaluation_interval: 1s
            scrape_configs:
              - job_name: epmd-gateway

            """ + job.map { "    \($0)\n" }.joined()
        try Data(yaml.utf8).write(to: config)
        if let promtool = ExternalTool.path("promtool") {
            let checked = try await Blocking.run { try Command.run(promtool, ["check", "config", config.path]) }
            #expect(checked.status == 0, "promtool check config: \(checked.stdout) \(checked.stderr)")
        }
        let port = try FreePort.next()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = [
            "--config.file=\(config.path)",
            "--storage.tsdb.path=\(directory.appendingPathComponent("data").path)",
            "--web.listen-address=127.0.0.1:\(port)",
            "--log.level=warn",
        ]
        let log = directory.appendingPathComponent("prometheus.log")
        try process.logOutput(to: log)
        try process.runUnmasked()
        let server = PrometheusServer(process: process, port: port, directory: directory)
        let ready = try await Poll.until(timeout: .seconds(30), interval: .milliseconds(100)) {
            guard process.isRunning else {
                throw TestFailure("prometheus exited with \(process.terminationStatus): \(server.log)")
            }
            return try await server.get("/-/ready").status == 200
        }
        guard ready != nil else {
            server.stop()
            throw TestFailure("prometheus not ready on \(port) within 30 s: \(server.log)")
        }
        return server
    }

    private init(process: Process, port: UInt16, directory: URL) {
        self.process = process
        self.port = port
        self.directory = directory
    }

    var log: String {
        (try? String(contentsOf: self.directory.appendingPathComponent("prometheus.log"), encoding: .utf8)) ?? ""
    }

    /// A GET on Prometheus's HTTP API with curl: status and body (status 0 when nothing answers).
    func get(_ path: String, query: String? = nil) async throws -> (status: Int, body: String) {
        var arguments: [String] = []
        if let query { arguments += ["-G", "--data-urlencode", "query=\(query)"] }
        arguments.append("http://127.0.0.1:\(self.port)\(path)")
        let response = try await Curl.run(arguments, maxTime: 5)
        return (response.status, response.body)
    }

    /// The value of an instant query that gives one sample; nil when it gives none.
    func value(_ query: String) async throws -> Double? {
        let (status, body) = try await self.get("/api/v1/query", query: query)
        guard status == 200 else { return nil }
        guard let json = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any],
            let data = json["data"] as? [String: Any],
            let result = data["result"] as? [[String: Any]]
        else { throw TestFailure("unexpected answer to \(query): \(body)") }
        guard let first = result.first else { return nil }
        guard result.count == 1, let value = first["value"] as? [Any], value.count == 2, let text = value[1] as? String
        else { throw TestFailure("unexpected answer to \(query): \(body)") }
        return Double(text)
    }

    func stop() {
        self.process.killAndWait()
        try? FileManager.default.removeItem(at: self.directory)
    }

    deinit { self.stop() }
}

// MARK: - Parsing the exposition

/// Samples of a text-format exposition by series, `name{a="1",b="2"}` with labels sorted by name and
/// values unescaped (swift-prometheus writes series in dictionary order, so text is never compared).
struct Samples {
    var samples: [String: Double] = [:]
    var errors: [String] = []

    init(_ text: String) {
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            if let (key, value) = Self.parse(line) {
                self.samples[key] = value
            } else {
                self.errors.append(String(line))
            }
        }
    }

    static func key(_ name: String, _ labels: [(String, String)]) -> String {
        guard !labels.isEmpty else { return name }
        return name + "{" + labels.sorted { $0.0 < $1.0 }.map { "\($0.0)=\"\($0.1)\"" }.joined(separator: ",") + "}"
    }

    subscript(_ name: String, _ labels: (String, String)...) -> Double? {
        self.samples[Self.key(name, labels)]
    }

    /// This value minus the same series' value in `earlier` (absent counts as 0).
    func delta(_ earlier: Samples, _ name: String, _ labels: (String, String)...) -> Double {
        let key = Self.key(name, labels)
        return (self.samples[key] ?? 0) - (earlier.samples[key] ?? 0)
    }

    private static func parse(_ line: Substring) -> (String, Double)? {
        guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else {
            return nil
        }
        let series = line[..<space]
        guard let brace = series.firstIndex(of: "{") else { return (String(series), value) }
        guard series.last == "}" else { return nil }
        var labels: [(String, String)] = []
        var rest = Array(series[series.index(after: brace)..<series.index(before: series.endIndex)])
        while !rest.isEmpty {
            guard let equals = rest.firstIndex(of: "="), equals + 1 < rest.count, rest[equals + 1] == "\"" else {
                return nil
            }
            let name = String(rest[..<equals])
            var index = equals + 2
            var value = ""
            while index < rest.count, rest[index] != "\"" {
                if rest[index] == "\\", index + 1 < rest.count {
                    index += 1
                    value.append(rest[index] == "n" ? "\n" : rest[index])
                } else {
                    value.append(rest[index])
                }
                index += 1
            }
            guard index < rest.count else { return nil }
            labels.append((name, value))
            rest = Array(rest[(index + 1)...].drop { $0 == "," })
        }
        return (Self.key(String(series[..<brace]), labels), value)
    }
}
