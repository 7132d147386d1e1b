import Logging
import Prometheus
import Synchronization

/// The HTTP front's metrics: one observation per answered request (``httpRequest(route:status:seconds:)``,
/// on libmicrohttpd's threads), whether the front listens, and the event watchers read at scrape time.
///
/// Families: `http_requests_total{route,code}`, `http_request_duration_seconds{route}`,
/// `epmd_gateway_http_up`, `epmd_event_watchers`. The HTTP series are made on first use and cached
/// per (route, status code), both from bounded sets.
public final class HTTPMetrics: Sendable {
    private let routes: Set<String>
    private let handles: HandleCache<HTTPKey, HTTPHandles>
    private let up: Gauge
    private let eventWatchers: Gauge
    private let eventWatcherSource = Mutex<(@Sendable () -> Int)?>(nil)
    private let logger: Logger

    /// Makes the front's handles in `collectors`.
    /// - Parameters:
    ///   - collectors: the registry the families live in.
    ///   - routes: the route templates the front reports; any other is counted as `other`.
    ///   - logger: where a route this module was not told about is reported.
    init(collectors: PrometheusCollectorRegistry, routes: [String], logger: Logger) {
        self.routes = Set(routes)
        self.logger = logger
        self.handles = HandleCache { key in
            HTTPHandles(
                requests: collectors.makeCounter(
                    descriptor: GatewayMetrics.descriptor(
                        "http_requests_total",
                        "HTTP requests answered, by route template and status code."
                    ),
                    labels: [("route", key.route), ("code", key.code)]
                ),
                duration: collectors.makeDurationHistogram(
                    descriptor: GatewayMetrics.descriptor(
                        "http_request_duration_seconds",
                        "HTTP requests from the handler's start to the response queued, by route template."
                    ),
                    labels: [("route", key.route)],
                    buckets: LoopMetrics.latencyBuckets
                )
            )
        }
        self.up = collectors.makeGauge(
            descriptor: GatewayMetrics.descriptor(
                "epmd_gateway_http_up",
                "1 while the HTTP front listens; 0 when it is off or its port could not be bound."
            ),
            labels: []
        )
        self.eventWatchers = collectors.makeGauge(
            descriptor: GatewayMetrics.descriptor("epmd_event_watchers", "Clients watching registry events now."),
            labels: []
        )
    }

    /// Counts one answered HTTP request. Pass it as `MicroHTTPDServer`'s observer.
    /// - Parameters:
    ///   - route: the route template; one not given at init is counted as `other`.
    ///   - status: the status code; one outside 100...599 is counted as `other`.
    ///   - seconds: the time the handler took.
    public func httpRequest(route: String, status: Int, seconds: Double) {
        let known = self.routes.contains(route)
        if !known { self.logger.debug("metrics: route \(route) counted as other") }
        let key = HTTPKey(
            route: known ? route : "other",
            code: (100...599).contains(status) ? String(status) : "other"
        )
        let handles = self.handles.handle(for: key)
        handles.requests.increment()
        handles.duration.record(GatewayMetrics.duration(seconds: seconds))
    }

    /// Sets `epmd_gateway_http_up`: 1 once the HTTP front listens, 0 if its port could not be bound.
    public func httpFrontStarted(_ listening: Bool) {
        self.up.set(to: listening ? 1 : 0)
    }

    /// Where `epmd_event_watchers` is read at scrape time when the scrape is not given a count: the
    /// HTTP front's open `/v1/events` streams, known only once it runs.
    public func readEventWatchers(from source: @escaping @Sendable () -> Int) {
        self.eventWatcherSource.withLock { $0 = source }
    }

    /// Sets `epmd_event_watchers` before a scrape.
    /// - Parameter eventWatchers: the count; nil reads the source given to ``readEventWatchers(from:)``
    ///   (0 without one).
    func scrape(eventWatchers: Int?) {
        let watchers = eventWatchers ?? self.eventWatcherSource.withLock { $0 }?() ?? 0
        self.eventWatchers.set(to: Double(watchers))
    }
}

/// A (route, code) pair, the labels of `http_requests_total`.
struct HTTPKey: Hashable, Sendable {
    var route: String
    var code: String
}

/// The two handles one HTTP request touches, found with one cache lookup.
final class HTTPHandles: Sendable {
    let requests: Counter
    let duration: DurationHistogram

    init(requests: Counter, duration: DurationHistogram) {
        self.requests = requests
        self.duration = duration
    }
}
