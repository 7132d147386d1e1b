import EPMDPosix
import EPMDProtocol
import EPMDRegistry
import Synchronization

/// A snapshot of the counters kept by the epmd loop.
public struct EPMDServerStatistics: Sendable, Equatable {
    /// Connections accepted.
    public var accepted: UInt64 = 0
    /// Accept attempts refused, by reason.
    public var rejected: [EPMDRefusalReason: UInt64] = [:]
    /// Connections holding no registration closed to admit a new one, by reason.
    public var evicted: [EPMDEvictionReason: UInt64] = [:]
    /// Requests served, by type.
    public var requests: [EPMDRequestKind: UInt64] = [:]
    /// Malformed or refused requests, by reason.
    public var malformed: [EPMDMalformedReason: UInt64] = [:]
    /// Registrations refused, by reason.
    public var registrationFailures: [NodeRegistryError: UInt64] = [:]
    /// Connections closed because the packet timeout expired.
    public var timeouts: UInt64 = 0
    /// Connections open right now.
    public var openConnections: Int = 0
    /// Highest number of connections open at once.
    public var peakConnections: Int = 0
    /// The connection cap in force (0: none): the configured one, or lower after EMFILE.
    public var connectionLimit: Int = 0

    public init() {}
}

/// The request types, for counting.
public enum EPMDRequestKind: Int, CaseIterable, Sendable {
    case alive2
    case portPlease2
    case names
    case dump
    case kill
    case stop

    /// The label used in statistics and metrics.
    public var label: String {
        switch self {
        case .alive2: "alive2"
        case .portPlease2: "port_please2"
        case .names: "names"
        case .dump: "dump"
        case .kill: "kill"
        case .stop: "stop"
        }
    }
}

/// How a request ended: the `result` label of `epmd_requests_total`.
public enum EPMDRequestResult: String, CaseIterable, Sendable {
    /// Answered as asked (a registration made, a port found, NAMES/DUMP written, KILL/STOP done).
    case ok
    /// A lookup or STOP for a name that is not registered.
    case notFound = "not_found"
    /// Refused: a registration that failed, or KILL with live nodes.
    case refused

    /// The metric label (the raw value).
    public var label: String { self.rawValue }
}

/// Receives what the epmd loop does, for metrics. Called on the loop thread, so every method must be
/// quick and must never block or throw. Reasons are typed: a receiver makes its series from each
/// reason type's `allCases` and their `label`s.
public protocol EPMDServerInstruments: Sendable {
    /// A request was answered; `seconds` runs from the accept to the reply handed to the kernel.
    func requestServed(_ kind: EPMDRequestKind, result: EPMDRequestResult, seconds: Double)
    /// A connection was accepted.
    func connectionAccepted()
    /// An accept failed.
    func connectionRejected(_ reason: EPMDRefusalReason)
    /// A connection was closed for bad input.
    func packetMalformed(_ reason: EPMDMalformedReason)
    /// A well-formed registration was refused.
    func registrationFailed(_ reason: NodeRegistryError)
    /// A connection was closed by the packet timeout.
    func connectionTimedOut()
    /// A connection holding no registration was closed to admit a new one.
    func connectionEvicted(_ reason: EPMDEvictionReason)
    /// The connection cap in force changed (lowered after EMFILE).
    func connectionLimitChanged(_ limit: Int)
    /// A connection was closed, for `reason` (every close, an answered one-shot request included).
    func connectionClosed(_ reason: CloseReason)
    /// A registration whose peer had closed (EOF not read yet) was ended because its name registered
    /// again (the re-registration race, erlang/otp#11083).
    func closedRegistrationReplaced()
}

extension EPMDServerInstruments {
    /// Does nothing: for receivers written before evictions existed.
    public func connectionEvicted(_ reason: EPMDEvictionReason) {}
    /// Does nothing: for receivers written before the cap existed.
    public func connectionLimitChanged(_ limit: Int) {}
    /// Does nothing: for receivers written before closes were counted by reason.
    public func connectionClosed(_ reason: CloseReason) {}
    /// Does nothing: for receivers written before the re-registration race was handled.
    public func closedRegistrationReplaced() {}
}

/// The live counters: atomics for what every request touches, a lock for the rare reason tables.
/// Every count is forwarded to the instruments (metrics) when there are some.
final class EPMDServerCounters: Sendable {
    private let accepted = Atomic<UInt64>(0)
    private let timeouts = Atomic<UInt64>(0)
    let open = Atomic<Int>(0)
    private let peak = Atomic<Int>(0)
    private let limit = Atomic<Int>(0)
    private let alive2 = Atomic<UInt64>(0)
    private let portPlease2 = Atomic<UInt64>(0)
    private let names = Atomic<UInt64>(0)
    private let dump = Atomic<UInt64>(0)
    private let kill = Atomic<UInt64>(0)
    private let stop = Atomic<UInt64>(0)
    private let reasons = Mutex<Reasons>(Reasons())
    private let instruments: (any EPMDServerInstruments)?

    init(instruments: (any EPMDServerInstruments)?, limit: Int) {
        self.instruments = instruments
        self.limit.store(limit, ordering: .relaxed)
    }

    private struct Reasons {
        var rejected: [EPMDRefusalReason: UInt64] = [:]
        var evicted: [EPMDEvictionReason: UInt64] = [:]
        var malformed: [EPMDMalformedReason: UInt64] = [:]
        var registrationFailures: [NodeRegistryError: UInt64] = [:]
    }

    /// Counts a served request; `acceptedAt` is the connection's monotonic accept time.
    func served(_ kind: EPMDRequestKind, _ result: EPMDRequestResult, acceptedAt: UInt64) {
        switch kind {
        case .alive2: self.alive2.add(1, ordering: .relaxed)
        case .portPlease2: self.portPlease2.add(1, ordering: .relaxed)
        case .names: self.names.add(1, ordering: .relaxed)
        case .dump: self.dump.add(1, ordering: .relaxed)
        case .kill: self.kill.add(1, ordering: .relaxed)
        case .stop: self.stop.add(1, ordering: .relaxed)
        }
        guard let instruments = self.instruments else { return }
        let elapsed = System.monotonicNanoseconds() &- acceptedAt
        instruments.requestServed(kind, result: result, seconds: Double(elapsed) / 1e9)
    }

    func connectionOpened(open: Int) {
        self.accepted.add(1, ordering: .relaxed)
        self.open.store(open, ordering: .relaxed)
        if open > self.peak.load(ordering: .relaxed) { self.peak.store(open, ordering: .relaxed) }
        self.instruments?.connectionAccepted()
    }

    func rejected(_ reason: EPMDRefusalReason) {
        self.reasons.withLock { $0.rejected[reason, default: 0] += 1 }
        self.instruments?.connectionRejected(reason)
    }

    func evicted(_ reason: EPMDEvictionReason) {
        self.reasons.withLock { $0.evicted[reason, default: 0] += 1 }
        self.instruments?.connectionEvicted(reason)
    }

    func limitChanged(_ limit: Int) {
        self.limit.store(limit, ordering: .relaxed)
        self.instruments?.connectionLimitChanged(limit)
    }

    func malformed(_ reason: EPMDMalformedReason) {
        self.reasons.withLock { $0.malformed[reason, default: 0] += 1 }
        self.instruments?.packetMalformed(reason)
    }

    func registrationFailed(_ reason: NodeRegistryError) {
        self.reasons.withLock { $0.registrationFailures[reason, default: 0] += 1 }
        self.instruments?.registrationFailed(reason)
    }

    func closed(_ reason: CloseReason) {
        self.instruments?.connectionClosed(reason)
    }

    func closedRegistrationReplaced() {
        self.instruments?.closedRegistrationReplaced()
    }

    func timedOut() {
        self.timeouts.add(1, ordering: .relaxed)
        self.instruments?.connectionTimedOut()
    }

    var snapshot: EPMDServerStatistics {
        var statistics = EPMDServerStatistics()
        statistics.accepted = self.accepted.load(ordering: .relaxed)
        statistics.timeouts = self.timeouts.load(ordering: .relaxed)
        statistics.openConnections = self.open.load(ordering: .relaxed)
        statistics.peakConnections = self.peak.load(ordering: .relaxed)
        statistics.connectionLimit = self.limit.load(ordering: .relaxed)
        let values: [(EPMDRequestKind, UInt64)] = [
            (.alive2, self.alive2.load(ordering: .relaxed)),
            (.portPlease2, self.portPlease2.load(ordering: .relaxed)),
            (.names, self.names.load(ordering: .relaxed)),
            (.dump, self.dump.load(ordering: .relaxed)),
            (.kill, self.kill.load(ordering: .relaxed)),
            (.stop, self.stop.load(ordering: .relaxed)),
        ]
        for (kind, value) in values where value > 0 { statistics.requests[kind] = value }
        let reasons = self.reasons.withLock { $0 }
        statistics.rejected = reasons.rejected
        statistics.evicted = reasons.evicted
        statistics.malformed = reasons.malformed
        statistics.registrationFailures = reasons.registrationFailures
        return statistics
    }
}
