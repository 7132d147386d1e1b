import Logging
import Prometheus
import Testing

@testable import GatewayMetrics

/// The HTTP front reports a route by its index in the label list the metrics were given; codes the
/// API answers have slots of their own, any other valid code is still counted as itself.
@Suite struct HTTPMetricsIndexTests {
    @Test("by index: the label at that index; out of range: other; every slot code and an unusual one")
    func byIndex() {
        let metrics = GatewayMetricsTests.make()
        let routes = GatewayMetricsTests.routes
        let node = routes.firstIndex(of: "/v1/nodes/{name}") ?? 0
        metrics.http.httpRequest(routeIndex: node, status: 200, seconds: 0.0001)
        metrics.http.httpRequest(routeIndex: node, status: 200, seconds: 0.0001)
        metrics.http.httpRequest(routeIndex: node, status: 404, seconds: 0.0001)
        metrics.http.httpRequest(routeIndex: routes.count, status: 200, seconds: 0.0001)
        metrics.http.httpRequest(routeIndex: -1, status: 200, seconds: 0.0001)
        metrics.http.httpRequest(routeIndex: 0, status: 99, seconds: 0.0001)
        metrics.http.httpRequest(routeIndex: 0, status: 418, seconds: 0.0001)
        for code in HTTPMetrics.slotCodes {
            metrics.http.httpRequest(routeIndex: 1, status: code, seconds: 0.0001)
        }
        let parsed = GatewayMetricsTests.scrape(metrics)
        #expect(parsed["http_requests_total", ("route", "/v1/nodes/{name}"), ("code", "200")] == 2)
        #expect(parsed["http_requests_total", ("route", "/v1/nodes/{name}"), ("code", "404")] == 1)
        #expect(parsed["http_request_duration_seconds_count", ("route", "/v1/nodes/{name}")] == 3)
        #expect(parsed["http_requests_total", ("route", "other"), ("code", "200")] == 2)
        #expect(parsed["http_requests_total", ("route", routes[0]), ("code", "other")] == 1)
        #expect(parsed["http_requests_total", ("route", routes[0]), ("code", "418")] == 1)
        for code in HTTPMetrics.slotCodes {
            #expect(parsed["http_requests_total", ("route", routes[1]), ("code", String(code))] == 1)
        }
        #expect(
            parsed["http_request_duration_seconds_count", ("route", routes[1])] == Double(HTTPMetrics.slotCodes.count)
        )
        // Only counted series exist: node 200 and 404, other 200, route 0 other and 418, the slot codes.
        let series = parsed.seriesKeys.filter { $0.hasPrefix("http_requests_total") }
        #expect(series.count == 5 + HTTPMetrics.slotCodes.count)
    }

    @Test("a label list without other gets one: unknown indexes are counted there")
    func otherAdded() {
        let metrics = GatewayMetrics(
            build: BuildInfo(version: "1", libmicrohttpdVersion: "0.9.75", swiftVersion: "6.3.1"),
            httpRoutes: ["/a", "/b"],
            logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })
        )
        metrics.http.httpRequest(routeIndex: 2, status: 200, seconds: 0)
        metrics.http.httpRequest(routeIndex: 7, status: 200, seconds: 0)
        metrics.http.httpRequest(routeIndex: 1, status: 200, seconds: 0)
        let parsed = GatewayMetricsTests.scrape(metrics)
        #expect(parsed["http_requests_total", ("route", "other"), ("code", "200")] == 2)
        #expect(parsed["http_requests_total", ("route", "/b"), ("code", "200")] == 1)
    }

    @Test("the lock-free duration histogram writes exactly what swift-prometheus writes for the same observations")
    func durationsAsPrometheus() {
        let metrics = GatewayMetricsTests.make()
        let reference = PrometheusCollectorRegistry()
        let histogram = reference.makeDurationHistogram(
            descriptor: GatewayMetrics.descriptor(HTTPMetrics.durationName, HTTPMetrics.durationHelp),
            labels: [("route", "/v1/nodes")],
            buckets: LoopMetrics.latencyBuckets
        )
        // Zero, exactly on bounds, between bounds, past the last bound, a clock that stepped back.
        let seconds = [0, 0.00005, 0.0000500001, 0.0001, 0.00033, 0.001, 0.5, 0.5000001, 2, 1234.5, -1, .nan]
        for value in seconds {
            metrics.http.httpRequest(route: "/v1/nodes", status: 200, seconds: value)
            histogram.record(GatewayMetrics.duration(seconds: value))
        }
        var expected: [UInt8] = []
        reference.emit(into: &expected)
        var written: [UInt8] = []
        metrics.http.appendDurations(to: &written)
        #expect(String(decoding: written, as: UTF8.self) == String(decoding: expected, as: UTF8.self))
        #expect(String(decoding: written, as: UTF8.self).contains("_count{route=\"/v1/nodes\"} 12\n"))
        // No request yet: no family at all.
        var empty: [UInt8] = []
        GatewayMetricsTests.make().http.appendDurations(to: &empty)
        #expect(empty.isEmpty)
    }
}
