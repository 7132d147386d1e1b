import EPMDPosix
import EPMDProtocol
import EPMDRegistry
import EPMDServer
import Prometheus
import Synchronization

/// The gateway's Prometheus metrics, served at `GET /metrics` in text format 0.0.4.
///
/// Three kinds of input feed it, all cheap enough for the threads that call them:
/// - the epmd loop, through ``EPMDServerInstruments`` (on the loop thread: atomics, and a lock only
///   inside the histograms);
/// - the registry, through ``record(_:)`` (a change observer, on the thread that made the change);
/// - the HTTP front, through ``httpRequest(route:status:seconds:)`` (on libmicrohttpd's threads).
///
/// Every handle is made once, here in `init`. The exceptions are the HTTP series, made on first use
/// and cached per (route, status code), both from bounded sets, and an unexpected request/result
/// pair, cached the same way. What is a state rather than an event (nodes by type, open
/// connections, the generation, the `process_*` facts) is read at scrape time by
/// ``exposition(registry:openConnections:eventWatchers:)``.
///
/// Names follow DESIGN §4 and prometheus.io's conventions (`epmd_` prefix, base units, `_total` on
/// counters); `promtool check metrics` finds nothing to lint in them, so none had to change. The
/// HTTP families keep the conventional unprefixed `http_requests_total` and
/// `http_request_duration_seconds`, and the `process_*` names are the ones every official client
/// exports, so standard dashboards and alerts work unchanged. Label values come from fixed sets:
/// the loop's reasons are enums whose every case is made at start (from `allCases` and `label`), and an
/// HTTP route or status code outside its set is counted as `other`, never as itself.
public final class GatewayMetrics: EPMDServerInstruments {
    /// The swift-prometheus registry that holds every family except the two rendered by hand
    /// (`process_cpu_seconds_total` and the opt-in `epmd_node_info`).
    public let collectors = PrometheusCollectorRegistry()
    /// Whether `epmd_node_info{name,port,type}` series are written (one per registered node).
    public let nodeInfo: Bool

    // Registry.
    private let nodesNormal: Gauge
    private let nodesHidden: Gauge
    private let nodesOther: Gauge
    private let registrations: Counter
    private let unregistrations: [UnregisterReason: Counter]
    private let nodeLifetime: DurationHistogram
    private let flaps: Counter
    private let generation: Gauge
    private let eventWatchers: Gauge

    // The epmd loop.
    /// By `RequestKey.slot` (arrays, not dictionaries: this is on every request's path, and hashing
    /// the key cost more than the counting).
    private let requests: [Counter?]
    private let unexpectedRequests: HandleCache<RequestKey, Counter>
    /// By `EPMDRequestKind.rawValue`.
    private let requestDurations: [DurationHistogram]
    private let registrationFailures: [NodeRegistryError: Counter]
    private let connections: Gauge
    private let accepted: Counter
    private let rejected: [EPMDRefusalReason: Counter]
    private let timeouts: Counter
    private let malformed: [EPMDMalformedReason: Counter]

    // The HTTP front.
    private let httpRoutes: Set<String>
    private let http: HandleCache<HTTPKey, HTTPHandles>
    private let httpUp: Gauge

    // The process.
    private let startTime: Gauge
    private let residentMemory: Gauge
    private let virtualMemory: Gauge
    private let openFDs: Gauge
    private let maxFDs: Gauge
    private let expositionSize = Atomic<Int>(4096)
    private let eventWatcherSource = Mutex<(@Sendable () -> Int)?>(nil)

    // MARK: - Label sets

    /// The request/result pairs the loop produces, made at 0 so that rates exist before the first one.
    public static let requestResults: [(EPMDRequestKind, [EPMDRequestResult])] = [
        (.alive2, [.ok, .refused]),
        (.portPlease2, [.ok, .notFound]),
        (.names, [.ok]),
        (.dump, [.ok]),
        (.kill, [.ok, .refused]),
        (.stop, [.ok, .notFound]),
    ]

    /// The `reason` values of `epmd_malformed_packets_total`: every `EPMDMalformedReason` (each
    /// `EPMDProtocolError`, and the loop's own refusals).
    public static let malformedReasons: [String] = EPMDMalformedReason.allCases.map(\.label)

    /// The `reason` values of `epmd_registration_failures_total` (every `NodeRegistryError`).
    public static let registrationFailureReasons: [String] = NodeRegistryError.allCases.map(\.label)

    /// The `reason` values of `epmd_connections_rejected_total` (every `EPMDRefusalReason`).
    public static let rejectionReasons: [String] = EPMDRefusalReason.allCases.map(\.label)

    /// Latency buckets, seconds: a lookup on loopback takes tens of microseconds, so the client
    /// defaults (5 ms to 10 s) would put everything in the first bucket.
    public static let latencyBuckets: [Duration] = [
        .microseconds(50), .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1),
        .microseconds(2500), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(100),
        .milliseconds(500),
    ]

    /// Registration lifetime buckets, 1 s to a day: the short ones are flapping nodes.
    public static let lifetimeBuckets: [Duration] = [1, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400].map {
        .seconds($0)
    }

    // MARK: - Init

    /// Makes every handle.
    /// - Parameters:
    ///   - build: the labels of `epmd_gateway_build_info`.
    ///   - httpRoutes: the route templates the HTTP front reports (`HTTPRouter.routes`); any other
    ///     route string is counted as `other`, so the `route` label stays bounded.
    ///   - nodeInfo: write one `epmd_node_info{name,port,type} 1` series per registered node.
    public init(build: BuildInfo, httpRoutes: [String], nodeInfo: Bool = false) {
        let collectors = self.collectors
        self.nodeInfo = nodeInfo

        func counter(_ name: String, _ help: String, _ labels: [(String, String)] = []) -> Counter {
            collectors.makeCounter(descriptor: Self.descriptor(name, help), labels: labels)
        }
        func gauge(_ name: String, _ help: String, _ labels: [(String, String)] = []) -> Gauge {
            collectors.makeGauge(descriptor: Self.descriptor(name, help), labels: labels)
        }

        // Registry.
        let nodesHelp = "Nodes registered now, by node type (normal 77, hidden 72, other codes)."
        self.nodesNormal = gauge("epmd_nodes", nodesHelp, [("type", NodeType.normal.label)])
        self.nodesHidden = gauge("epmd_nodes", nodesHelp, [("type", NodeType.hidden.label)])
        self.nodesOther = gauge("epmd_nodes", nodesHelp, [("type", NodeType.other(0).label)])
        self.registrations = counter(
            "epmd_registrations_total",
            "Registrations accepted (ALIVE2 answered with success)."
        )
        var unregistrations: [UnregisterReason: Counter] = [:]
        for reason in UnregisterReason.allCases {
            unregistrations[reason] = counter(
                "epmd_unregistrations_total",
                "Registrations that ended, by reason.",
                [("reason", reason.label)]
            )
        }
        self.unregistrations = unregistrations
        self.nodeLifetime = collectors.makeDurationHistogram(
            descriptor: Self.descriptor(
                "epmd_node_lifetime_seconds",
                "How long registrations lived, observed when they end (short lifetimes are flapping nodes)."
            ),
            buckets: Self.lifetimeBuckets
        )
        self.flaps = counter(
            "epmd_node_flaps_total",
            "Registrations that ended within the flap window of their start."
        )
        self.generation = gauge(
            "epmd_registry_generation",
            "The registry's change counter: one more for every registration and unregistration."
        )
        self.eventWatchers = gauge("epmd_event_watchers", "Clients watching registry events now.")

        // The epmd loop.
        var requests = [Counter?](repeating: nil, count: RequestKey.slots)
        for (kind, results) in Self.requestResults {
            for result in results {
                requests[RequestKey(kind: kind, result: result).slot] = counter(
                    "epmd_requests_total",
                    Self.requestsHelp,
                    [("request", kind.label), ("result", result.label)]
                )
            }
        }
        self.requests = requests
        self.unexpectedRequests = HandleCache { key in
            collectors.makeCounter(
                descriptor: Self.descriptor("epmd_requests_total", Self.requestsHelp),
                labels: [("request", key.kind.label), ("result", key.result.label)]
            )
        }
        self.requestDurations = EPMDRequestKind.allCases.sorted { $0.rawValue < $1.rawValue }.map { kind in
            collectors.makeDurationHistogram(
                descriptor: Self.descriptor(
                    "epmd_request_duration_seconds",
                    "epmd requests from accept to the reply handed to the kernel, by request type."
                ),
                labels: [("request", kind.label)],
                buckets: Self.latencyBuckets
            )
        }
        self.registrationFailures = Self.reasonCounters(
            NodeRegistryError.allCases,
            \.label,
            { counter("epmd_registration_failures_total", "Well-formed registrations refused, by reason.", $0) }
        )
        self.connections = gauge("epmd_connections", "Connections open now on the epmd port.")
        self.accepted = counter("epmd_connections_accepted_total", "Connections accepted on the epmd port.")
        self.rejected = Self.reasonCounters(
            EPMDRefusalReason.allCases,
            \.label,
            { counter("epmd_connections_rejected_total", "Accepts on the epmd port that failed, by reason.", $0) }
        )
        self.timeouts = counter(
            "epmd_connection_timeouts_total",
            "Connections closed because their request did not arrive within the packet timeout."
        )
        self.malformed = Self.reasonCounters(
            EPMDMalformedReason.allCases,
            \.label,
            { counter("epmd_malformed_packets_total", "Connections closed for bad input, by reason.", $0) }
        )

        // The HTTP front.
        self.httpRoutes = Set(httpRoutes)
        self.http = HandleCache { key in
            HTTPHandles(
                requests: collectors.makeCounter(
                    descriptor: Self.descriptor(
                        "http_requests_total",
                        "HTTP requests answered, by route template and status code."
                    ),
                    labels: [("route", key.route), ("code", key.code)]
                ),
                duration: collectors.makeDurationHistogram(
                    descriptor: Self.descriptor(
                        "http_request_duration_seconds",
                        "HTTP requests from the handler's start to the response queued, by route template."
                    ),
                    labels: [("route", key.route)],
                    buckets: Self.latencyBuckets
                )
            )
        }
        self.httpUp = gauge(
            "epmd_gateway_http_up",
            "1 while the HTTP front listens; 0 when it is off or its port could not be bound."
        )

        // Build and process.
        gauge(
            "epmd_gateway_build_info",
            "Build facts as labels; the value is always 1.",
            [
                ("version", build.version), ("swift_version", build.swiftVersion),
                ("libmicrohttpd_version", build.libmicrohttpdVersion),
            ]
        )
        .set(to: 1)
        self.startTime = gauge("process_start_time_seconds", "Start time of the process since unix epoch in seconds.")
        self.residentMemory = gauge("process_resident_memory_bytes", "Resident memory size in bytes.")
        self.virtualMemory = gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.")
        self.openFDs = gauge("process_open_fds", "Number of open file descriptors.")
        self.maxFDs = gauge("process_max_fds", "Maximum number of open file descriptors.")
        self.startTime.set(to: Self.wallClock())
    }

    private static let requestsHelp = "epmd requests answered, by request type and result."

    private static func descriptor(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
    }

    /// One counter per reason of a closed set (the loop's reasons are enums: no reason can be unknown).
    private static func reasonCounters<Reason: Hashable>(
        _ reasons: [Reason],
        _ label: (Reason) -> String,
        _ make: ([(String, String)]) -> Counter
    ) -> [Reason: Counter] {
        var counters: [Reason: Counter] = [:]
        for reason in reasons { counters[reason] = make([("reason", label(reason))]) }
        return counters
    }

    private static func wallClock() -> Double {
        ProcessFacts.wallClockSeconds()
    }

    /// Seconds as a `Duration` for the histograms; negative, NaN or absurd values (a clock that
    /// stepped) are clamped instead of trapping.
    static func duration(seconds: Double) -> Duration {
        guard seconds.isFinite, seconds > 0 else { return .zero }
        return .nanoseconds(Int64(min(seconds, 1e9) * 1e9))
    }

    // MARK: - Registry events

    /// Counts one registry change. Pass it to `NodeRegistry.addChangeObserver`.
    public func record(_ event: RegistryEvent) {
        switch event.kind {
        case .registered:
            self.registrations.increment()
        case .unregistered(let reason):
            self.unregistrations[reason]?.increment()
            if let lifetime = event.lifetime { self.nodeLifetime.record(Self.duration(seconds: lifetime)) }
            if event.isFlap { self.flaps.increment() }
        }
    }

    // MARK: - EPMDServerInstruments

    public func requestServed(_ kind: EPMDRequestKind, result: EPMDRequestResult, seconds: Double) {
        let key = RequestKey(kind: kind, result: result)
        (self.requests[key.slot] ?? self.unexpectedRequests.handle(for: key)).increment()
        if kind.rawValue < self.requestDurations.count {
            self.requestDurations[kind.rawValue].record(Self.duration(seconds: seconds))
        }
    }

    public func connectionAccepted() {
        self.accepted.increment()
    }

    public func connectionRejected(_ reason: EPMDRefusalReason) {
        self.rejected[reason]?.increment()
    }

    public func packetMalformed(_ reason: EPMDMalformedReason) {
        self.malformed[reason]?.increment()
    }

    public func registrationFailed(_ reason: NodeRegistryError) {
        self.registrationFailures[reason]?.increment()
    }

    public func connectionTimedOut() {
        self.timeouts.increment()
    }

    // MARK: - HTTP

    /// Counts one answered HTTP request. Pass it as `MicroHTTPDServer`'s observer.
    /// - Parameters:
    ///   - route: the route template; one not given at init is counted as `other`.
    ///   - status: the status code; one outside 100...599 is counted as `other`.
    ///   - seconds: the time the handler took.
    public func httpRequest(route: String, status: Int, seconds: Double) {
        let key = HTTPKey(
            route: self.httpRoutes.contains(route) ? route : "other",
            code: (100...599).contains(status) ? String(status) : "other"
        )
        let handles = self.http.handle(for: key)
        handles.requests.increment()
        handles.duration.record(Self.duration(seconds: seconds))
    }

    /// Sets `epmd_gateway_http_up`: 1 once the HTTP front listens, 0 if its port could not be bound.
    public func httpFrontStarted(_ listening: Bool) {
        self.httpUp.set(to: listening ? 1 : 0)
    }

    /// Where `epmd_event_watchers` is read at scrape time when ``exposition(registry:openConnections:eventWatchers:)``
    /// is not given a count: the HTTP front's open `/v1/events` streams, known only once it runs.
    public func readEventWatchers(from source: @escaping @Sendable () -> Int) {
        self.eventWatcherSource.withLock { $0 = source }
    }

    // MARK: - Exposition

    /// The whole exposition, text format 0.0.4. Reads the scrape-time values first: nodes by type
    /// and the generation (two short registry locks, no per-node work), the `process_*` facts from
    /// `/proc/self`, and, only with ``nodeInfo``, a registry snapshot for `epmd_node_info`.
    /// - Parameters:
    ///   - registry: the live registry.
    ///   - openConnections: connections open now on the epmd port (`EPMDServer.statistics`).
    ///   - eventWatchers: clients watching registry events now; nil reads the source given to
    ///     ``readEventWatchers(from:)`` (0 without one).
    /// - Returns: the UTF-8 text.
    public func exposition(registry: NodeRegistry, openConnections: Int, eventWatchers: Int? = nil) -> [UInt8] {
        let counts = registry.typeCounts
        self.nodesNormal.set(to: Double(counts.normal))
        self.nodesHidden.set(to: Double(counts.hidden))
        self.nodesOther.set(to: Double(counts.other))
        self.generation.set(to: Double(registry.generation))
        self.connections.set(to: Double(openConnections))
        let watchers = eventWatchers ?? self.eventWatcherSource.withLock { $0 }?() ?? 0
        self.eventWatchers.set(to: Double(watchers))
        let process = ProcessStatistics.current()
        if let value = process.residentMemoryBytes { self.residentMemory.set(to: value) }
        if let value = process.virtualMemoryBytes { self.virtualMemory.set(to: value) }
        if let value = process.openFDs { self.openFDs.set(to: Double(value)) }
        if let value = process.maxFDs { self.maxFDs.set(to: value) }

        var buffer: [UInt8] = []
        buffer.reserveCapacity(self.expositionSize.load(ordering: .relaxed))
        self.collectors.emit(into: &buffer)
        // A counter, but its value is the kernel's (utime + stime) and swift-prometheus counters can
        // only be incremented: adding deltas at each scrape would need a lock against concurrent
        // scrapes and accumulate rounding. Written by hand, it is exactly what /proc says.
        if let cpu = process.cpuSeconds {
            TextExposition.appendHeader(
                "process_cpu_seconds_total",
                help: "Total user and system CPU time spent in seconds.",
                type: "counter",
                to: &buffer
            )
            buffer.append(contentsOf: "process_cpu_seconds_total ".utf8)
            TextExposition.appendValue(cpu, to: &buffer)
            buffer.append(UInt8(ascii: "\n"))
        }
        if self.nodeInfo {
            Self.appendNodeInfo(registry.versionedSnapshot().nodes, to: &buffer)
        }
        self.expositionSize.store(buffer.count + 1024, ordering: .relaxed)
        return buffer
    }

    /// `epmd_node_info{name,port,type} 1` per node. Rendered by hand from the snapshot: the label sets
    /// come and go with registrations, and swift-prometheus handles would have to be unregistered one
    /// by one as nodes leave.
    static func appendNodeInfo(_ nodes: [RegisteredNode], to buffer: inout [UInt8]) {
        TextExposition.appendHeader(
            "epmd_node_info",
            help: "One series per registered node (opt-in); the value is always 1.",
            type: "gauge",
            to: &buffer
        )
        for node in nodes {
            buffer.append(contentsOf: "epmd_node_info{name=\"".utf8)
            TextExposition.appendLabelValue(node.name, to: &buffer)
            buffer.append(contentsOf: "\",port=\"".utf8)
            TextExposition.appendDecimal(node.port, to: &buffer)
            buffer.append(contentsOf: "\",type=\"".utf8)
            buffer.append(contentsOf: node.request.type.label.utf8)
            buffer.append(contentsOf: "\"} 1\n".utf8)
        }
    }
}

/// A request/result pair, the labels of `epmd_requests_total`.
struct RequestKey: Hashable, Sendable {
    var kind: EPMDRequestKind
    var result: EPMDRequestResult

    /// Every (kind, result) pair has its own index below `slots`.
    static let slots = EPMDRequestKind.allCases.count * 3

    var slot: Int {
        let result: Int
        switch self.result {
        case .ok: result = 0
        case .notFound: result = 1
        case .refused: result = 2
        }
        return self.kind.rawValue * 3 + result
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
