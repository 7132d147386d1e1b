import EPMDProtocol
import EPMDRegistry
import Synchronization
import Testing

@testable import GatewayHTTP

/// Cached bodies are served as shared renderings (one native response object each), dropped with the
/// generation; the fast path matcher agrees with the segment matcher.
@Suite struct SharedBodyTests {
    @Test("a shared body makes its attachment once and releases it when the body goes")
    func attachmentLifetime() {
        let released = Atomic<Int>(0)
        var made = 0
        do {
            let body = SharedBody(bytes: [1, 2, 3], headers: [("Content-Type", "application/json")])
            for _ in 0..<3 {
                let attachment = body.attachment {
                    made += 1
                    return NativeAttachment(address: 42) { _ in released.add(1, ordering: .relaxed) }
                }
                #expect(attachment?.address == 42)
            }
            #expect(released.load(ordering: .relaxed) == 0)
        }
        #expect(made == 1)
        #expect(released.load(ordering: .relaxed) == 1)
    }

    @Test("a node and the list are served from one shared rendering per generation; a change renders anew")
    func sharedPerGeneration() throws {
        let registry = NodeRegistry(clock: { 1_795_411_787.25 })
        let router = HTTPRouter(registry: registry, build: .init(version: "t", libmicrohttpd: "t"))
        _ = registry.register(
            Alive2Request(port: 1, name: Array("foo".utf8)),
            connection: ConnectionID(1),
            fd: 3,
            peer: "127.0.0.1"
        )
        let first = router.respond(to: HTTPRequest(method: "GET", path: "/v1/nodes/foo"))
        let again = router.respond(to: HTTPRequest(method: "GET", path: "/v1/nodes/foo"))
        let shared = try #require(first.shared)
        #expect(again.shared === shared)
        #expect(first.header("Content-Type") == "application/json")
        #expect(first.body.last == 10)
        let list = router.respond(to: HTTPRequest(method: "GET", path: "/v1/nodes"))
        #expect(router.respond(to: HTTPRequest(method: "GET", path: "/v1/nodes")).shared === list.shared)
        #expect(list.header("ETag") == "\"\(registry.generation)\"")
        registry.unregister(connection: ConnectionID(1))
        _ = registry.register(
            Alive2Request(port: 2, name: Array("foo".utf8)),
            connection: ConnectionID(2),
            fd: 3,
            peer: "127.0.0.1"
        )
        let moved = router.respond(to: HTTPRequest(method: "GET", path: "/v1/nodes/foo"))
        #expect(moved.shared !== shared)
        #expect(String(decoding: moved.body, as: UTF8.self).contains("\"port\":2,"))
        // Changing a shared response makes it its own; the shared rendering is untouched.
        var changed = moved
        changed.headers.append(("X", "y"))
        #expect(changed.shared == nil && changed.body == moved.body && moved.shared?.headers.count == 1)
    }

    @Test("the path matcher agrees with decoding every segment first")
    func fastPathAgrees() {
        let paths = [
            "/", "/livez", "/readyz", "/version", "/metrics", "/openapi.json", "/openapi.yaml", "/v1/nodes",
            "/v1/nodes/", "/v1/nodes/a", "/v1/nodes/a/", "/v1/nodes/a/health", "/v1/nodes/a/health/",
            "/v1/nodes//health", "/v1/nodes/a/b", "/v1/nodes/a/healthz", "/v1/events", "/v1/events/",
            "/v1/events/history", "/v1/events/history/", "/v1", "/v1/", "//", "/livez/", "*", "", "/x/y/z/w/v",
            "/v1/nodes/café", "/v1/nodes/a b", "/v1/nodesx", "/v1/nodes/health",
        ]
        for path in paths {
            let fast = HTTPRoute.match(path: path)
            let slow = HTTPRequest.segments(of: path).map { HTTPRoute.match($0) }
            #expect(fast?.route == slow?.route && fast?.name == slow?.name, "\(path)")
        }
        #expect(HTTPRoute.match(path: "/v1/nodes/a%2Fb")?.route == .node)
        #expect(HTTPRoute.match(path: "/v1/nodes/a%2Fb")?.name == "a/b")
        #expect(HTTPRoute.match(path: "/v1/nodes/%FF") == nil)
    }
}
