import EPMDPosix
import Synchronization

/// The connections libmicrohttpd holds suspended on our behalf (long-polls, event streams), counted
/// from the moment one is suspended until its request completes. `MHD_stop_daemon` must not find a
/// suspended connection (libmicrohttpd panics), so shutdown resumes them all and then waits here,
/// woken by each completion, until none is left.
final class SuspendedConnections: Sendable {
    private let count = Mutex(0)
    private let changed: Wakeup

    init(changed: Wakeup) {
        self.changed = changed
    }

    /// Connections suspended or resumed but not yet completed.
    var current: Int { self.count.withLock { $0 } }

    /// One more connection is (about to be) suspended.
    func enter() {
        self.count.withLock { $0 += 1 }
    }

    /// A counted connection completed.
    func leave() {
        let left = self.count.withLock { count -> Int in
            count = max(count - 1, 0)
            return count
        }
        if left == 0 { self.changed.signal() }
    }

    /// Waits until every counted connection completed, or `milliseconds` pass (a safety net).
    /// - Returns: the connections still outstanding (0 when drained).
    func waitUntilDrained(milliseconds: Int) -> Int {
        let deadline = System.monotonicNanoseconds() + UInt64(clamping: milliseconds) * 1_000_000
        while true {
            let left = self.current
            if left == 0 { return 0 }
            let now = System.monotonicNanoseconds()
            if now >= deadline { return left }
            let remaining = (deadline - now) / 1_000_000 + 1
            self.changed.wait(milliseconds: Int32(clamping: remaining))
        }
    }
}
