import CMicroHTTPD
import EPMDPosix
import Synchronization

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
    private let wake: Wakeup
    private let thread = Mutex<PosixThread?>(nil)

    /// The most waiters at once; past it, requests are answered at once instead of waiting.
    let capacity: Int

    init(capacity: Int, wake: Wakeup) {
        self.capacity = capacity
        self.wake = wake
    }

    /// Starts the timer thread.
    func start() throws(SystemError) {
        let thread = try PosixThread(name: "http-long-poll") { [self] in self.timerLoop() }
        self.thread.withLock { $0 = thread }
    }

    /// Registers a connection the caller has just suspended. If the generation already passed
    /// `index` (a change raced the suspend), the waiters are full, or shutdown began, it is resumed at once.
    func add(connection: OpaquePointer, index: UInt64, seconds: Int) {
        let address = UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(connection)))
        let deadline = System.monotonicNanoseconds() + UInt64(clamping: seconds) * 1_000_000_000
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

    /// Resumes every waiter, refuses new ones and ends the timer thread (before `MHD_stop_daemon`).
    /// Idempotent.
    func stop() {
        let all = self.state.withLock { state -> [UInt] in
            state.stopped = true
            defer { state.waiters.removeAll() }
            return state.waiters.map(\.connection)
        }
        Self.resume(all)
        self.wake.signal()
        let thread = self.thread.withLock { thread -> PosixThread? in
            defer { thread = nil }
            return thread
        }
        thread?.join()
    }

    private func timerLoop() {
        while true {
            let (expired, next, stopped) = self.state.withLock { state -> ([UInt], UInt64?, Bool) in
                let now = System.monotonicNanoseconds()
                let expired = state.waiters.filter { $0.deadline <= now }.map(\.connection)
                state.waiters.removeAll { $0.deadline <= now }
                return (expired, state.waiters.map(\.deadline).min(), state.stopped)
            }
            Self.resume(expired)
            if stopped { break }
            if let next {
                let now = System.monotonicNanoseconds()
                let nanoseconds = min(next > now ? next - now : 0, 60_000_000_000)
                self.wake.wait(milliseconds: Int32(clamping: (nanoseconds + 999_999) / 1_000_000))
            } else {
                self.wake.wait(milliseconds: -1)
            }
        }
    }

    private static func resume(_ connections: [UInt]) {
        for address in connections {
            if let connection = OpaquePointer(bitPattern: address) { MHD_resume_connection(connection) }
        }
    }
}
