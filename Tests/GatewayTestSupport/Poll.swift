import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The one polling loop of the tests: check a condition until it holds or a time bound passes.
public enum Poll {
    /// Checks `condition` until it holds or `timeout` passes, waiting with `Task.sleep` in between: first
    /// 5 ms, doubling up to `interval`. Returns the time it took, or nil on timeout (the condition is
    /// checked once more after the bound). `condition` runs on the calling task, so it must not block for
    /// long (loopback connections, /proc reads are fine).
    public static func until(
        timeout: Duration,
        interval: Duration = .milliseconds(50),
        _ condition: () async throws -> Bool
    ) async throws -> Duration? {
        var schedule = Schedule(timeout: timeout, interval: interval)
        while true {
            if try await condition() { return schedule.elapsed }
            guard let pause = schedule.next() else { return nil }
            try await Task.sleep(for: pause)
        }
    }

    /// `until` for synchronous code (a `deinit`, a synchronous test): it blocks the calling thread between
    /// checks. (A name of its own: an overload would be chosen by the closure's type, not by the caller.)
    public static func blockingUntil(
        timeout: Duration,
        interval: Duration = .milliseconds(50),
        _ condition: () throws -> Bool
    ) rethrows -> Duration? {
        var schedule = Schedule(timeout: timeout, interval: interval)
        while true {
            if try condition() { return schedule.elapsed }
            guard let pause = schedule.next() else { return nil }
            Self.sleep(pause)
        }
    }

    /// Blocks the calling thread for `duration`.
    public static func sleep(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        var request = timespec(tv_sec: Int(seconds), tv_nsec: Int(attoseconds / 1_000_000_000))
        var remaining = timespec()
        while nanosleep(&request, &remaining) != 0 && errno == EINTR { request = remaining }
    }

    /// The pauses between checks: 5 ms first, doubling up to the interval, until the timeout.
    private struct Schedule {
        let clock = ContinuousClock()
        let start: ContinuousClock.Instant
        let timeout: Duration
        let interval: Duration
        var pause: Duration

        init(timeout: Duration, interval: Duration) {
            self.start = self.clock.now
            self.timeout = timeout
            self.interval = interval
            self.pause = min(.milliseconds(5), interval)
        }

        var elapsed: Duration { self.start.duration(to: self.clock.now) }

        /// The next pause, or nil when the time is up.
        mutating func next() -> Duration? {
            guard self.elapsed < self.timeout else { return nil }
            defer { self.pause = min(self.pause * 2, self.interval) }
            return self.pause
        }
    }
}
