import EPMDRegistry
import GatewayHTTP
import Testing

/// One enum dispatches and labels: every route's template reaches that route, labels are unique.
@Suite struct HTTPRouteTests {
    @Test("each route's label is unique, and a path built from it dispatches to the route")
    func labelsDispatch() {
        let labels = HTTPRoute.allCases.map(\.label)
        #expect(Set(labels).count == labels.count)
        for route in HTTPRoute.allCases where route != .other {
            let path = route.label.replacing("{name}", with: "abc")
            let segments = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst().map(String.init)
            let matched = HTTPRoute.match(segments)
            #expect(matched.route == route, "\(path)")
            #expect((matched.name == "abc") == route.label.contains("{name}"), "\(path)")
        }
        #expect(HTTPRoute.match(["v1", "nodes", "a", "b"]).route == .other)
        #expect(HTTPRoute.match(["v1"]).route == .other)
        #expect(HTTPRoute.match(["v2", "nodes"]).route == .other)
        #expect(HTTPRoute.match(["", ""]).route == .other)
    }

    @Test("the router labels every answer with its route, 405 and 404 included")
    func routerLabels() {
        let router = HTTPRouter(registry: NodeRegistry(), build: .init(version: "t", libmicrohttpd: "t"))
        #expect(router.respond(to: HTTPRequest(method: "POST", path: "/v1/nodes")).route == "/v1/nodes")
        #expect(router.respond(to: HTTPRequest(method: "POST", path: "/v1/nodes")).status == 405)
        #expect(router.respond(to: HTTPRequest(method: "DELETE", path: "/x")).status == 404)
        #expect(router.respond(to: HTTPRequest(method: "GET", path: "/l%69vez")).route == "/livez")
    }
}
