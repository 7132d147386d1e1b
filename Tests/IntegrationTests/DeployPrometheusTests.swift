import Foundation
import GatewayTestSupport
import Testing

/// `deploy/prometheus/`: the scrape config and the rule files are valid for the real `promtool`, the
/// rules' unit tests (`alerts.test.yml`) pass and cover every alert (firing and not firing) and every
/// recording rule, and the rules only name metrics the gateway exports.
@Suite(.timeLimit(.minutes(1)))
struct DeployPrometheusTests {
    static let folder = RepositoryRoot.appending("deploy/prometheus")

    static func text(_ file: String) throws -> String {
        try String(contentsOf: self.folder.appendingPathComponent(file), encoding: .utf8)
    }

    /// The names after `- alert:` or `- record:` (`key`) in a rule file, in order.
    static func ruleNames(_ key: String, in rules: String) throws -> [String] {
        let pattern = try Regex(#"(?m)^\s*-\s+"# + key + #":\s*(\S+)\s*$"#)
        return rules.matches(of: pattern).compactMap { $0.output[1].substring.map(String.init) }
    }

    func promtool(_ arguments: [String]) async throws -> CommandResult {
        let promtool = try ExternalTool.require("promtool")
        let folder = Self.folder.path
        return try await Blocking.run {
            // promtool resolves rule_files relative to the config, and test files relative to themselves.
            try Command.run(promtool, arguments.map { $0.hasSuffix(".yml") ? "\(folder)/\($0)" : $0 }, timeout: 30)
        }
    }

    @Test(
        "promtool: check config, check rules, test rules",
        .enabled(if: ExternalTool.usable("promtool"))
    )
    func promtoolChecks() async throws {
        let config = try await self.promtool(["check", "config", "prometheus.yml"])
        #expect(config.status == 0, "\(config.stdout)\(config.stderr)")
        #expect(config.stdout.contains("SUCCESS: 2 rule files found"), "\(config.stdout)")
        let rules = try await self.promtool(["check", "rules", "alerts.yml"])
        #expect(rules.status == 0, "\(rules.stdout)\(rules.stderr)")
        #expect(rules.stdout.contains("SUCCESS: 12 rules found"), "\(rules.stdout)")
        let expected = try await self.promtool(["check", "rules", "expected-nodes.yml"])
        #expect(expected.status == 0, "\(expected.stdout)\(expected.stderr)")
        #expect(expected.stdout.contains("SUCCESS"), "\(expected.stdout)")
        let tests = try await self.promtool(["test", "rules", "alerts.test.yml"])
        #expect(tests.status == 0, "\(tests.stdout)\(tests.stderr)")
        #expect(tests.stdout.contains("SUCCESS"))
    }

    @Test("alerts.test.yml has a firing and a not-firing case for every alert, and a case for every recording rule")
    func everyRuleIsTested() throws {
        let rules = try Self.text("alerts.yml")
        let tests = try Self.text("alerts.test.yml")
        let alerts = try Self.ruleNames("alert", in: rules)
        let records = try Self.ruleNames("record", in: rules)
        #expect(alerts.count == 10, "\(alerts)")
        #expect(records.count == 2, "\(records)")

        // Each `alert_rule_test` entry starts with `- eval_time:` or `- {eval_time:`; an entry expecting
        // no alert says `exp_alerts: []`, one expecting alerts lists `exp_labels`.
        let entries = tests.split(separator: try Regex(#"-\s+\{?eval_time:"#)).dropFirst()
        let alertName = try Regex(#"alertname:\s*([A-Za-z0-9_]+)"#)
        var firing: Set<String> = []
        var silent: Set<String> = []
        for entry in entries {
            guard let match = entry.firstMatch(of: alertName), let name = match.output[1].substring else { continue }
            if entry.contains("exp_labels") { firing.insert(String(name)) }
            if entry.contains("exp_alerts: []") { silent.insert(String(name)) }
        }
        for alert in alerts {
            #expect(firing.contains(alert), "alerts.test.yml has no case where \(alert) fires")
            #expect(silent.contains(alert), "alerts.test.yml has no case where \(alert) does not fire")
        }
        #expect(firing.union(silent).subtracting(alerts).isEmpty, "cases for alerts alerts.yml lacks")

        let exprTests = try Regex(#"(?m)^\s*-\s+expr:\s*([A-Za-z0-9_:]+)"#)
        let tested = Set(tests.matches(of: exprTests).compactMap { $0.output[1].substring.map(String.init) })
        for record in records {
            #expect(tested.contains(record), "alerts.test.yml has no promql_expr_test of \(record)")
        }

        // Every recorded series a rule reads (`epmd:...`) is recorded by alerts.yml or expected-nodes.yml.
        let expectedNodes = try Self.text("expected-nodes.yml")
        let recorded = Set(records + (try Self.ruleNames("record", in: expectedNodes)))
        let read = Set(rules.matches(of: try Regex(#"\b(epmd:[a-z_:]+)"#)).compactMap { $0.output[1].substring })
        for name in read.map(String.init).sorted() {
            #expect(recorded.contains(name), "alerts.yml reads \(name), which no rule file records")
        }
    }

    @Test(
        "every epmd_/process_ metric the rules use is exported by the gateway's /metrics",
        .enabled(if: !TestBinary.isCEPMD && ExternalTool.usable("curl"))
    )
    func rulesNameExportedMetrics() async throws {
        let rules = try Self.text("alerts.yml")
        let pattern = try Regex(#"\b(epmd_[a-z_]+|process_[a-z_]+)\{"#)
        let used = Set(rules.matches(of: pattern).compactMap { $0.output[1].substring.map(String.init) })
        #expect(used.count >= 11, "\(used.sorted())")
        #expect(used.contains("epmd_node_info"))
        let httpPort = try FreePort.next()
        // epmd_node_info is opt-in; every other family is made at start, counters at 0, so each name
        // must be there before any event.
        let gateway = try await GatewayProcess.start(arguments: [
            "--http-port", String(httpPort), "--metrics-node-info",
        ])
        defer { gateway.stop() }
        let metrics = try await Curl.run(["http://127.0.0.1:\(httpPort)/metrics"])
        #expect(metrics.status == 200)
        for name in used.sorted() {
            #expect(metrics.body.contains("# TYPE \(name) "), "alerts.yml uses \(name), which /metrics does not export")
        }
    }

    /// The `expr` of the recording rule `record` in alerts.yml (read by PyYAML).
    static func recordingExpression(_ record: String) async throws -> String {
        let python = try ExternalTool.require("python3")
        let script = """
            import sys, yaml
            with open(sys.argv[1]) as f:
                rules = [r for g in yaml.safe_load(f)["groups"] for r in g["rules"]]
            print(next(r["expr"] for r in rules if r.get("record") == sys.argv[2]))
            """
        let file = Self.folder.appendingPathComponent("alerts.yml").path
        let result = try await Blocking.run { try Command.run(python, ["-c", script, file, record], timeout: 30) }
        try #require(result.status == 0, "\(result.stderr)")
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test(
        "a real Prometheus scraping the gateway lists a real node with the fleet rule's expression",
        .enabled(
            if: !TestBinary.isCEPMD && ExternalTool.usable("erl") && ExternalTool.usable("curl")
                && ExternalTool.usable("prometheus") && ExternalTool.usable("python3")
        )
    )
    func fleetExpressionOnALiveScrape() async throws {
        let fleet = try await Self.recordingExpression("epmd:node_info:fleet")
        #expect(fleet.contains("epmd_node_info"))
        let prometheusPath = try ExternalTool.require("prometheus")
        let httpPort = try FreePort.next()
        let gateway = try await GatewayProcess.start(arguments: [
            "--http-port", String(httpPort), "--metrics-node-info",
        ])
        defer { gateway.stop() }
        let name = NodeNames.unique("fleet")
        let node = try await ErlangNode.start(name: name, cookie: NodeNames.cookie(), epmdPort: gateway.port)
        defer { node.kill() }
        try await node.waitUntilRegistered(epmdPort: gateway.port)

        // The rules select job="epmd"; the target is 127.0.0.1:PORT, without a `host` label.
        let prometheus = try await PrometheusServer.start(
            path: prometheusPath,
            target: "127.0.0.1:\(httpPort)",
            scrapeOptions: ["relabel_configs:", "  - target_label: job", "    replacement: epmd"]
        )
        defer { prometheus.stop() }
        // One series for the node, labelled job, host (the instance without its port), name and type.
        let expected = ["job": "epmd", "host": "127.0.0.1", "name": name, "type": "normal"]
        var last = ""
        let seen = try await Poll.until(timeout: .seconds(30), interval: .milliseconds(250)) {
            let (status, body) = try await prometheus.get("/api/v1/query", query: fleet)
            last = body
            guard status == 200,
                let json = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any],
                let result = (json["data"] as? [String: Any])?["result"] as? [[String: Any]]
            else { return false }
            return result.contains { ($0["metric"] as? [String: String]) == expected }
        }
        #expect(seen != nil, "the fleet expression never gave \(expected): \(last) \(prometheus.log)")
    }
}
