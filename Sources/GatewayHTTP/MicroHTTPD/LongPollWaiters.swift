import CMicroHTTPD
import Dispatch
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Suspended long-poll requests (`GET /v1/nodes?index=N&wait=S`). Each is resumed when the registry
/// generation passes its index, when its wait ends, or at shutdown. A timer thread sleeps until the
/// earliest deadline (no polling); registry changes resume waiters directly.
final class LongPollWaiters: Sendable {
    private struct Waiter {
        /// The suspended `MHD_Connection`, as an address (pointers are not Sendable).
        var connection: UInt
        var index: UInt64
        var deadline: UInt64
    }

    private struct State {
        var waiters: [Waiter] = []
        var generation: UInt64 = 0
        var stopped = false
    }

    private let state = Mutex(State())
    private let wake = DispatchSemaphore(value: 0)
    private let finished = DispatchSemaphore(value: 0)

    /// The most waiters at once; past it, requests are answered at once instead of waiting.
    let capacity: Int

    init(capacity: Int) {
        self.capacity = capacity
        let thread = Thread { [self] in self.timerLoop() }
        thread.name = "http-long-poll"
        thread.start()
    }

    /// Registers a connection the caller has just suspended. If the generation already passed
    /// `index` (a change raced the suspend), it is resumed at once.
    /// - Returns: false when full or stopped (the caller must not leave it suspended: it is resumed).
    func add(connection: OpaquePointer, index: UInt64, seconds: Int) {
        let address = UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(connection)))
        let deadline = Self.now() + UInt64(clamping: seconds) * 1_000_000_000
        let resumeNow = self.state.withLock { state -> Bool in
            if state.stopped || state.generation > index || state.waiters.count >= self.capacity { return true }
            state.waiters.append(Waiter(connection: address, index: index, deadline: deadline))
            return false
        }
        if resumeNow {
            MHD_resume_connection(connection)
        } else {
            self.wake.signal()
        }
    }

    /// The registry moved on: resume every waiter whose index it passed.
    func generationChanged(_ generation: UInt64) {
        let ready = self.state.withLock { state -> [UInt] in
            state.generation = max(state.generation, generation)
            let ready = state.waiters.filter { $0.index < generation }.map(\.connection)
            state.waiters.removeAll { $0.index < generation }
            return ready
        }
        Self.resume(ready)
    }

    /// Resumes everyone and stops the timer thread (before `MHD_stop_daemon`).
    func stop() {
        let all = self.state.withLock { state -> [UInt] in
            state.stopped = true
            defer { state.waiters.removeAll() }
            return state.waiters.map(\.connection)
        }
        Self.resume(all)
        self.wake.signal()
        _ = self.finished.wait(timeout: .now() + 2)
    }

    private func timerLoop() {
        while true {
            let (expired, next, stopped) = self.state.withLock { state -> ([UInt], UInt64?, Bool) in
                let now = Self.now()
                let expired = state.waiters.filter { $0.deadline <= now }.map(\.connection)
                state.waiters.removeAll { $0.deadline <= now }
                return (expired, state.waiters.map(\.deadline).min(), state.stopped)
            }
            Self.resume(expired)
            if stopped { break }
            if let next {
                let now = Self.now()
                _ = self.wake.wait(
                    timeout: .now()
                        + .nanoseconds(Int(truncatingIfNeeded: min(next > now ? next - now : 0, 60_000_000_000)))
                )
            } else {
                self.wake.wait()
            }
        }
        self.finished.signal()
    }

    private static func resume(_ connections: [UInt]) {
        for address in connections {
            if let connection = OpaquePointer(bitPattern: address) { MHD_resume_connection(connection) }
        }
    }

    private static func now() -> UInt64 { MicroHTTPDServer.monotonicNanoseconds() }
}
