import Foundation
import GatewayHTTP
import GatewayTestSupport
import Testing

/// The contract the gateway serves from memory is the one in `openapi/` (regenerate with
/// `scripts/embed-openapi`).
@Suite struct OpenAPIDocumentTests {
    static let root = RepositoryRoot.url

    @Test("the embedded YAML and JSON equal openapi/openapi.yaml and openapi/openapi.json")
    func embeddedMatchesFiles() throws {
        let yaml = try String(contentsOf: Self.root.appendingPathComponent("openapi/openapi.yaml"), encoding: .utf8)
        let json = try String(contentsOf: Self.root.appendingPathComponent("openapi/openapi.json"), encoding: .utf8)
        #expect(OpenAPIDocument.yaml + "\n" == yaml, "run scripts/embed-openapi")
        #expect(OpenAPIDocument.json + "\n" == json, "run scripts/embed-openapi")
    }
}
