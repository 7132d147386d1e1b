import Synchronization
import Testing

@testable import GatewayMetrics

/// The HTTP front's connection families, with the names the hostile-client suite asserts.
@Suite struct HTTPConnectionMetricsTests {
    @Test("open connections (read at scrape time), refusals by reason and late heads; every series at 0 first")
    func families() {
        let metrics = GatewayMetricsTests.make()
        var parsed = GatewayMetricsTests.scrape(metrics)
        #expect(parsed["epmd_gateway_http_connections"] == 0)
        #expect(parsed["epmd_gateway_http_connections_rejected_total", ("reason", "per_address")] == 0)
        #expect(parsed["epmd_gateway_http_connections_rejected_total", ("reason", "limit")] == 0)
        #expect(parsed["epmd_gateway_http_header_timeouts_total"] == 0)
        #expect(parsed.types["epmd_gateway_http_connections"] == "gauge")
        #expect(parsed.types["epmd_gateway_http_connections_rejected_total"] == "counter")
        #expect(parsed.types["epmd_gateway_http_header_timeouts_total"] == "counter")
        for reason in HTTPConnectionMetrics.RequestRejection.allCases {
            #expect(parsed["epmd_gateway_http_requests_rejected_total", ("reason", reason.rawValue)] == 0)
        }
        #expect(parsed.types["epmd_gateway_http_requests_rejected_total"] == "counter")

        let open = Mutex(7)
        metrics.http.connections.readOpen { open.withLock { $0 } }
        metrics.http.connections.refused(.perAddress, count: 60)
        metrics.http.connections.refused(.perAddress)
        metrics.http.connections.refused(.limit, count: 9)
        metrics.http.connections.refused(.limit, count: 0)
        metrics.http.connections.headerTimedOut(count: 40)
        metrics.http.connections.headerTimedOut()
        metrics.http.connections.requestRejected(.headTooLarge, count: 30)
        metrics.http.connections.requestRejected(.headTooLarge)
        metrics.http.connections.requestRejected(.uriTooLong, count: 5)
        metrics.http.connections.requestRejected(.malformed, count: 0)
        parsed = GatewayMetricsTests.scrape(metrics)
        #expect(parsed["epmd_gateway_http_connections"] == 7)
        #expect(parsed["epmd_gateway_http_connections_rejected_total", ("reason", "per_address")] == 61)
        #expect(parsed["epmd_gateway_http_connections_rejected_total", ("reason", "limit")] == 9)
        #expect(parsed["epmd_gateway_http_header_timeouts_total"] == 41)
        #expect(parsed["epmd_gateway_http_requests_rejected_total", ("reason", "header_too_large")] == 31)
        #expect(parsed["epmd_gateway_http_requests_rejected_total", ("reason", "uri_too_long")] == 5)
        #expect(parsed["epmd_gateway_http_requests_rejected_total", ("reason", "malformed")] == 0)
        open.withLock { $0 = 2 }
        #expect(GatewayMetricsTests.scrape(metrics)["epmd_gateway_http_connections"] == 2)
    }
}
