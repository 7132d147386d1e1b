import EPMDPosix
import EPMDProtocol
import EPMDRegistry
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The epmd port: a small event loop over epoll on one dedicated thread.
///
/// The loop (``EventLoop``) only does I/O. Each connection's ``EPMDConnectionStateMachine`` decides
/// what its bytes mean, ``EPMDRequestPolicy`` what a request does, and the ``NodeRegistry`` holds the
/// names. Writes never block: a reply that does not fit in the socket buffer waits in the connection's
/// outbound buffer. Every connection that is not a kept registration must finish within the packet
/// timeout, counted from connect.
public final class EPMDServer: Sendable {
    /// Why `run()` returned.
    public enum ExitReason: Equatable, Sendable {
        /// A KILL_REQ was accepted: exit 0, as C epmd.
        case killed
        /// SIGTERM/SIGINT or `shutdown()`.
        case shutdown
        /// A successor process took every socket and registration over (`EPMDHandoverHandler`).
        case handedOver
    }

    public let configuration: EPMDServerConfiguration
    public let registry: NodeRegistry
    let logger: Logger
    private let listenFDs: [Int32]
    private let wake: WakeEvent
    private let shutdownRequested = Atomic<Bool>(false)
    private let drainRequested = Atomic<Bool>(false)
    private let draining = Atomic<Bool>(false)
    let counters: EPMDServerCounters
    /// Told of the loop's start and drain, and run on its timer.
    let hooks: (any EPMDLoopHooks)?
    /// The hand-over to a successor process, when enabled.
    let handover: (any EPMDHandoverHandler)?
    /// Forced unregistrations posted to the loop (`EPMDServer+Admin.swift`).
    let adminRequests = AdminRequestQueue()
    /// Which registrations outlive this process (``keepAtExit(_:)``). A class, not the closure itself:
    /// an optional closure read out of a `Mutex` again and again came back wrapped in one more
    /// reabstraction thunk each time (release build), and after ~3,500 reads the call overflowed the
    /// loop's stack (SIGSEGV in the teardown of a gateway with 19,000 registrations).
    private let exitKeeper = Mutex<ExitKeeper?>(nil)

    private final class ExitKeeper: Sendable {
        let keeps: @Sendable (ConnectionID) -> Bool
        init(_ keeps: @escaping @Sendable (ConnectionID) -> Bool) { self.keeps = keeps }
    }

    /// The port the listeners are bound to (equal to the configured port except for port 0 in tests).
    public let boundPort: UInt16

    /// Opens (or adopts) the listening sockets. Nothing is accepted until `run()`.
    /// - Parameters:
    ///   - configuration: ports, listeners and epmd's options.
    ///   - registry: the name table.
    ///   - logger: where the loop logs, with C epmd's texts (see `EPMDLogHandler` for the levels).
    ///   - instruments: receives every count for metrics (called on the loop thread).
    ///   - hooks: told when the loop starts and the drain begins, and given a timer on the loop
    ///     (systemd's readiness, status and watchdog).
    ///   - handover: serves the hand-over socket on the loop (and SIGUSR2, with `handleSignals`).
    /// - Throws: `ListenerError` or `SystemError`.
    public init(
        configuration: EPMDServerConfiguration,
        registry: NodeRegistry,
        logger: Logger,
        instruments: (any EPMDServerInstruments)? = nil,
        hooks: (any EPMDLoopHooks)? = nil,
        handover: (any EPMDHandoverHandler)? = nil
    ) throws {
        self.hooks = hooks
        self.handover = handover
        self.configuration = configuration
        self.counters = EPMDServerCounters(instruments: instruments, limit: configuration.maxConnections)
        self.registry = registry
        self.logger = logger
        switch configuration.listeners {
        case .bind(let plan):
            let (fds, port) = try Listener.bind(plan) { message in logger.info("\(message)") }
            self.listenFDs = fds
            self.boundPort = port
        case .inherited(let fds):
            for fd in fds {
                guard System.isOpenDescriptor(fd) else { throw SystemError("fcntl", errno: EBADF) }
                try System.setNonBlocking(fd)
            }
            self.listenFDs = fds
            self.boundPort = fds.first.flatMap { try? System.localAddress($0) }?.port ?? configuration.port
        }
        self.wake = try WakeEvent()
    }

    /// True from the first SIGTERM/SIGINT until the exit (the shutdown grace period).
    public var isDraining: Bool { self.draining.load(ordering: .acquiring) }

    func startDraining() { self.draining.store(true, ordering: .releasing) }

    /// A copy of the counters.
    public var statistics: EPMDServerStatistics { self.counters.snapshot }

    /// Asks the loop to drain, exactly as SIGTERM does: from now on `isDraining` is true, the epmd port
    /// serves on for the configured shutdown grace, then the loop stops (at once without a grace).
    /// Idempotent, and safe from any thread.
    public func drain() {
        self.startDraining()
        self.drainRequested.store(true, ordering: .releasing)
        self.wake.signal()
    }

    /// Asks the loop to stop now; safe from any thread.
    public func shutdown() {
        self.shutdownRequested.store(true, ordering: .releasing)
        self.wake.signal()
    }

    /// Runs the loop on the calling thread until KILL, a signal or `shutdown()`.
    /// - Parameter snapshots: connections exported by another loop (a previous process, their
    ///   descriptors passed to this one) to serve on, adopted before the first wait. Their
    ///   registrations must already be in the registry under their ids, or they register again.
    /// - Returns: why it stopped. Every connection and listener is closed by then.
    /// - Throws: `SystemError` if epoll itself cannot be set up.
    public func run(adopting snapshots: [EPMDConnectionSnapshot] = []) throws(SystemError) -> ExitReason {
        var loop = try EventLoop(server: self)
        for snapshot in snapshots { loop.adopt(snapshot) }
        return loop.run()
    }

    /// Sets what decides, at a shutdown (SIGTERM, SIGINT, `shutdown()`), whether a registration outlives
    /// this process: systemd's fd store keeps its socket for the next one. Such a registration is closed
    /// without an unregistration (no `unregistered` event for watchers, no history entry, no count),
    /// which the next process's `restarted` event would contradict. After a KILL_REQ every registration
    /// ends as usual. Call before `run()`; safe from any thread.
    public func keepAtExit(_ keeps: @escaping @Sendable (ConnectionID) -> Bool) {
        let keeper = ExitKeeper(keeps)
        self.exitKeeper.withLock { $0 = keeper }
    }

    /// Whether the registration of connection `id` outlives this process (the loop's teardown).
    func keptAtExit(_ id: ConnectionID) -> Bool {
        guard let keeper = self.exitKeeper.withLock({ $0 }) else { return false }
        return keeper.keeps(id)
    }

    var isShutdownRequested: Bool { self.shutdownRequested.load(ordering: .acquiring) }
    /// Takes a pending `drain()` request (true once per request).
    func takeDrainRequest() -> Bool { self.drainRequested.exchange(false, ordering: .acquiringAndReleasing) }
    var listeners: [Int32] { self.listenFDs }
    var wakeDescriptor: Int32 { self.wake.descriptor }
    func wakeLoop() { self.wake.signal() }
}
