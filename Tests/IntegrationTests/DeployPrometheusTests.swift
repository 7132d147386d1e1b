import Foundation
import GatewayTestSupport
import Testing

/// `deploy/prometheus/`: the scrape config and the alert rules are valid for the real `promtool`, and
/// the rules' unit tests (`alerts.test.yml`) pass; the rules only name metrics the gateway exports.
@Suite(.timeLimit(.minutes(1)))
struct DeployPrometheusTests {
    static let folder = RepositoryRoot.appending("deploy/prometheus")

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
        let rules = try await self.promtool(["check", "rules", "alerts.yml"])
        #expect(rules.status == 0, "\(rules.stdout)\(rules.stderr)")
        #expect(rules.stdout.contains("SUCCESS: 5 rules found"))
        let tests = try await self.promtool(["test", "rules", "alerts.test.yml"])
        #expect(tests.status == 0, "\(tests.stdout)\(tests.stderr)")
        #expect(tests.stdout.contains("SUCCESS"))
    }

    @Test(
        "every epmd_/process_ metric the alert rules use is exported by the gateway's /metrics",
        .enabled(if: !TestBinary.isCEPMD && ExternalTool.usable("curl"))
    )
    func rulesNameExportedMetrics() async throws {
        let rules = try String(contentsOf: Self.folder.appendingPathComponent("alerts.yml"), encoding: .utf8)
        let pattern = try Regex(#"\b(epmd_[a-z_]+|process_[a-z_]+)\{"#)
        let used = Set(rules.matches(of: pattern).compactMap { $0.output[1].substring.map(String.init) })
        #expect(used.count >= 5)
        let httpPort = try FreePort.next()
        let gateway = try await GatewayProcess.start(arguments: ["--http-port", String(httpPort)])
        defer { gateway.stop() }
        let metrics = try await Curl.run(["http://127.0.0.1:\(httpPort)/metrics"])
        #expect(metrics.status == 200)
        for name in used.sorted() {
            #expect(metrics.body.contains("# TYPE \(name) "), "alerts.yml uses \(name), which /metrics does not export")
        }
    }
}
