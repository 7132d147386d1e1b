import EPMDRegistry
import Testing

@testable import GatewayHTTP

/// The daemon tells its observer a route by index: the index must be the route's place in
/// `HTTPRoute.allCases`, the order of the label list the metrics are given.
@Suite struct HTTPRouteIndexTests {
    @Test("a route's rawValue is its index in allCases; a response reports the index of its route")
    func indexes() {
        for (index, route) in HTTPRoute.allCases.enumerated() {
            #expect(route.rawValue == index, "\(route)")
            var response = HTTPResponse(status: 200)
            response.matched = route
            #expect(response.routeIndex == index && response.route == route.label)
        }
        let router = HTTPRouter(registry: NodeRegistry(), build: .init(version: "t", libmicrohttpd: "t"))
        let labels = HTTPRoute.allCases.map(\.label)
        let node = router.respond(to: HTTPRequest(method: "GET", path: "/v1/nodes/absent"))
        #expect(node.status == 404 && labels[node.routeIndex] == "/v1/nodes/{name}")
        let other = router.respond(to: HTTPRequest(method: "GET", path: "/nothing/here"))
        #expect(labels[other.routeIndex] == "other")
        #expect(labels[router.streamRouteIndex] == "/v1/events")
        #expect(labels[router.refusal(capacity: 1).routeIndex] == "/v1/events")
    }
}
