import Prometheus

/// Hand-overs refused by the running gateway: `epmd_handover_refusals_total{reason}`, every series
/// made at init. (A hand-over that succeeded is counted by the successor, as
/// `epmd_restarts_total{method="handover"}`.)
public final class HandoverMetrics: Sendable {
    /// The `reason` label values.
    public static let reasons = ["credentials", "version", "malformed", "draining", "failed"]

    private let counters: [String: Counter]

    init(collectors: PrometheusCollectorRegistry) {
        var counters: [String: Counter] = [:]
        for reason in Self.reasons {
            counters[reason] = collectors.makeCounter(
                descriptor: GatewayMetrics.descriptor(
                    "epmd_handover_refusals_total",
                    "Hand-overs refused or failed (the gateway serves on), by reason."
                ),
                labels: [("reason", reason)]
            )
        }
        self.counters = counters
    }

    /// Counts one refusal; a reason outside ``reasons`` is ignored.
    public func refused(reason: String) {
        self.counters[reason]?.increment()
    }
}
