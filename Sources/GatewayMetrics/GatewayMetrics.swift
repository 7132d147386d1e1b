import EPMDRegistry
import Logging
import Prometheus
import Synchronization

/// The gateway's Prometheus metrics, served at `GET /metrics` in text format 0.0.4: one collector
/// registry, and one part per source it listens to.
///
/// - ``loop``: the epmd loop's ``EPMDServerInstruments`` (pass it to `EPMDServer`);
/// - ``registry``: registry change events (pass ``RegistryMetrics/record(_:)`` to
///   `NodeRegistry.addChangeObserver`);
/// - ``http``: the HTTP front's per-request observer;
/// - ``process``: the `process_*` facts, read at scrape time.
///
/// Every handle is made once, in `init`. The exceptions are the HTTP series, made on first use
/// (so only counted series appear) in a (route, status code) table made at init and read by index,
/// both from bounded sets, and an unexpected request/result pair, cached per pair. What is a state rather than an event (nodes by type, open
/// connections, the generation, the `process_*` facts) is read at scrape time by
/// ``exposition(registry:openConnections:eventWatchers:)``.
///
/// Names follow DESIGN §4 and prometheus.io's conventions (`epmd_` prefix, base units, `_total` on
/// counters); `promtool check metrics` finds nothing to lint in them, so none had to change. The
/// HTTP families keep the conventional unprefixed `http_requests_total` and
/// `http_request_duration_seconds`, and the `process_*` names are the ones every official client
/// exports, so standard dashboards and alerts work unchanged. Label values come from fixed code
/// sets; a value outside them is counted as `other`, never as itself.
public final class GatewayMetrics: Sendable {
    /// The swift-prometheus registry that holds every family except the two rendered by hand
    /// (`process_cpu_seconds_total` and the opt-in `epmd_node_info`).
    public let collectors = PrometheusCollectorRegistry()
    /// Whether `epmd_node_info{name,port,type}` series are written (one per registered node).
    public let nodeInfo: Bool
    /// The epmd loop's instruments.
    public let loop: LoopMetrics
    /// The registry's events and scrape-time gauges.
    public let registry: RegistryMetrics
    /// The HTTP front's requests, its state and its event watchers.
    public let http: HTTPMetrics
    /// The `process_*` families.
    public let process: ProcessMetrics
    /// The admin API's requests.
    public let admin: AdminMetrics
    /// Hand-overs refused.
    public let handover: HandoverMetrics
    private let expositionSize = Atomic<Int>(4096)
    /// `epmd_node_info` as rendered for the registry's generation (only with ``nodeInfo``).
    let nodeInfoCache = NodeInfoCache()

    /// Makes every handle.
    /// - Parameters:
    ///   - build: the labels of `epmd_gateway_build_info`.
    ///   - httpRoutes: the route templates the HTTP front reports, in the order of the indexes it
    ///     reports them by (`HTTPRoute.allCases.map(\.label)`); any other route is counted as `other`,
    ///     so the `route` label stays bounded.
    ///   - nodeInfo: write one `epmd_node_info{name,port,type} 1` series per registered node.
    ///   - logger: where the metrics log (an unexpected label value, a `/proc` read that failed).
    public init(build: BuildInfo, httpRoutes: [String], nodeInfo: Bool = false, logger: Logger) {
        self.nodeInfo = nodeInfo
        self.registry = RegistryMetrics(collectors: self.collectors)
        self.loop = LoopMetrics(collectors: self.collectors, logger: logger)
        self.http = HTTPMetrics(collectors: self.collectors, routes: httpRoutes, logger: logger)
        self.collectors.makeGauge(
            descriptor: Self.descriptor("epmd_gateway_build_info", "Build facts as labels; the value is always 1."),
            labels: [
                ("version", build.version), ("swift_version", build.swiftVersion),
                ("libmicrohttpd_version", build.libmicrohttpdVersion),
            ]
        )
        .set(to: 1)
        self.process = ProcessMetrics(collectors: self.collectors, logger: logger)
        self.admin = AdminMetrics(collectors: self.collectors)
        self.handover = HandoverMetrics(collectors: self.collectors)
    }

    static func descriptor(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
    }

    /// Seconds as a `Duration` for the histograms; negative, NaN or absurd values (a clock that
    /// stepped) are clamped instead of trapping.
    static func duration(seconds: Double) -> Duration {
        .nanoseconds(Self.nanoseconds(seconds: seconds))
    }

    /// ``duration(seconds:)`` as nanoseconds.
    static func nanoseconds(seconds: Double) -> Int64 {
        guard seconds.isFinite, seconds > 0 else { return 0 }
        return Int64(min(seconds, 1e9) * 1e9)
    }

    // MARK: - Exposition

    /// The whole exposition, text format 0.0.4. Reads the scrape-time values first: nodes by type
    /// and the generation (two short registry locks, no per-node work), the `process_*` facts from
    /// `/proc/self`, and, only with ``nodeInfo``, `epmd_node_info`: a registry snapshot rendered once
    /// per registry generation (``NodeInfoCache``), so a burst of scrapes renders it once.
    /// - Parameters:
    ///   - registry: the live registry.
    ///   - openConnections: connections open now on the epmd port (`EPMDServer.statistics`).
    ///   - eventWatchers: clients watching registry events now; nil reads the source given to
    ///     ``HTTPMetrics/readEventWatchers(from:)`` (0 without one).
    /// - Returns: the UTF-8 text.
    public func exposition(registry: NodeRegistry, openConnections: Int, eventWatchers: Int? = nil) -> [UInt8] {
        self.registry.scrape(registry)
        self.loop.scrape(openConnections: openConnections)
        self.http.scrape(eventWatchers: eventWatchers)
        let cpu = self.process.scrape()

        var buffer: [UInt8] = []
        buffer.reserveCapacity(self.expositionSize.load(ordering: .relaxed))
        self.collectors.emit(into: &buffer)
        self.http.appendDurations(to: &buffer)
        if let cpu { ProcessMetrics.appendCPUSeconds(cpu, to: &buffer) }
        if self.nodeInfo { self.nodeInfoCache.append(from: registry, to: &buffer) }
        self.expositionSize.store(buffer.count + 1024, ordering: .relaxed)
        return buffer
    }
}
