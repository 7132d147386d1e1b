import EPMDLogging
import EPMDPosix
import Logging

/// Admission: the epmd connection cap and the per-address cap. Registrations are never dropped: only
/// connections that hold none (the timed list, in accept order) make room, oldest first.
extension EventLoop {
    /// Makes room for a connection just accepted from `peer`.
    /// - Returns: false when it cannot be admitted (the cap is reached and every connection holds a
    ///   registration); the caller closes it.
    mutating func makeRoom(for peer: SocketAddress, key: PeerKey) -> Bool {
        let perAddress = self.server.configuration.connectionsPerAddress
        if perAddress > 0, self.timed.count(from: key) >= perAddress, let oldest = self.timed.oldest(from: key) {
            // One out, one in: the total does not grow.
            self.evict(oldest, reason: .perAddress, for: peer)
        }
        let cap = self.capInForce
        guard cap > 0 else { return true }
        while self.openCount >= cap {
            guard let oldest = self.timed.head else { return false }
            self.evict(oldest, reason: .maxConnections, for: peer)
        }
        return true
    }

    /// EMFILE: the descriptor limit is lower than the budget assumed (lowered under a running daemon,
    /// or a reserve too small). The epmd port must not keep every descriptor: libmicrohttpd busy-waits
    /// when its accept fails with no connection of its own, and the daemon needs some too. So the cap
    /// in force drops to what is open less `exhaustionMargin`, and the oldest connections without a
    /// registration are closed down to it (registrations never). Later accepts then evict at the new
    /// cap instead of meeting EMFILE again.
    mutating func shedOnExhaustion() {
        let target = max(self.openCount - Self.exhaustionMargin, 1)
        guard self.capInForce == 0 || target < self.capInForce else { return }
        self.capInForce = target
        self.server.counters.limitChanged(target)
        self.logger.warning(
            "descriptor limit reached with \(self.openCount) connections open: at most \(target) from now on"
        )
        while self.openCount > target, let oldest = self.timed.head {
            self.evict(oldest, reason: .maxConnections, for: nil)
        }
    }

    /// Closes a connection that holds no registration to admit one from `peer` (nil: to free
    /// descriptors): counted and logged.
    private mutating func evict(_ connection: EPMDConnection, reason: EPMDEvictionReason, for peer: SocketAddress?) {
        self.server.counters.evicted(reason)
        let cause: AdmissionLogReason = reason == .perAddress ? .evictedPerAddress : .evictedMaxConnections
        if let count = self.refusalLog.occurred(cause.rawValue, now: System.monotonicNanoseconds()) {
            let configuration = self.server.configuration
            let limit =
                reason == .perAddress
                ? "\(configuration.connectionsPerAddress) connections without a registration from one address"
                : "\(self.capInForce) connections"
            let victim = connection.peer.host
            let purpose = peer.map { "admit one from \($0.host)" } ?? "free descriptors"
            self.logger.warning(
                "closed the oldest connection without a registration (from \(victim)) to \(purpose): at most \(limit)\(Self.repeated(count))"
            )
        }
        self.close(connection, reason: .evicted)
    }

    /// A connection accepted at the cap while every connection holds a registration: closed at once
    /// (accepted first, so the listener does not stay readable), counted and logged.
    mutating func refuse(fd: Int32, peer: SocketAddress) {
        self.server.counters.rejected(.maxConnections)
        let cause = AdmissionLogReason.rejectedMaxConnections
        if let count = self.refusalLog.occurred(cause.rawValue, now: System.monotonicNanoseconds()) {
            self.logger.warning(
                "refused a connection from \(peer.host): all \(self.capInForce) connections hold registrations\(Self.repeated(count))"
            )
        }
        System.close(fd)
    }

    /// Descriptors the epmd port leaves free after EMFILE (for the HTTP front and the daemon).
    static let exhaustionMargin = 32

    /// The tail of a rate-limited line: how many occurrences it stands for, when more than one.
    static func repeated(_ count: Int) -> String {
        count > 1 ? " (\(count) times since the last such line)" : ""
    }
}

/// The keys of the loop's `LogRateLimiter`: one line per reason per interval.
enum AdmissionLogReason: Int, CaseIterable {
    case evictedMaxConnections
    case evictedPerAddress
    case rejectedMaxConnections
    case outOfDescriptors
    case acceptError
}
