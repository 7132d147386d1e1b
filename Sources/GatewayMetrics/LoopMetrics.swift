import EPMDProtocol
import EPMDRegistry
import EPMDServer
import Logging
import Prometheus

/// The epmd loop's metrics: its ``EPMDServerInstruments`` (called on the loop thread: atomics, and a
/// lock only inside the histograms), and the open-connections gauge read at scrape time.
///
/// Families: `epmd_requests_total{request,result}`, `epmd_request_duration_seconds{request}`,
/// `epmd_registration_failures_total{reason}`, `epmd_connections`, `epmd_connections_accepted_total`,
/// `epmd_connections_rejected_total{reason}`, `epmd_connections_evicted_total{reason}`,
/// `epmd_connections_limit`, `epmd_connection_timeouts_total`, `epmd_malformed_packets_total{reason}`,
/// `epmd_connections_closed_total{reason}`, `epmd_registrations_replaced_total`, and the process's
/// descriptor split,
/// `epmd_gateway_descriptor_budget{part}`.
public final class LoopMetrics: EPMDServerInstruments {
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
    /// By `EPMDEvictionReason.rawValue`.
    private let evicted: [Counter]
    private let connectionsLimit: Gauge
    private let budget: [DescriptorBudgetPart: Gauge]
    private let timeouts: Counter
    private let malformed: [EPMDMalformedReason: Counter]
    /// By `CloseReason.labelIndex`.
    private let closed: [Counter]
    private let replaced: Counter
    private let logger: Logger

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

    /// The `reason` values of `epmd_connections_evicted_total` (every `EPMDEvictionReason`).
    public static let evictionReasons: [String] = EPMDEvictionReason.allCases.map(\.label)

    /// The parts of `epmd_gateway_descriptor_budget`.
    public enum DescriptorBudgetPart: String, CaseIterable, Sendable {
        /// Kept for the daemon itself and the HTTP front's own descriptors.
        case reserve
        /// The epmd connection cap.
        case epmd
        /// The HTTP connection limit.
        case http
    }

    /// Latency buckets, seconds: a lookup on loopback takes tens of microseconds, so the client
    /// defaults (5 ms to 10 s) would put everything in the first bucket.
    public static let latencyBuckets: [Duration] = [
        .microseconds(50), .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1),
        .microseconds(2500), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(100),
        .milliseconds(500),
    ]

    // MARK: - Init

    /// Makes every handle of the loop's families in `collectors`.
    /// - Parameters:
    ///   - collectors: the registry the families live in.
    ///   - logger: where a label value this module does not know is reported.
    init(collectors: PrometheusCollectorRegistry, logger: Logger) {
        self.logger = logger
        func counter(_ name: String, _ help: String, _ labels: [(String, String)] = []) -> Counter {
            collectors.makeCounter(descriptor: GatewayMetrics.descriptor(name, help), labels: labels)
        }
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
            logger.warning(
                "metrics: unexpected request result \(key.kind.label)/\(key.result.label), counted on its own"
            )
            return collectors.makeCounter(
                descriptor: GatewayMetrics.descriptor("epmd_requests_total", Self.requestsHelp),
                labels: [("request", key.kind.label), ("result", key.result.label)]
            )
        }
        self.requestDurations = EPMDRequestKind.allCases.sorted { $0.rawValue < $1.rawValue }.map { kind in
            collectors.makeDurationHistogram(
                descriptor: GatewayMetrics.descriptor(
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
        self.connections = collectors.makeGauge(
            descriptor: GatewayMetrics.descriptor("epmd_connections", "Connections open now on the epmd port."),
            labels: []
        )
        self.accepted = counter("epmd_connections_accepted_total", "Connections accepted on the epmd port.")
        self.rejected = Self.reasonCounters(
            EPMDRefusalReason.allCases,
            \.label,
            { counter("epmd_connections_rejected_total", "Accepts on the epmd port that failed, by reason.", $0) }
        )
        self.evicted = EPMDEvictionReason.allCases.sorted { $0.rawValue < $1.rawValue }.map { reason in
            counter(
                "epmd_connections_evicted_total",
                "Connections without a registration closed to admit a new one, by reason.",
                [("reason", reason.label)]
            )
        }
        self.connectionsLimit = collectors.makeGauge(
            descriptor: GatewayMetrics.descriptor(
                "epmd_connections_limit",
                "The epmd connection cap in force (0: none of its own)."
            ),
            labels: []
        )
        var budget: [DescriptorBudgetPart: Gauge] = [:]
        for part in DescriptorBudgetPart.allCases {
            budget[part] = collectors.makeGauge(
                descriptor: GatewayMetrics.descriptor(
                    "epmd_gateway_descriptor_budget",
                    "The split of the process's descriptor limit (RLIMIT_NOFILE), by part."
                ),
                labels: [("part", part.rawValue)]
            )
        }
        self.budget = budget
        self.timeouts = counter(
            "epmd_connection_timeouts_total",
            "Connections closed because their request did not arrive within the packet timeout."
        )
        self.malformed = Self.reasonCounters(
            EPMDMalformedReason.allCases,
            \.label,
            { counter("epmd_malformed_packets_total", "Connections closed for bad input, by reason.", $0) }
        )
        self.replaced = counter(
            "epmd_registrations_replaced_total",
            "Registrations ended because their name registered again after their connection had closed, "
                + "before its EOF was read (the re-registration race)."
        )
        self.closed = CloseReason.labels.map { label in
            counter(
                "epmd_connections_closed_total",
                "Connections on the epmd port closed, by reason (answered, peer_closed, io_error, timeout, ...).",
                [("reason", label)]
            )
        }
    }

    private static let requestsHelp = "epmd requests answered, by request type and result."

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

    // MARK: - EPMDServerInstruments

    public func requestServed(_ kind: EPMDRequestKind, result: EPMDRequestResult, seconds: Double) {
        let key = RequestKey(kind: kind, result: result)
        (self.requests[key.slot] ?? self.unexpectedRequests.handle(for: key)).increment()
        if kind.rawValue < self.requestDurations.count {
            self.requestDurations[kind.rawValue].record(GatewayMetrics.duration(seconds: seconds))
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

    public func connectionEvicted(_ reason: EPMDEvictionReason) {
        if reason.rawValue < self.evicted.count { self.evicted[reason.rawValue].increment() }
    }

    public func connectionClosed(_ reason: CloseReason) {
        let index = reason.labelIndex
        if index < self.closed.count { self.closed[index].increment() }
    }

    public func closedRegistrationReplaced() {
        self.replaced.increment()
    }

    public func connectionLimitChanged(_ limit: Int) {
        self.connectionsLimit.set(to: Double(limit))
    }

    // MARK: - Limits

    /// Sets `epmd_connections_limit` and `epmd_gateway_descriptor_budget` (once, at start).
    /// - Parameters:
    ///   - maxConnections: the epmd connection cap (0: none).
    ///   - reserve: descriptors kept for the daemon and the HTTP front's own.
    ///   - epmd: the epmd part (the cap).
    ///   - http: the HTTP connection limit (0 without the HTTP front).
    public func limits(maxConnections: Int, reserve: Int, epmd: Int, http: Int) {
        self.connectionsLimit.set(to: Double(maxConnections))
        self.budget[.reserve]?.set(to: Double(reserve))
        self.budget[.epmd]?.set(to: Double(epmd))
        self.budget[.http]?.set(to: Double(http))
    }

    // MARK: - Scrape time

    /// Sets `epmd_connections` before a scrape.
    /// - Parameter openConnections: connections open now on the epmd port (`EPMDServer.statistics`).
    func scrape(openConnections: Int) {
        self.connections.set(to: Double(openConnections))
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
