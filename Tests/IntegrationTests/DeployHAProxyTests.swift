import Foundation
import GatewayTestSupport
import Testing

/// `deploy/haproxy/haproxy.cfg`, the operators' copy of the check `HAProxyHealthCheckTests` runs with a
/// real HAProxy: valid for `haproxy -c`, and its health check asks a path of the OpenAPI document on
/// the gateway's default HTTP port.
@Suite(.timeLimit(.minutes(1)))
struct DeployHAProxyTests {
    static let config = RepositoryRoot.appending("deploy/haproxy/haproxy.cfg")

    static func check(_ file: URL) async throws -> CommandResult {
        let haproxy = try ExternalTool.require("haproxy")
        return try await Blocking.run { try Command.run(haproxy, ["-c", "-f", file.path], timeout: 30) }
    }

    @Test(
        "haproxy -c passes deploy/haproxy/haproxy.cfg and fails a broken copy",
        .enabled(if: ExternalTool.usable("haproxy"))
    )
    func haproxyCheck() async throws {
        let result = try await Self.check(Self.config)
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        #expect((result.stdout + result.stderr).contains("Configuration file is valid"))

        let original = try String(contentsOf: Self.config, encoding: .utf8)
        let broken = original.replacingOccurrences(
            of: "http-check expect status 200",
            with: "http-check expect stat 200"
        )
        #expect(broken != original)
        let temporary = FileManager.default.temporaryDirectory.appendingPathComponent(
            "haproxy-\(UUID().uuidString).cfg"
        )
        try broken.write(to: temporary, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: temporary) }
        let rejected = try await Self.check(temporary)
        #expect(rejected.status != 0, "\(rejected.stdout)\(rejected.stderr)")
    }

    @Test(
        "the health check asks /v1/nodes/{name}/health on port 4370 and expects 200",
        .enabled(if: ExternalTool.usable("python3"))
    )
    func healthCheckRequest() async throws {
        let text = try String(contentsOf: Self.config, encoding: .utf8)
        let send = try #require(text.firstMatch(of: #/http-check send meth (GET|HEAD) uri (\S+)/#))
        let uri = String(send.output.2.prefix { $0 != "?" })
        let openAPI = try await DeployKubernetesTests.openAPIPaths()
        #expect(DeployKubernetesTests.path(uri, matches: "/v1/nodes/{name}/health"), "\(uri)")
        #expect(openAPI.contains { DeployKubernetesTests.path(uri, matches: $0) }, "\(uri) is not in openapi.yaml")
        #expect(text.contains("http-check expect status 200"))
        // The gateway's default HTTP port (`--http-port`, 4370).
        #expect(text.contains(#/default-server check .* port 4370 /#))
    }
}
