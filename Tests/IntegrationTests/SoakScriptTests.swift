import Foundation
import GatewayTestSupport
import Testing

/// `scripts/soak` (issue 9, part 8), shortened to 6 s with a row every 2 s: against the binary under
/// test, the mixed load (lookups, registration churn, HTTP reads, SSE watchers, scrapes, two real erl
/// nodes) has no error, descriptors and threads return to their count before the load, and the verdict
/// is PASS. The ten-minute figures are in README's "Soak" section.
@Suite(.timeLimit(.minutes(3)))
struct SoakScriptTests {
    @Test(
        "scripts/soak --interval 2 0.1: zero errors, fds and threads back at their start, verdict PASS",
        .enabled(if: !TestBinary.isCEPMD && ExternalTool.usable("erl") && ExternalTool.usable("cc"))
    )
    func shortSoakPasses() async throws {
        _ = try ExternalTool.require("erl")
        _ = try ExternalTool.require("cc")
        _ = try ExternalTool.require("curl")
        let script = RepositoryRoot.appending("scripts/soak").path
        let environment = [
            "EPMD_GATEWAY_BIN": TestBinary.url.path,
            // No copy of the report into Benchmarks/results/ from a test run.
            "SOAK_RESULTS": "",
        ]
        let result = try await Blocking.run {
            try Command.run(script, ["--interval", "2", "0.1"], environment: environment, timeout: 150)
        }
        let output = "\(result.stdout)\n--- stderr\n\(result.stderr)"
        #expect(result.status == 0, "\(output)")
        #expect(result.stdout.contains("**Verdict: PASS**"), "\(output)")

        // The table: the row before the load, three 2-second rows, the row after it.
        let rows = result.stdout.split(separator: "\n").filter { $0.hasPrefix("row=") }
        #expect(rows.count == 5, "\(output)")
        func value(_ key: String, _ row: Substring) -> Int? {
            row.split(separator: " ").first { $0.hasPrefix("\(key)=") }.flatMap { Int($0.dropFirst(key.count + 1)) }
        }
        for row in rows {
            #expect(value("errors", row) == 0, "\(row)")
        }
        let loaded = rows.dropFirst().dropLast()
        for row in loaded {
            // Every kind of load ran in every interval.
            for key in ["lookups", "registrations", "http", "scrapes", "events"] {
                #expect((value(key, row) ?? 0) > 0, "no \(key) in \(row)")
            }
        }
        if let start = rows.first, let end = rows.last {
            #expect(value("fds", end) == value("fds", start), "\(start)\n\(end)")
            #expect(value("threads", end) == value("threads", start), "\(start)\n\(end)")
        }
        #expect(result.stdout.contains("ping [pong,pong]"), "\(output)")
    }
}
