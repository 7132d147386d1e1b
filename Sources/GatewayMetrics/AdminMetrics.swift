import Prometheus

/// The admin API's requests: `epmd_gateway_admin_requests_total{result="ok"|"unauthorized"|"not_found"}`,
/// every series made at init (so each reads 0 until counted).
public final class AdminMetrics: Sendable {
    /// The `result` label values.
    public static let results = ["ok", "unauthorized", "not_found"]

    private let counters: [String: Counter]

    init(collectors: PrometheusCollectorRegistry) {
        var counters: [String: Counter] = [:]
        for result in Self.results {
            counters[result] = collectors.makeCounter(
                descriptor: GatewayMetrics.descriptor(
                    "epmd_gateway_admin_requests_total",
                    "Admin API requests (forced unregistration), by result."
                ),
                labels: [("result", result)]
            )
        }
        self.counters = counters
    }

    /// Counts one admin request; a result outside ``results`` is ignored.
    public func adminRequest(result: String) {
        self.counters[result]?.increment()
    }
}
