/// What the epmd loop tells whoever supervises the process (the service manager's notifications),
/// and the one timer it runs for it. Every call is made on the loop thread, between two waits, so a
/// loop that is stuck (or a stopped process) makes none: that is what a watchdog needs. Each call must
/// be quick and must not block.
public protocol EPMDLoopHooks: Sendable {
    /// The loop is set up and about to wait for its first events: the epmd port serves from now on.
    func loopStarted()
    /// When ``timerFired(now:)`` is next due, in `System.monotonicNanoseconds()` time; nil for never.
    /// Asked before every wait.
    func nextDeadline() -> UInt64?
    /// The deadline passed (called after the events of a wait are handled).
    func timerFired(now: UInt64)
    /// The shutdown began (SIGTERM, SIGINT or `EPMDServer.drain()`): the port serves on for
    /// `graceSeconds` (0: it stops at once). Called once.
    func drainBegan(graceSeconds: Int)
}
