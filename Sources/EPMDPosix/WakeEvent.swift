#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A wake-up a thread can sleep on with a deadline: an eventfd. `signal()` from any thread wakes the
/// sleeper (or its next sleep); wake-ups that arrive while it is awake are coalesced into one.
public final class WakeEvent: Sendable {
    /// The eventfd (non-blocking, close-on-exec).
    public let descriptor: Int32

    /// - Throws: `SystemError` when no eventfd can be made (out of descriptors).
    public init() throws(SystemError) {
        self.descriptor = try System.eventFD()
    }

    deinit { System.close(self.descriptor) }

    /// Wakes the sleeper; safe from any thread.
    public func signal() { System.signalEvent(self.descriptor) }

    /// Sleeps until `signal()` or until `milliseconds` pass (negative: no limit).
    /// - Returns: `true` when woken by `signal()`, `false` on timeout.
    @discardableResult
    public func wait(milliseconds: Int32) -> Bool {
        var entry = pollfd(fd: self.descriptor, events: Int16(POLLIN), revents: 0)
        let ready = (try? System.syscall("poll") { poll(&entry, 1, milliseconds) }) ?? 0
        guard ready > 0 else { return false }
        System.drainEvent(self.descriptor)
        return true
    }
}
