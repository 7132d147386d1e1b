import Atomics
import Logging
import Prometheus
import Synchronization

/// The HTTP front's metrics: one observation per answered request (``httpRequest(routeIndex:status:seconds:)``,
/// on libmicrohttpd's threads), whether the front listens, and the event watchers read at scrape time.
///
/// Families: `http_requests_total{route,code}`, `http_request_duration_seconds{route}`,
/// `epmd_gateway_http_up`, `epmd_event_watchers`, and the connection families of ``connections``. The HTTP series appear on first use, both label
/// values from bounded sets. A request finds its series by array index: the route's index in the label
/// list given at init, and a slot for each status code the API answers (``slotCodes``), in a table made
/// at init whose counters are made once (one atomic load per request after that), and the route's
/// ``DurationBuckets`` (two atomic additions): no hashing, no lock, no allocation. A code without a
/// slot (in 100...599, rare) goes through a cache keyed by label. The duration histogram is written by
/// hand at scrape time (``appendDurations(to:)``), line for line as swift-prometheus writes one.
public final class HTTPMetrics: Sendable {
    /// The route labels, by index; the last is `other` when the list given at init had none.
    private let labels: [String]
    private let routeIndex: [String: Int]
    /// The index of the `other` route: an unknown route (or index) is counted there.
    private let otherRoute: Int
    /// `labels.count` rows of `slotsPerRoute` entries: the series of (route, code slot).
    private let table: [HTTPSeries]
    private let unusualCodes: HandleCache<HTTPKey, HTTPHandles>
    /// `http_request_duration_seconds`, by route index.
    private let durations: [DurationBuckets]
    private let up: Gauge
    private let eventWatchers: Gauge
    private let eventWatcherSource = Mutex<CountSource?>(nil)
    private let logger: Logger
    /// Connections open, refused at accept, closed for a late request head.
    public let connections: HTTPConnectionMetrics

    /// The status codes with a slot of their own: every code the API and the daemon answer with.
    static let slotCodes = [200, 304, 400, 404, 405, 406, 414, 431, 500, 503]
    /// The slot of codes outside 100...599, labeled `other`.
    private static let otherCodeSlot = slotCodes.count
    private static let slotsPerRoute = slotCodes.count + 1

    /// The slot of `status`: its own, the `other` slot for a code outside 100...599, or nil for a
    /// valid code without a slot.
    private static func slot(_ status: Int) -> Int? {
        switch status {
        case 200: 0
        case 304: 1
        case 400: 2
        case 404: 3
        case 405: 4
        case 406: 5
        case 414: 6
        case 431: 7
        case 500: 8
        case 503: 9
        case 100...599: nil
        default: Self.otherCodeSlot
        }
    }

    /// Makes the front's handles in `collectors`.
    /// - Parameters:
    ///   - collectors: the registry the families live in.
    ///   - routes: the route templates the front reports, in the order of the indexes it reports
    ///     (`HTTPRoute.allCases.map(\.label)`); any other is counted as `other`.
    ///   - logger: where a route this module was not told about is reported.
    init(collectors: PrometheusCollectorRegistry, routes: [String], logger: Logger) {
        var labels = routes
        if !labels.contains("other") { labels.append("other") }
        self.labels = labels
        self.routeIndex = Dictionary(labels.enumerated().map { ($1, $0) }, uniquingKeysWith: { first, _ in first })
        self.otherRoute = self.routeIndex["other"] ?? labels.count - 1
        self.logger = logger
        let make: @Sendable (HTTPKey) -> HTTPHandles = { key in
            HTTPHandles(
                requests: collectors.makeCounter(
                    descriptor: GatewayMetrics.descriptor(
                        "http_requests_total",
                        "HTTP requests answered, by route template and status code."
                    ),
                    labels: [("route", key.route), ("code", key.code)]
                )
            )
        }
        self.unusualCodes = HandleCache(make: make)
        let codes = Self.slotCodes.map { String($0) } + ["other"]
        self.durations = labels.map { DurationBuckets(route: $0, bounds: LoopMetrics.latencyBuckets) }
        self.table = labels.flatMap { route in
            codes.map { HTTPSeries(key: HTTPKey(route: route, code: $0), make: make) }
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
        self.connections = HTTPConnectionMetrics(collectors: collectors)
    }

    /// Counts one answered HTTP request. Pass it as `MicroHTTPDServer`'s observer.
    /// - Parameters:
    ///   - routeIndex: the route's index in the list given at init; one outside it is counted as `other`.
    ///   - status: the status code; one outside 100...599 is counted as `other`.
    ///   - seconds: the time the handler took.
    public func httpRequest(routeIndex: Int, status: Int, seconds: Double) {
        let route = self.labels.indices.contains(routeIndex) ? routeIndex : self.otherRoute
        let handles: HTTPHandles
        if let slot = Self.slot(status) {
            handles = self.table[route * Self.slotsPerRoute + slot].handles
        } else {
            handles = self.unusualCodes.handle(for: HTTPKey(route: self.labels[route], code: String(status)))
        }
        handles.requests.increment()
        self.durations[route].record(nanoseconds: GatewayMetrics.nanoseconds(seconds: seconds))
    }

    /// Counts one answered HTTP request by route template (a lookup by string: for callers without
    /// the route's index).
    /// - Parameters:
    ///   - route: the route template; one not given at init is counted as `other`.
    ///   - status: the status code; one outside 100...599 is counted as `other`.
    ///   - seconds: the time the handler took.
    public func httpRequest(route: String, status: Int, seconds: Double) {
        let index = self.routeIndex[route]
        if index == nil { self.logger.debug("metrics: route \(route) counted as other") }
        self.httpRequest(routeIndex: index ?? self.otherRoute, status: status, seconds: seconds)
    }

    /// Sets `epmd_gateway_http_up`: 1 once the HTTP front listens, 0 if its port could not be bound.
    public func httpFrontStarted(_ listening: Bool) {
        self.up.set(to: listening ? 1 : 0)
    }

    /// Where `epmd_event_watchers` is read at scrape time when the scrape is not given a count: the
    /// HTTP front's open `/v1/events` streams, known only once it runs.
    public func readEventWatchers(from source: @escaping @Sendable () -> Int) {
        let box = CountSource(source)
        self.eventWatcherSource.withLock { $0 = box }
    }

    static let durationName = "http_request_duration_seconds"
    static let durationHelp = "HTTP requests from the handler's start to the response queued, by route template."

    /// Appends `http_request_duration_seconds` as swift-prometheus writes a `DurationHistogram` family
    /// (same lines, same number formats): one series per route that answered at least once; nothing
    /// before the first request.
    func appendDurations(to buffer: inout [UInt8]) {
        let counted = self.durations.map { ($0, $0.snapshot()) }.filter { $0.1.count > 0 }
        guard !counted.isEmpty else { return }
        TextExposition.appendHeader(Self.durationName, help: Self.durationHelp, type: "histogram", to: &buffer)
        for (buckets, snapshot) in counted {
            buckets.append(snapshot, name: Self.durationName, to: &buffer)
        }
    }

    /// Sets `epmd_event_watchers` before a scrape.
    /// - Parameter eventWatchers: the count; nil reads the source given to ``readEventWatchers(from:)``
    ///   (0 without one).
    func scrape(eventWatchers: Int?) {
        let watchers = eventWatchers ?? self.eventWatcherSource.withLock { $0 }?.read() ?? 0
        self.eventWatchers.set(to: Double(watchers))
        self.connections.scrape()
    }
}

/// A (route, code) pair, the labels of `http_requests_total`.
struct HTTPKey: Hashable, Sendable {
    var route: String
    var code: String
}

/// The counter of one (route, code) series.
final class HTTPHandles: Sendable {
    let requests: Counter

    init(requests: Counter) {
        self.requests = requests
    }
}

/// One entry of the (route, code slot) table: its handles, made on first use (so a series appears in
/// the exposition only once counted) and read with one atomic load after that. (swift-atomics' lazy
/// reference is inlined; the standard library's `AtomicLazyReference.load()` is an unspecialized call
/// of some 600 instructions.)
final class HTTPSeries: Sendable {
    private let key: HTTPKey
    private let make: @Sendable (HTTPKey) -> HTTPHandles
    private let made = ManagedAtomicLazyReference<HTTPHandles>()

    init(key: HTTPKey, make: @escaping @Sendable (HTTPKey) -> HTTPHandles) {
        self.key = key
        self.make = make
    }

    /// The handles, made now on first use. Two threads may both make them the first time: the
    /// registry returns the same handles for the same labels, and the first stored is kept.
    var handles: HTTPHandles {
        if let handles = self.made.load() { return handles }
        return self.made.storeIfNilThenLoad(self.make(self.key))
    }
}

/// One route's `http_request_duration_seconds` series without a lock: a count per bucket (each
/// observation lands in the first bucket whose bound is not below it, or past the last) and the sum
/// in nanoseconds, two relaxed atomic additions per request; cumulated when a scrape renders them.
/// (swift-prometheus' histogram takes a lock and walks every bucket per observation.)
final class DurationBuckets: Sendable {
    private let route: String
    /// The upper bounds, nanoseconds, ascending.
    private let bounds: [Int64]
    private let boundLabels: [String]
    /// `bounds.count + 1` counts: the last one is past every bound (only in `+Inf`).
    private let counts: [ManagedAtomic<Int>]
    private let sumNanoseconds = ManagedAtomic<Int64>(0)

    init(route: String, bounds: [Duration]) {
        self.route = route
        self.bounds = bounds.map { $0.components.seconds &* 1_000_000_000 &+ $0.components.attoseconds / 1_000_000_000 }
        self.boundLabels = bounds.map(\.bucketRepresentation)
        self.counts = (0...bounds.count).map { _ in ManagedAtomic<Int>(0) }
    }

    func record(nanoseconds: Int64) {
        var index = 0
        while index < self.bounds.count && self.bounds[index] < nanoseconds { index += 1 }
        self.counts[index].wrappingIncrement(ordering: .relaxed)
        self.sumNanoseconds.wrappingIncrement(by: nanoseconds, ordering: .relaxed)
    }

    /// The cumulative counts (the last one is the total) and the sum.
    func snapshot() -> (cumulative: [Int], sum: Int64, count: Int) {
        var total = 0
        let cumulative = self.counts.map { count in
            total += count.load(ordering: .relaxed)
            return total
        }
        return (cumulative, self.sumNanoseconds.load(ordering: .relaxed), total)
    }

    /// The series' lines, as swift-prometheus writes a `DurationHistogram`.
    func append(_ snapshot: (cumulative: [Int], sum: Int64, count: Int), name: String, to buffer: inout [UInt8]) {
        var labels: [UInt8] = Array("route=\"".utf8)
        TextExposition.appendLabelValue(Array(self.route.utf8), to: &labels)
        labels.append(UInt8(ascii: "\""))
        for (index, bound) in self.boundLabels.enumerated() {
            Self.appendLine(
                name,
                "_bucket{",
                labels,
                ",le=\"\(bound)\"} ",
                "\(snapshot.cumulative[index])",
                to: &buffer
            )
        }
        Self.appendLine(name, "_bucket{", labels, ",le=\"+Inf\"} ", "\(snapshot.count)", to: &buffer)
        let sum = Duration.nanoseconds(snapshot.sum).bucketRepresentation
        Self.appendLine(name, "_sum{", labels, "} ", sum, to: &buffer)
        Self.appendLine(name, "_count{", labels, "} ", "\(snapshot.count)", to: &buffer)
    }

    private static func appendLine(
        _ name: String,
        _ suffix: String,
        _ labels: [UInt8],
        _ close: String,
        _ value: String,
        to buffer: inout [UInt8]
    ) {
        buffer.append(contentsOf: name.utf8)
        buffer.append(contentsOf: suffix.utf8)
        buffer.append(contentsOf: labels)
        buffer.append(contentsOf: close.utf8)
        buffer.append(contentsOf: value.utf8)
        buffer.append(UInt8(ascii: "\n"))
    }
}

/// A count read at scrape time, held by a `Mutex` as a class: an optional closure read out of a `Mutex`
/// came back wrapped in one more reabstraction thunk on every read in the release build (the chain grew
/// by one per scrape: 0.4 ms a scrape at first, 8 ms after 60,000, and a stack overflow further on).
final class CountSource: Sendable {
    let read: @Sendable () -> Int
    init(_ read: @escaping @Sendable () -> Int) { self.read = read }
}
