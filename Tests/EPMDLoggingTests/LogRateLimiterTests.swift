import EPMDLogging
import Testing

@Suite struct LogRateLimiterTests {
    private static let second: UInt64 = 1_000_000_000

    @Test func firstOccurrenceIsLoggedAtOnceAndLaterOnesAreCountedUntilTheInterval() {
        let limiter = LogRateLimiter(reasons: 2, intervalSeconds: 10)
        #expect(limiter.occurred(0, now: 100 * Self.second) == 1)
        for offset in 1...999 {
            #expect(limiter.occurred(0, now: 100 * Self.second + UInt64(offset) * 1_000_000) == nil)
        }
        // The next line after the interval stands for the 999 suppressed ones and itself.
        #expect(limiter.occurred(0, now: 110 * Self.second) == 1000)
        #expect(limiter.occurred(0, now: 111 * Self.second) == nil)
    }

    @Test func reasonsAreLimitedSeparately() {
        let limiter = LogRateLimiter(reasons: 2, intervalSeconds: 10)
        #expect(limiter.occurred(0, now: 5 * Self.second) == 1)
        #expect(limiter.occurred(1, now: 5 * Self.second) == 1)
        #expect(limiter.occurred(0, now: 6 * Self.second) == nil)
        #expect(limiter.occurred(1, now: 6 * Self.second) == nil)
        // A key out of range shares the last slot instead of trapping.
        #expect(limiter.occurred(7, now: 7 * Self.second) == nil)
        #expect(limiter.occurred(-1, now: 16 * Self.second) == 2)
        #expect(limiter.occurred(1, now: 16 * Self.second) == 3)
    }

    @Test func concurrentCallersLoseNoOccurrence() async {
        let limiter = LogRateLimiter(reasons: 1, intervalSeconds: 3600)
        #expect(limiter.occurred(0, now: 0) == 1)
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<8 {
                group.addTask { for _ in 0..<1000 { _ = limiter.occurred(0, now: 1) } }
            }
        }
        #expect(limiter.occurred(0, now: 3600 * Self.second) == 8001)
    }
}
