import EPMDProtocol
import EPMDRegistry
import Foundation
import GatewayHTTP
import Testing

@Suite struct HTTPRouterTests {
    static func router(ready: Bool = true) -> (HTTPRouter, NodeRegistry) {
        let registry = NodeRegistry(clock: { 1_795_411_787.25 })
        let router = HTTPRouter(
            registry: registry,
            build: .init(version: "0.1.0", libmicrohttpd: "0.9.75"),
            isReady: { ready }
        )
        return (router, registry)
    }

    static func register(_ registry: NodeRegistry, _ name: String, port: UInt16, type: UInt8 = 77, id: UInt64) {
        _ = registry.register(
            Alive2Request(port: port, nodeType: type, name: Array(name.utf8), extra: [1, 2, 3]),
            connection: ConnectionID(id),
            fd: 9,
            peer: "127.0.0.1"
        )
    }

    func body(_ response: HTTPResponse) -> String { String(decoding: response.body, as: UTF8.self) }

    @Test("GET /v1/nodes lists nodes sorted by name with the generation and an ETag; If-None-Match gives 304")
    func nodes() {
        let (router, registry) = Self.router()
        Self.register(registry, "zed", port: 2, id: 1)
        Self.register(registry, "alpha", port: 1, type: 72, id: 2)
        let response = router.respond(to: HTTPRequest(method: "GET", path: "/v1/nodes"))
        #expect(response.status == 200)
        #expect(response.header("ETag") == "\"2\"")
        #expect(response.header("Content-Type") == "application/json")
        let text = self.body(response)
        #expect(text.hasPrefix("{\"generation\":2,\"nodes\":[{\"name\":\"alpha\",\"port\":1,\"type\":\"hidden\","))
        #expect(text.contains("\"extra\":\"AQID\""))
        #expect(text.contains("\"registeredAt\":\"2026-11-23T05:29:47.250Z\""))
        #expect(
            text.firstRange(of: "alpha")?.lowerBound ?? text.endIndex < text.firstRange(of: "zed")?.lowerBound
                ?? text.startIndex
        )
        let cached = router.respond(
            to: HTTPRequest(method: "GET", path: "/v1/nodes", headers: ["if-none-match": "\"2\""])
        )
        #expect(cached.status == 304)
        let hidden = router.respond(to: HTTPRequest(method: "GET", path: "/v1/nodes", query: ["type": "hidden"]))
        #expect(self.body(hidden).contains("alpha") && !self.body(hidden).contains("zed"))
        let bad = router.respond(to: HTTPRequest(method: "GET", path: "/v1/nodes", query: ["type": "weird"]))
        #expect(bad.status == 400)
        // The body is cached per generation: the same bytes again, and a new generation after a change.
        let again = router.respond(to: HTTPRequest(method: "GET", path: "/v1/nodes"))
        #expect(again == response)
        Self.register(registry, "mid", port: 3, id: 3)
        let changed = router.respond(to: HTTPRequest(method: "GET", path: "/v1/nodes"))
        #expect(changed.header("ETag") == "\"3\"")
        #expect(self.body(changed).contains("\"name\":\"mid\""))
    }

    @Test("GET /v1/nodes/{name}: 200 with the node, 404 when absent, 400 for invalid names")
    func node() {
        let (router, registry) = Self.router()
        Self.register(registry, "foo", port: 5555, id: 1)
        let found = router.respond(to: HTTPRequest(method: "GET", path: "/v1/nodes/foo"))
        #expect(found.status == 200)
        #expect(self.body(found).contains("\"port\":5555"))
        let missing = router.respond(to: HTTPRequest(method: "GET", path: "/v1/nodes/bar"))
        #expect(missing.status == 404)
        #expect(missing.header("Content-Type") == "application/problem+json")
        // Cached per generation, and never stale: after a re-registration on another port, the new port.
        #expect(router.respond(to: HTTPRequest(method: "GET", path: "/v1/nodes/foo")) == found)
        registry.unregister(connection: ConnectionID(1))
        #expect(router.respond(to: HTTPRequest(method: "GET", path: "/v1/nodes/foo")).status == 404)
        Self.register(registry, "foo", port: 6666, id: 2)
        let moved = router.respond(to: HTTPRequest(method: "GET", path: "/v1/nodes/foo"))
        #expect(self.body(moved).contains("\"port\":6666"))
        let long = router.respond(
            to: HTTPRequest(method: "GET", path: "/v1/nodes/" + String(repeating: "a", count: 256))
        )
        #expect(long.status == 400)
    }

    @Test("paths are decoded per segment: %2F and %00 in a name are 400, never another route or a shorter name")
    func percentEncoding() {
        let (router, registry) = Self.router()
        Self.register(registry, "qq1", port: 1, id: 1)
        Self.register(registry, "café", port: 2, id: 2)
        for path in [
            "/v1/nodes/qq1%2Fhealth", "/v1/nodes/qq1%2F", "/v1/nodes/qq1%00junk", "/v1/nodes/qq1%00junk/health",
            "/v1/nodes/%ZZ", "/v1/nodes/%FF",
        ] {
            #expect(router.respond(to: HTTPRequest(method: "GET", path: path)).status == 400, "\(path)")
        }
        #expect(router.respond(to: HTTPRequest(method: "GET", path: "/v1/nodes/q%711/health")).status == 200)
        #expect(router.respond(to: HTTPRequest(method: "GET", path: "/v1/nodes/caf%C3%A9")).status == 200)
        let filtered = router.respond(to: HTTPRequest(method: "GET", path: "/v1/nodes", query: ["type": "%6eormal"]))
        #expect(String(decoding: filtered.body, as: UTF8.self).contains("qq1"))
    }

    @Test("long-poll: waits only for GET /v1/nodes with index at or past the generation and a wait; capped")
    func longPoll() {
        let (router, registry) = Self.router()
        let wait = { (query: [String: String]) in
            router.longPollWait(for: HTTPRequest(method: "GET", path: "/v1/nodes", query: query))
        }
        #expect(wait(["index": "0", "wait": "5"])?.seconds == 5)
        #expect(wait(["index": "0", "wait": "1m"])?.seconds == 60)
        #expect(wait(["index": "0", "wait": "600s"])?.seconds == 60)
        #expect(wait(["index": "0"]) == nil)
        #expect(wait(["index": "0", "wait": "0"]) == nil)
        Self.register(registry, "a", port: 1, id: 1)
        #expect(wait(["index": "0", "wait": "5"]) == nil)
        #expect(wait(["index": "1", "wait": "5"])?.index == 1)
        #expect(
            router.longPollWait(
                for: HTTPRequest(method: "HEAD", path: "/v1/nodes", query: ["index": "1", "wait": "5"])
            ) == nil
        )
        for bad in [["index": "-1"], ["index": "x"], ["wait": "soon"], ["wait": "-5"]] {
            #expect(router.respond(to: HTTPRequest(method: "GET", path: "/v1/nodes", query: bad)).status == 400)
        }
    }

    @Test("health: 200 registered, 503 not; HEAD too")
    func health() {
        let (router, registry) = Self.router()
        Self.register(registry, "up", port: 1, id: 1)
        #expect(router.respond(to: HTTPRequest(method: "GET", path: "/v1/nodes/up/health")).status == 200)
        #expect(router.respond(to: HTTPRequest(method: "HEAD", path: "/v1/nodes/up/health")).status == 200)
        #expect(router.respond(to: HTTPRequest(method: "GET", path: "/v1/nodes/down/health")).status == 503)
        registry.unregister(connection: ConnectionID(1))
        #expect(router.respond(to: HTTPRequest(method: "GET", path: "/v1/nodes/up/health")).status == 503)
    }

    @Test("livez, readyz (503 when not ready, verbose), version; 405 with Allow; 404 problem")
    func probes() {
        let (router, _) = Self.router()
        #expect(router.respond(to: HTTPRequest(method: "GET", path: "/livez")).status == 200)
        #expect(router.respond(to: HTTPRequest(method: "GET", path: "/readyz")).status == 200)
        let (draining, _) = Self.router(ready: false)
        let notReady = draining.respond(to: HTTPRequest(method: "GET", path: "/readyz", query: ["verbose": ""]))
        #expect(notReady.status == 503)
        #expect(self.body(notReady).contains("[-]ready failed"))
        #expect(self.body(router.respond(to: HTTPRequest(method: "GET", path: "/version"))).contains("\"0.1.0\""))
        let wrongMethod = router.respond(to: HTTPRequest(method: "POST", path: "/v1/nodes"))
        #expect(wrongMethod.status == 405)
        #expect(wrongMethod.header("Allow") == "GET, HEAD")
        let unknown = router.respond(to: HTTPRequest(method: "GET", path: "/nope"))
        #expect(unknown.status == 404)
        #expect(self.body(unknown).contains("\"status\":404"))
    }

    @Test("lists reuse each registration's JSON, yet a name registered again shows its new registration; byte order")
    func renderedOncePerRegistration() {
        let (router, registry) = Self.router()
        Self.register(registry, "b", port: 1, id: 1)
        Self.register(registry, "ab", port: 2, id: 2)
        Self.register(registry, "a", port: 3, id: 3)
        Self.register(registry, "\u{e9}", port: 4, id: 4)
        let names = { () -> [String] in
            let text = self.body(router.respond(to: HTTPRequest(method: "GET", path: "/v1/nodes")))
            return text.components(separatedBy: "{\"name\":\"").dropFirst().map { String($0.prefix { $0 != "\"" }) }
        }
        #expect(names() == ["a", "ab", "b", "\u{e9}"])
        registry.unregister(connection: ConnectionID(1))
        Self.register(registry, "b", port: 99, id: 5)
        let text = self.body(
            router.respond(to: HTTPRequest(method: "GET", path: "/v1/nodes", query: ["type": "normal"]))
        )
        #expect(text.contains("{\"name\":\"b\",\"port\":99,"))
        #expect(!text.contains("\"port\":1,"))
        #expect(HTTPRouter.precedes([0x61], [0x61, 0x62]) && !HTTPRouter.precedes([0x61, 0x62], [0x61]))
        #expect(HTTPRouter.precedes([0x7A], [0xC3, 0xA9]) && !HTTPRouter.precedes([], []))
    }
}
