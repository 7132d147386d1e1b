import Synchronization

/// One log line per reason per interval, with a count: a flood of refusals (thousands a second) must
/// not flood the log. The first occurrence of a reason is logged at once; later ones within the
/// interval are only counted, and the next occurrence after the interval logs one line that carries
/// how many happened since the previous line. The exact totals are the metrics' job.
///
/// Thread-safe (a `Mutex`): the epmd loop and libmicrohttpd's threads may share one. Reasons are small
/// integers below `reasons` (an enum's index); the clock is the caller's (monotonic nanoseconds).
public final class LogRateLimiter: Sendable {
    private struct Slot {
        /// When the last line for this reason was written (nil: never).
        var loggedAt: UInt64?
        /// Occurrences since that line, not logged yet.
        var pending = 0
    }

    /// The shortest time between two lines for one reason, in nanoseconds.
    public let interval: UInt64
    private let slots: Mutex<[Slot]>

    /// - Parameters:
    ///   - reasons: how many distinct reasons (keys `0..<reasons`); keys outside share the last slot.
    ///   - intervalSeconds: the shortest time between two lines for one reason (10 s by default).
    public init(reasons: Int, intervalSeconds: Int = 10) {
        self.interval = UInt64(max(intervalSeconds, 0)) * 1_000_000_000
        self.slots = Mutex([Slot](repeating: Slot(), count: max(reasons, 1)))
    }

    /// Counts one occurrence of `reason` at `now`. Returns how many occurrences the line to write now
    /// stands for (this one included), or nil when no line is due.
    public func occurred(_ reason: Int, now: UInt64) -> Int? {
        self.slots.withLock { slots in
            let index = min(max(reason, 0), slots.count - 1)
            slots[index].pending += 1
            if let last = slots[index].loggedAt, now &- last < self.interval { return nil }
            let count = slots[index].pending
            slots[index].pending = 0
            slots[index].loggedAt = now
            return count
        }
    }
}
