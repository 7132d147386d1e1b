import EPMDPosix
import EPMDServer
import Logging
import Synchronization

/// The gateway's messages to systemd, each sent from where it is true (as hooks of the epmd loop):
///
/// - `READY=1` (with `STATUS=` and `MAINPID=`) when the loop starts, which is after the HTTP front
///   started (or is disabled);
/// - `STATUS=Serving N nodes (...)` when the registry's count changed, at most one per second;
/// - `WATCHDOG=1` every half `WATCHDOG_USEC`, from the loop's timer: a stuck loop (or a stopped
///   process) stops the pings, and systemd restarts the service;
/// - `STOPPING=1` when the drain begins;
/// - `STATUS=Exited.` at the end.
///
/// A failed send never stops anything: it is counted (``failures``) and logged, the first at
/// warning and the others at debug.
public final class SystemdNotifier: EPMDLoopHooks {
    /// The least time between two `STATUS=` updates of the node count.
    public static let statusInterval: UInt64 = 1_000_000_000

    private struct State {
        var epmdPort: UInt16 = 0
        var httpPort: UInt16?
        var started = false
        var stopping = false
        var watchdogDue: UInt64?
        var statusChanged = false
        var lastStatusAt: UInt64 = 0
        var lastStatusCount = -1
        var failures = 0
    }

    private let state = Mutex(State())
    private let watchdogInterval: UInt64?
    private let nodeCount: @Sendable () -> Int
    private let clock: @Sendable () -> UInt64
    private let send: @Sendable (_ state: String, _ waits: Bool) -> Bool
    private let processID: Int32
    private let logger: Logger

    /// - Parameters:
    ///   - watchdogInterval: nanoseconds between two `WATCHDOG=1` (``Systemd/watchdogInterval(environment:processID:)``);
    ///     nil: no watchdog.
    ///   - nodeCount: the registrations now (the registry's count).
    ///   - logger: where failed sends are logged.
    ///   - processID: sent as `MAINPID=`.
    ///   - clock: monotonic nanoseconds (the loop's clock).
    ///   - send: sends one message (`waits` false: never block, for the loop's periodic messages).
    public init(
        watchdogInterval: UInt64?,
        nodeCount: @escaping @Sendable () -> Int,
        logger: Logger,
        processID: Int32 = ProcessControl.processID,
        clock: @escaping @Sendable () -> UInt64 = { System.monotonicNanoseconds() },
        send: @escaping @Sendable (_ state: String, _ waits: Bool) -> Bool
    ) {
        self.watchdogInterval = watchdogInterval
        self.nodeCount = nodeCount
        self.logger = logger
        self.processID = processID
        self.clock = clock
        self.send = send
    }

    /// Sends to `NOTIFY_SOCKET` of `environment`.
    public convenience init(environment: [String: String], nodeCount: @escaping @Sendable () -> Int, logger: Logger) {
        self.init(
            watchdogInterval: Systemd.watchdogInterval(environment: environment),
            nodeCount: nodeCount,
            logger: logger,
            send: { Systemd.notify($0, environment: environment, waits: $1) }
        )
    }

    /// Sends that failed so far.
    public var failures: Int { self.state.withLock { $0.failures } }

    /// The ports the status reports: call before the loop starts (the HTTP port once its front runs).
    public func setPorts(epmd: UInt16, http: UInt16?) {
        self.state.withLock {
            $0.epmdPort = epmd
            $0.httpPort = http
        }
    }

    /// The registry changed (any thread): the status is brought up to date at the next allowed time.
    public func registryChanged() {
        self.state.withLock { $0.statusChanged = true }
    }

    // MARK: - EPMDLoopHooks (the loop thread)

    public func loopStarted() {
        let now = self.clock()
        let count = self.nodeCount()
        let status = self.state.withLock { state -> String? in
            guard !state.started else { return nil }
            state.started = true
            state.lastStatusAt = now
            state.lastStatusCount = count
            state.statusChanged = false
            if let interval = self.watchdogInterval { state.watchdogDue = now &+ interval }
            return Systemd.statusText(nodes: count, epmdPort: state.epmdPort, httpPort: state.httpPort)
        }
        guard let status else { return }
        self.deliver("READY=1\nSTATUS=\(status)\nMAINPID=\(self.processID)", waits: true)
        if self.watchdogInterval != nil { self.deliver("WATCHDOG=1", waits: false) }
    }

    public func nextDeadline() -> UInt64? {
        self.state.withLock { state in
            guard state.started else { return nil }
            var next = state.watchdogDue ?? .max
            if state.statusChanged && !state.stopping {
                next = min(next, state.lastStatusAt &+ Self.statusInterval)
            }
            return next == .max ? nil : next
        }
    }

    public func timerFired(now: UInt64) {
        let (ping, statusDue) = self.state.withLock { state -> (Bool, Bool) in
            var ping = false
            if let due = state.watchdogDue, due <= now, let interval = self.watchdogInterval {
                ping = true
                state.watchdogDue = now &+ interval
            }
            let statusDue =
                state.statusChanged && !state.stopping && state.lastStatusAt &+ Self.statusInterval <= now
            return (ping, statusDue)
        }
        if ping { self.deliver("WATCHDOG=1", waits: false) }
        guard statusDue else { return }
        let count = self.nodeCount()
        let status = self.state.withLock { state -> String? in
            state.statusChanged = false
            state.lastStatusAt = now
            guard count != state.lastStatusCount else { return nil }
            state.lastStatusCount = count
            return Systemd.statusText(nodes: count, epmdPort: state.epmdPort, httpPort: state.httpPort)
        }
        if let status { self.deliver("STATUS=\(status)", waits: false) }
    }

    public func drainBegan(graceSeconds: Int) {
        let count = self.nodeCount()
        let first = self.state.withLock { state -> Bool in
            defer { state.stopping = true }
            return !state.stopping
        }
        guard first else { return }
        let status = Systemd.drainingStatusText(nodes: count, graceSeconds: graceSeconds)
        self.deliver("STOPPING=1\nSTATUS=\(status)", waits: true)
    }

    // MARK: - The end

    /// The gateway stopped (any thread): the last status.
    public func exited(status: Int32) {
        self.state.withLock { $0.stopping = true }
        self.deliver("STATUS=Exited.\nERRNO=\(status)", waits: true)
    }

    private func deliver(_ message: String, waits: Bool) {
        guard !self.send(message, waits) else { return }
        let failures = self.state.withLock { state in
            state.failures += 1
            return state.failures
        }
        let what = message.prefix { $0 != "=" }
        if failures == 1 {
            self.logger.warning("cannot notify systemd (\(what)); the gateway serves on")
        } else {
            self.logger.debug("cannot notify systemd (\(what)), \(failures) failures")
        }
    }
}
