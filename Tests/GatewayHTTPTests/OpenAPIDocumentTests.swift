import EPMDRegistry
import Foundation
import GatewayHTTP
import GatewayTestSupport
import Testing

/// The contract the gateway serves is the one in `openapi/`, byte for byte: it is embedded at build time
/// from symlinks to those files (`Sources/GatewayHTTP/Resources/`), and served as embedded.
@Suite struct OpenAPIDocumentTests {
    static let root = RepositoryRoot.url

    static func file(_ path: String) throws -> [UInt8] {
        Array(try Data(contentsOf: Self.root.appendingPathComponent(path)))
    }

    @Test("the served YAML and JSON are the bytes of openapi/openapi.yaml and openapi/openapi.json")
    func servedMatchesFiles() throws {
        let yaml = try Self.file("openapi/openapi.yaml")
        let json = try Self.file("openapi/openapi.json")
        #expect(OpenAPIDocument.yaml == yaml)
        #expect(OpenAPIDocument.json == json)
        let router = HTTPRouter(registry: NodeRegistry(), build: .init(version: "t", libmicrohttpd: "t"))
        #expect(router.respond(to: HTTPRequest(method: "GET", path: "/openapi.yaml")).body == yaml)
        #expect(router.respond(to: HTTPRequest(method: "GET", path: "/openapi.json")).body == json)
        let page = try Self.file("Sources/GatewayHTTP/Resources/status.html")
        #expect(router.respond(to: HTTPRequest(method: "GET", path: "/")).body == page)
    }

    @Test("the embedded contract is a symlink to openapi/, never a copy that could drift")
    func resourcesAreSymlinks() throws {
        for name in ["openapi.yaml", "openapi.json"] {
            let path = Self.root.appendingPathComponent("Sources/GatewayHTTP/Resources/\(name)").path
            let target = try FileManager.default.destinationOfSymbolicLink(atPath: path)
            #expect(target == "../../../openapi/\(name)")
        }
    }
}
