import EPMDProtocol
import EPMDRegistry
import GatewayHTTP
import Synchronization
import Testing

@testable import GatewayHTTP

/// The admin API as a value: off by default (every mutating method 405), and with a token: 401 with the
/// Bearer challenge, 404, 204, 503 when the loop does not answer; each result counted once.
@Suite struct AdminTests {
    static let token = Array("s3cr3t-Token_value".utf8)

    /// What a router's admin API was asked and counted.
    final class Record: Sendable {
        private let state = Mutex<(asked: [String], results: [AdminAPI.Result])>(([], []))

        func ask(_ name: String) { self.state.withLock { $0.asked.append(name) } }
        func count(_ result: AdminAPI.Result) { self.state.withLock { $0.results.append(result) } }
        var asked: [String] { self.state.withLock { $0.asked } }
        var results: [AdminAPI.Result] { self.state.withLock { $0.results } }
    }

    /// A router with admin on; `outcome` answers every unregistration; the names asked and the
    /// results counted are recorded.
    static func router(outcome: AdminAPI.Outcome = .unregistered) -> (HTTPRouter, Record, Record) {
        let record = Record()
        let router = HTTPRouter(
            registry: NodeRegistry(),
            build: .init(version: "0.1.0", libmicrohttpd: "0.9.75"),
            admin: AdminAPI(
                token: Self.token,
                unregister: { name in
                    record.ask(String(decoding: name, as: UTF8.self))
                    return outcome
                },
                observer: { record.count($0) }
            )
        )
        return (router, record, record)
    }

    static func delete(_ path: String, authorization: String?) -> HTTPRequest {
        HTTPRequest(
            method: "DELETE",
            path: path,
            headers: authorization.map { ["authorization": $0] } ?? [:]
        )
    }

    @Test("without admin, every mutating method answers 405 with Allow: GET, HEAD, on every route")
    func offByDefault() {
        let router = HTTPRouter(registry: NodeRegistry(), build: .init(version: "0.1.0", libmicrohttpd: "0.9.75"))
        for method in ["POST", "PUT", "PATCH", "DELETE"] {
            for path in ["/v1/nodes/alpha", "/v1/nodes", "/livez", "/v1/events"] {
                let response = router.respond(
                    to: HTTPRequest(method: method, path: path, headers: ["authorization": "Bearer s3cr3t-Token_value"])
                )
                #expect(response.status == 405, "\(method) \(path)")
                #expect(response.header("Allow") == "GET, HEAD", "\(method) \(path)")
            }
        }
    }

    @Test("a missing, malformed or wrong token gets 401 with WWW-Authenticate: Bearer, and nothing is asked")
    func unauthorized() {
        let (router, asked, results) = Self.router()
        let missing = router.respond(to: Self.delete("/v1/nodes/alpha", authorization: nil))
        #expect(missing.status == 401)
        #expect(missing.header("WWW-Authenticate") == "Bearer realm=\"epmd-gateway\"")
        #expect(missing.header("Content-Type") == "application/problem+json")
        for header in [
            "Basic czNjcjN0LVRva2VuX3ZhbHVl", "Bearer", "Bearer ", "Bearers3cr3t-Token_value", "s3cr3t-Token_value",
        ] {
            let response = router.respond(to: Self.delete("/v1/nodes/alpha", authorization: header))
            #expect(response.status == 401, "\(header)")
            #expect(response.header("WWW-Authenticate") == "Bearer realm=\"epmd-gateway\"", "\(header)")
        }
        for wrong in ["s3cr3t-Token_valuf", "s3cr3t-Token_valu", "s3cr3t-Token_value2", "S3CR3T-TOKEN_VALUE", "x"] {
            let response = router.respond(to: Self.delete("/v1/nodes/alpha", authorization: "Bearer \(wrong)"))
            #expect(response.status == 401, "\(wrong)")
            #expect(
                response.header("WWW-Authenticate") == "Bearer realm=\"epmd-gateway\", error=\"invalid_token\"",
                "\(wrong)"
            )
        }
        // An unknown name is not revealed to a client without the token.
        #expect(router.respond(to: Self.delete("/v1/nodes/nobody", authorization: "Bearer no")).status == 401)
        #expect(asked.asked.isEmpty)
        #expect(results.results == Array(repeating: .unauthorized, count: 12))
    }

    @Test("the right token unregisters (204, no body); the scheme is case-insensitive; names are decoded")
    func unregisters() {
        let (router, asked, results) = Self.router()
        let response = router.respond(to: Self.delete("/v1/nodes/alpha", authorization: "Bearer s3cr3t-Token_value"))
        #expect(response.status == 204)
        #expect(response.body.isEmpty)
        #expect(response.route == "/v1/nodes/{name}")
        let lower = router.respond(to: Self.delete("/v1/nodes/b%C3%A9ta", authorization: "bearer  s3cr3t-Token_value "))
        #expect(lower.status == 204)
        #expect(asked.asked == ["alpha", "béta"])
        #expect(results.results == [.ok, .ok])
        // GET and HEAD on the same route are still the read API.
        #expect(router.respond(to: HTTPRequest(method: "GET", path: "/v1/nodes/alpha")).status == 404)
        let post = router.respond(to: HTTPRequest(method: "POST", path: "/v1/nodes/alpha"))
        #expect(post.status == 405)
        #expect(post.header("Allow") == "GET, HEAD, DELETE")
        // DELETE elsewhere stays 405.
        let elsewhere = router.respond(to: Self.delete("/v1/nodes", authorization: "Bearer s3cr3t-Token_value"))
        #expect(elsewhere.status == 405)
        #expect(elsewhere.header("Allow") == "GET, HEAD")
    }

    @Test("an unknown name is 404 (counted not_found); a loop that does not answer is 503, not counted")
    func notFoundAndUnavailable() {
        let (router, _, results) = Self.router(outcome: .notFound)
        let missing = router.respond(to: Self.delete("/v1/nodes/ghost", authorization: "Bearer s3cr3t-Token_value"))
        #expect(missing.status == 404)
        #expect(String(decoding: missing.body, as: UTF8.self).contains("ghost"))
        #expect(results.results == [.notFound])
        let (stuck, _, stuckResults) = Self.router(outcome: .unavailable)
        let busy = stuck.respond(to: Self.delete("/v1/nodes/alpha", authorization: "Bearer s3cr3t-Token_value"))
        #expect(busy.status == 503)
        #expect(busy.header("Retry-After") == "1")
        #expect(stuckResults.results.isEmpty)
        // A name the registry could never hold is 400, after the token check.
        let (checked, asked, _) = Self.router()
        let long = String(repeating: "n", count: 256)
        #expect(
            checked.respond(to: Self.delete("/v1/nodes/\(long)", authorization: "Bearer s3cr3t-Token_value")).status
                == 400
        )
        #expect(asked.asked.isEmpty)
    }

    @Test("bearer parsing and the constant-time comparison")
    func parsing() {
        #expect(AdminHandler.bearerToken("Bearer abc") == Array("abc".utf8))
        #expect(AdminHandler.bearerToken("BEARER   abc  ") == Array("abc".utf8))
        #expect(AdminHandler.bearerToken("Bearer") == nil)
        #expect(AdminHandler.bearerToken("Bearer    ") == nil)
        #expect(AdminHandler.bearerToken("Token abc") == nil)
        #expect(AdminHandler.bearerToken(nil) == nil)
        #expect(AdminHandler.constantTimeEqual(Array("abc".utf8), Array("abc".utf8)))
        #expect(!AdminHandler.constantTimeEqual(Array("abd".utf8), Array("abc".utf8)))
        #expect(!AdminHandler.constantTimeEqual(Array("ab".utf8), Array("abc".utf8)))
        #expect(!AdminHandler.constantTimeEqual(Array("abcd".utf8), Array("abc".utf8)))
        #expect(!AdminHandler.constantTimeEqual([], []))
        // A presented byte equal to the complement of the expected one never matches by accident.
        #expect(!AdminHandler.constantTimeEqual([0xFF], [0x00, 0x01]))
    }
}
