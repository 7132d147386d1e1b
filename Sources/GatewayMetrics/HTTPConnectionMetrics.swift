import Prometheus
import Synchronization

/// The HTTP front's connections under its limits: how many are open (read at scrape time), how many
/// were refused at accept and why, and how many were closed because their request head was late.
///
/// Families: `epmd_gateway_http_connections` (gauge),
/// `epmd_gateway_http_connections_rejected_total{reason="per_address"|"limit"}`,
/// `epmd_gateway_http_header_timeouts_total`,
/// `epmd_gateway_http_requests_rejected_total{reason="header_too_large"|"uri_too_long"|"malformed"}`.
/// Every series is made at init (at 0), so an alert on
/// `increase()` sees the first refusal.
public final class HTTPConnectionMetrics: Sendable {
    /// Why the front refused a connection at accept: the `reason` label.
    public enum Refusal: String, Sendable, CaseIterable {
        /// Its peer address held its share (`--http-connections-per-address`).
        case perAddress = "per_address"
        /// The front held its connection limit.
        case limit
    }

    /// Why libmicrohttpd answered a request with an error itself (before the router saw it): the
    /// `reason` label of `epmd_gateway_http_requests_rejected_total`.
    public enum RequestRejection: String, Sendable, CaseIterable {
        /// 431: the request head did not fit (a huge header, thousands of headers).
        case headTooLarge = "header_too_large"
        /// 414: the request line did not fit (a huge URL).
        case uriTooLong = "uri_too_long"
        /// Another error status (400, 413, 505, ...).
        case malformed
    }

    private let open: Gauge
    private let requestsRejected: [Counter]
    private let openSource = Mutex<CountSource?>(nil)
    private let refused: [Counter]
    private let headerTimeouts: Counter

    init(collectors: PrometheusCollectorRegistry) {
        self.open = collectors.makeGauge(
            descriptor: GatewayMetrics.descriptor("epmd_gateway_http_connections", "HTTP connections open now."),
            labels: []
        )
        self.refused = Refusal.allCases.map { reason in
            collectors.makeCounter(
                descriptor: GatewayMetrics.descriptor(
                    "epmd_gateway_http_connections_rejected_total",
                    "HTTP connections refused at accept, by reason: per_address (the peer address held its "
                        + "share) or limit (the front was full)."
                ),
                labels: [("reason", reason.rawValue)]
            )
        }
        self.requestsRejected = RequestRejection.allCases.map { reason in
            collectors.makeCounter(
                descriptor: GatewayMetrics.descriptor(
                    "epmd_gateway_http_requests_rejected_total",
                    "HTTP requests libmicrohttpd answered with an error itself and closed, by reason: "
                        + "header_too_large (431), uri_too_long (414), malformed (another status)."
                ),
                labels: [("reason", reason.rawValue)]
            )
        }
        self.headerTimeouts = collectors.makeCounter(
            descriptor: GatewayMetrics.descriptor(
                "epmd_gateway_http_header_timeouts_total",
                "HTTP connections closed because their request head was not complete by its deadline."
            ),
            labels: []
        )
    }

    /// Counts `count` connections refused for `reason`.
    public func refused(_ reason: Refusal, count: Int = 1) {
        guard count > 0, let index = Refusal.allCases.firstIndex(of: reason) else { return }
        self.refused[index].increment(by: Int64(count))
    }

    /// Counts `count` connections closed for a late request head.
    public func headerTimedOut(count: Int = 1) {
        guard count > 0 else { return }
        self.headerTimeouts.increment(by: Int64(count))
    }

    /// Counts `count` requests libmicrohttpd answered with an error itself, for `reason`.
    public func requestRejected(_ reason: RequestRejection, count: Int = 1) {
        guard count > 0, let index = RequestRejection.allCases.firstIndex(of: reason) else { return }
        self.requestsRejected[index].increment(by: Int64(count))
    }

    /// Where `epmd_gateway_http_connections` is read at scrape time (the HTTP front, once it runs).
    public func readOpen(from source: @escaping @Sendable () -> Int) {
        let box = CountSource(source)
        self.openSource.withLock { $0 = box }
    }

    /// Sets the gauge before a scrape (0 without a source).
    func scrape() {
        self.open.set(to: Double(self.openSource.withLock { $0 }?.read() ?? 0))
    }
}
