import EPMDProtocol

/// Counters kept by the epmd loop (read by tests now, by metrics later).
public struct EPMDServerStatistics: Sendable, Equatable {
    /// Connections accepted.
    public var accepted: UInt64 = 0
    /// Accept attempts refused by reason (`emfile`, ...).
    public var rejected: [String: UInt64] = [:]
    /// Requests served by type (`alive2`, `port_please2`, `names`, `dump`, `kill`, `stop`).
    public var requests: [String: UInt64] = [:]
    /// Malformed or refused requests by reason.
    public var malformed: [String: UInt64] = [:]
    /// Registrations refused by reason (`name_in_use`, ...).
    public var registrationFailures: [String: UInt64] = [:]
    /// Connections closed because the packet timeout expired.
    public var timeouts: UInt64 = 0
    /// Connections open right now.
    public var openConnections: Int = 0
    /// Highest number of connections open at once.
    public var peakConnections: Int = 0

    public init() {}
}
