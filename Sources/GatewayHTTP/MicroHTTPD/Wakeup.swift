import EPMDPosix
import Synchronization

/// A `WakeEvent` made when the server starts rather than when it is configured (an eventfd is a
/// resource; configuring allocates none). Before `open()` a signal is dropped and a wait returns at once.
final class Wakeup: Sendable {
    private let event = Mutex<WakeEvent?>(nil)

    /// Makes the eventfd (once).
    func open() throws(SystemError) {
        guard self.event.withLock({ $0 == nil }) else { return }
        let event = try WakeEvent()
        self.event.withLock { $0 = event }
    }

    /// Wakes the sleeper; safe from any thread.
    func signal() {
        self.event.withLock { $0 }?.signal()
    }

    /// Sleeps until `signal()` or until `milliseconds` pass (negative: no limit).
    @discardableResult
    func wait(milliseconds: Int32) -> Bool {
        guard let event = self.event.withLock({ $0 }) else { return false }
        return event.wait(milliseconds: milliseconds)
    }
}
