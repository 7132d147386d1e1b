import EPMDPosix
import EPMDProtocol
import EPMDRegistry
import EPMDServer
import GatewayHTTP
import GatewayMetrics
import Logging
import Synchronization

/// The gateway as one value with a lifecycle: the registry, the metrics, the epmd port and the HTTP
/// front, built from options by ``build(options:environment:logger:handlesSignals:restoring:)`` and run once
/// by ``run()``.
///
/// Its state goes `starting` (built: the epmd sockets are bound, nothing is served), `running`,
/// `draining` (readiness answers 503 while the epmd port keeps serving, for the shutdown grace), and
/// `stopped`. Every transition is logged at debug. SIGTERM/SIGINT (taken by the epmd loop when
/// `handlesSignals` is set) and ``shutdown()`` both drain for the grace, then stop.
public final class Gateway: Sendable {
    /// Where the gateway is in its life.
    public enum State: String, Sendable, Equatable, CustomStringConvertible {
        /// Built: the epmd sockets are bound; nothing is served until `run()`.
        case starting
        /// Both fronts serve; readiness answers 200.
        case running
        /// Shutting down: readiness answers 503, the epmd port serves on until the grace ends.
        case draining
        /// Everything is closed. Final.
        case stopped

        public var description: String { self.rawValue }
    }

    /// Why `run()` returned.
    public enum StopReason: Equatable, Sendable, CustomStringConvertible {
        /// A KILL_REQ was accepted (exit 0, as C epmd).
        case killed
        /// SIGTERM/SIGINT or `shutdown()`.
        case shutdown
        /// The event loop could not run.
        case failed(String)
        /// A successor process (this PID) took everything over (exit 0).
        case handedOver(Int32)

        /// The process exit status: 0, except 1 when the loop failed.
        public var exitStatus: Int32 {
            switch self {
            case .killed, .shutdown, .handedOver: 0
            case .failed: 1
            }
        }

        public var description: String {
            switch self {
            case .killed: "killed"
            case .shutdown: "shutdown"
            case .failed(let message): "failed: \(message)"
            case .handedOver(let pid): "handed over to PID \(pid)"
            }
        }
    }

    /// The options it was built from.
    public let options: EPMDOptions
    /// The name table both fronts read.
    public let registry: NodeRegistry
    /// The Prometheus metrics.
    public let metrics: GatewayMetrics
    /// The split of the descriptor limit between the daemon, the epmd port and the HTTP front.
    public let descriptorBudget: DescriptorBudget

    private let server: EPMDServer
    private let environment: [String: String]
    private let logger: Logger
    private let lifecycle: Lifecycle
    private let http = Mutex<MicroHTTPDServer?>(nil)
    /// More `/readyz?verbose` lines (systemd's fd store, `FDStore.attach`), added before `run()`.
    let readinessDetails = Mutex<[@Sendable () -> String?]>([])
    /// Wakes `run()`: by `shutdown()`, and when the loop thread ends.
    private let wake: WakeEvent
    /// TLS and the admin token for the HTTP front, read at build.
    private let security: HTTPSecurity
    /// systemd's socket named `http`, for the HTTP front (which then binds nothing itself).
    private let httpSocket: Int32?
    /// Where `httpSocket` came from, for the log: systemd, or the predecessor of a hand-over.
    private let httpSocketOrigin: String
    /// The messages to systemd (`NOTIFY_SOCKET`), nil when nobody listens.
    private let notifier: SystemdNotifier?
    /// The hand-over socket's service (nil: no hand-over).
    private let handover: HandoverService?
    /// The epmd loop's hooks: systemd's notifier, and `run(whenServing:)`'s callback.
    private let hooks: GatewayLoopHooks
    /// Connections taken over from the previous process (a restoration), adopted when the loop starts.
    private let adoptions: Mutex<[EPMDConnectionSnapshot]>

    private init(
        options: EPMDOptions,
        environment: [String: String],
        logger: Logger,
        registry: NodeRegistry,
        metrics: GatewayMetrics,
        descriptorBudget: DescriptorBudget,
        server: EPMDServer,
        wake: WakeEvent,
        security: HTTPSecurity,
        httpSocket: Int32?,
        httpSocketOrigin: String,
        notifier: SystemdNotifier?,
        adoptions: [EPMDConnectionSnapshot],
        handover: HandoverService?,
        hooks: GatewayLoopHooks
    ) {
        self.options = options
        self.descriptorBudget = descriptorBudget
        self.environment = environment
        self.logger = logger
        self.registry = registry
        self.metrics = metrics
        self.server = server
        self.wake = wake
        self.security = security
        self.httpSocket = httpSocket
        self.httpSocketOrigin = httpSocketOrigin
        self.notifier = notifier
        self.adoptions = Mutex(adoptions)
        self.handover = handover
        self.hooks = hooks
        self.lifecycle = Lifecycle(logger: logger)
    }

    deinit {
        // Built but never run: the listening sockets are the loop's to close; a loop that is asked
        // to stop before it starts only closes them.
        if self.lifecycle.neverRan { self.closeUnrun() }
    }

    // MARK: - State

    /// The state now. While the epmd loop drains after a signal, this is `draining` already.
    public var state: State {
        let state = self.lifecycle.state
        return state == .running && self.server.isDraining ? .draining : state
    }

    /// The port the epmd listeners are bound to (the configured one, except for port 0).
    public var epmdPort: UInt16 { self.server.boundPort }

    /// The HTTP front's bound port while it runs; nil before, after, when disabled or when its port was taken.
    public var httpPort: UInt16? { self.http.withLock { $0?.port } }

    /// Whether `/readyz` answers 200: running, and no shutdown has begun.
    public var isReady: Bool { Self.isReady(self.lifecycle, self.server) }

    private static func isReady(_ lifecycle: Lifecycle, _ server: EPMDServer) -> Bool {
        lifecycle.state == .running && !server.isDraining
    }

    // MARK: - Running

    /// Serves until KILL, a signal, or ``shutdown()``, on the calling thread (the epoll loop gets its
    /// own thread). Works once.
    /// - Returns: why it stopped; the gateway is `stopped` by then.
    /// - Throws: `GatewayError.alreadyRun` on a second call, or after `shutdown()` stopped it first.
    /// - Parameter whenServing: called once on the loop thread when both fronts serve (after the HTTP
    ///   front started and the loop adopted what it took over, before its first wait): a successor
    ///   acknowledges its hand-over there.
    public func run(whenServing: (@Sendable () -> Void)? = nil) throws(GatewayError) -> StopReason {
        guard self.lifecycle.claimRun() else { throw .alreadyRun }
        if let whenServing { self.hooks.whenServing(whenServing) }
        let isDaemon = Daemon.isChild(self.options, environment: self.environment)
        self.logger.info("epmd running - daemon = \(isDaemon ? 1 : 0)")
        if self.options.httpEnabled {
            self.startHTTPFront()
        } else if let fd = self.httpSocket {
            self.logger.info("HTTP front disabled: \(self.httpSocketOrigin) (\(fd)) is closed")
            System.close(fd)
        }
        // READY=1 goes when the loop starts (the notifier is one of its hooks), after the HTTP front.
        self.notifier?.setPorts(epmd: self.epmdPort, http: self.httpPort)
        self.lifecycle.enterRunning()

        let reason = self.runLoop()

        // A signal (drained in the loop already) or KILL: the gateway drains from here on.
        self.lifecycle.transition(from: .running, to: .draining)
        if case .handedOver(let pid) = reason {
            // The successor serves on the same HTTP socket: stop accepting, finish what is in
            // flight, and close our copy only. The successor speaks to systemd now.
            self.http.withLock { http in
                http?.stop(handingOver: true)
                http = nil
            }
            self.handover?.close()
            self.logger.notice("handed over to PID \(pid)")
        } else {
            self.http.withLock { http in
                http?.stop()
                http = nil
            }
            self.handover?.close()
            self.notifier?.exited(status: reason.exitStatus)
        }
        self.lifecycle.transition(from: .draining, to: .stopped)
        return reason
    }

    /// Begins the shutdown, as SIGTERM does: readiness turns 503, the epmd port serves on for the
    /// shutdown grace, then everything stops and `run()` returns. Idempotent, and safe from any
    /// thread. Before `run()`, it closes the sockets and makes the gateway `stopped`.
    public func shutdown() {
        switch self.lifecycle.requestShutdown() {
        case .none:
            return
        case .wakeRun:
            self.wake.signal()
        case .closeUnrun:
            self.closeUnrun()
        }
    }

    /// Runs the epoll loop on its own thread (never on the Swift concurrency pool) and waits for it,
    /// or for `shutdown()`: then the grace, then the loop is told to stop.
    private func runLoop() -> StopReason {
        let outcome = Mutex<StopReason?>(nil)
        let thread: PosixThread
        do {
            let adoptions = self.takeAdoptions()
            thread = try PosixThread(name: "epmd-loop", stackSize: 1 << 20) {
                [server = self.server, logger = self.logger, wake = self.wake, handover = self.handover] in
                let reason: StopReason
                do {
                    let exit = try server.run(adopting: adoptions)
                    logger.info("loop ended: \(exit)")
                    switch exit {
                    case .killed: reason = .killed
                    case .shutdown: reason = .shutdown
                    case .handedOver: reason = .handedOver(handover?.successor ?? 0)
                    }
                } catch {
                    logger.error("event loop failed: \(error)")
                    reason = .failed("\(error)")
                }
                outcome.withLock { $0 = reason }
                wake.signal()
            }
        } catch {
            self.logger.error("event loop failed: \(error)")
            self.closeUnrun()
            return .failed("\(error)")
        }
        func loopEnded() -> StopReason? { outcome.withLock { $0 } }
        while loopEnded() == nil && !self.lifecycle.shutdownRequested {
            self.wake.wait(milliseconds: -1)
        }
        // `shutdown()`: the loop drains as it does for SIGTERM (readiness 503, the epmd port serving
        // for the grace), then ends on its own.
        if loopEnded() == nil { self.server.drain() }
        thread.join()
        return loopEnded() ?? .shutdown
    }

    /// The loop never ran: let it close the listeners (and the connections taken over) at once.
    private func closeUnrun() {
        for snapshot in self.takeAdoptions() { System.close(snapshot.fd) }
        self.server.shutdown()
        _ = try? self.server.run()
        self.handover?.close()
    }

    /// The connections to adopt, once (the loop takes them, or `closeUnrun` closes them).
    private func takeAdoptions() -> [EPMDConnectionSnapshot] {
        self.adoptions.withLock { adoptions in
            defer { adoptions = [] }
            return adoptions
        }
    }

    /// Starts the HTTP/JSON front. Drop-in use never breaks because of it: when its port is taken (several
    /// gateways started in a row, as `erl` and OTP's test suite do) the failure is logged and the epmd
    /// port runs on without HTTP.
    private func startHTTPFront() {
        let (registry, server, metrics, lifecycle) = (self.registry, self.server, self.metrics, self.lifecycle)
        let admin = self.security.adminToken.map { Self.adminAPI(token: $0, server: server, metrics: metrics) }
        let router = HTTPRouter(
            registry: registry,
            build: .init(version: EPMDApplication.version, libmicrohttpd: MicroHTTPDServer.libraryVersion),
            isReady: { Self.isReady(lifecycle, server) },
            metrics: { metrics.exposition(registry: registry, openConnections: server.statistics.openConnections) },
            admin: admin,
            readinessDetails: { [details = self.readinessDetails.withLock { $0 }] in details.compactMap { $0() } }
        )
        if let fd = self.httpSocket {
            self.logger.info(
                "HTTP front on \(self.httpSocketOrigin) (\(fd)): --http-address and --http-port are ignored"
            )
        }
        let configuration = MicroHTTPDServer.Configuration(
            address: self.options.httpAddress,
            port: UInt16(truncatingIfNeeded: self.options.httpPort),
            threads: self.options.httpThreads,
            connectionLimit: self.descriptorBudget.http,
            maxWatchers: self.options.maxWatchers,
            connectionsPerAddress: self.options.httpConnectionsPerAddress,
            headerTimeout: self.options.httpHeaderTimeout,
            tls: self.security.tls,
            listenSocket: self.httpSocket
        )
        do {
            let http = MicroHTTPDServer(
                configuration: configuration,
                logger: self.logger,
                longPoll: { router.longPollWait(for: $0) },
                events: router,
                observer: { metrics.http.httpRequest(routeIndex: $0, status: $1, seconds: $2) },
                connectionObserver: { event, count in
                    switch event {
                    case .refusedPerAddress: metrics.http.connections.refused(.perAddress, count: count)
                    case .refusedAtLimit: metrics.http.connections.refused(.limit, count: count)
                    case .headerTimeout: metrics.http.connections.headerTimedOut(count: count)
                    case .headTooLarge: metrics.http.connections.requestRejected(.headTooLarge, count: count)
                    case .uriTooLong: metrics.http.connections.requestRejected(.uriTooLong, count: count)
                    case .rejectedByLibrary: metrics.http.connections.requestRejected(.malformed, count: count)
                    }
                },
                handler: { router.respond(to: $0) }
            )
            try http.start()
            registry.addChangeObserver { [weak http] in http?.generationChanged($0.id) }
            self.handover?.provideHTTPListener { [weak http] in http?.listenDescriptor }
            metrics.http.readEventWatchers { [weak http] in http?.eventWatchers ?? 0 }
            metrics.http.connections.readOpen { [weak http] in http?.connectionStatistics.open ?? 0 }
            metrics.http.httpFrontStarted(true)
            let address = http.address ?? self.options.httpAddress
            self.logger.info("HTTP front on \(address) port \(http.port)\(self.security.summary)")
            self.http.withLock { $0 = http }
        } catch {
            self.logger.warning("HTTP front disabled, the epmd port runs on: \(error)")
            metrics.http.httpFrontStarted(false)
        }
    }
}

// MARK: - Hand-over

extension Gateway {
    /// The hand-over socket's path (nil: none).
    public var handoverPath: String? { self.handover?.path }

    /// Gives the hand-over the fd store's state journal (a memfd): passed to a successor as
    /// `state-journal` (``Restoration/stateJournal`` there). Call before ``run(whenServing:)``.
    public func provideStateJournal(_ descriptor: @escaping @Sendable () -> Int32?) {
        self.handover?.provideStateJournal(descriptor)
    }

    /// Which registrations outlive the process at a shutdown (kept in systemd's fd store): closed without
    /// an unregistration (``EPMDServer/keepAtExit(_:)``).
    func keepAtExit(_ keeps: @escaping @Sendable (ConnectionID) -> Bool) { self.server.keepAtExit(keeps) }

    /// Runs `timer` on the epmd loop's thread. Call before ``run(whenServing:)``.
    func addLoopTimer(_ timer: any GatewayLoopTimer) { self.hooks.add(timer) }
}

/// A timer run on the epmd loop's thread beside systemd's notifier (``Gateway/addLoopTimer(_:)``): the
/// same contract as `EPMDLoopHooks`' timer (quick, never blocking).
protocol GatewayLoopTimer: Sendable {
    /// When ``timerFired(now:)`` is next due (`System.monotonicNanoseconds()` time); nil for never.
    func nextDeadline() -> UInt64?
    /// Some timer of the loop's is due: act if this one is.
    func timerFired(now: UInt64)
}

/// The epmd loop's hooks: systemd's notifier (when there is one), more timers, and a callback when the
/// loop serves.
final class GatewayLoopHooks: EPMDLoopHooks {
    private let notifier: SystemdNotifier?
    private let serving = Mutex<(@Sendable () -> Void)?>(nil)
    private let timers = Mutex<[any GatewayLoopTimer]>([])

    init(notifier: SystemdNotifier?) { self.notifier = notifier }

    func whenServing(_ callback: @escaping @Sendable () -> Void) { self.serving.withLock { $0 = callback } }

    func add(_ timer: any GatewayLoopTimer) { self.timers.withLock { $0.append(timer) } }

    func loopStarted() {
        self.notifier?.loopStarted()
        let callback = self.serving.withLock { serving in
            defer { serving = nil }
            return serving
        }
        callback?()
    }

    func nextDeadline() -> UInt64? {
        let deadlines = [self.notifier?.nextDeadline()] + self.timers.withLock { $0 }.map { $0.nextDeadline() }
        return deadlines.compactMap { $0 }.min()
    }

    func timerFired(now: UInt64) {
        self.notifier?.timerFired(now: now)
        for timer in self.timers.withLock({ $0 }) { timer.timerFired(now: now) }
    }

    func drainBegan(graceSeconds: Int) { self.notifier?.drainBegan(graceSeconds: graceSeconds) }
}

// MARK: - Admin

extension Gateway {
    /// The admin API over the epmd loop: a forced unregistration waits at most 2 s for the loop.
    static func adminAPI(token: [UInt8], server: EPMDServer, metrics: GatewayMetrics) -> AdminAPI {
        AdminAPI(
            token: token,
            unregister: { name in
                switch server.forceUnregister(name: name, timeoutMilliseconds: 2000) {
                case .unregistered: .unregistered
                case .notFound: .notFound
                case .unavailable: .unavailable
                }
            },
            observer: { metrics.admin.adminRequest(result: $0.rawValue) }
        )
    }
}

// MARK: - Building

extension Gateway {
    /// Builds a gateway from options: the listen plan (or systemd's sockets), the registry, the
    /// metrics, and the epmd port, bound now. Nothing is served until ``run()``.
    /// - Parameters:
    ///   - options: the parsed command line.
    ///   - environment: the process environment (`LISTEN_FDS`, `NOTIFY_SOCKET`, the daemon markers).
    ///   - logger: where the gateway and its modules log.
    ///   - handlesSignals: the epmd loop takes SIGTERM/SIGINT through a signalfd; the caller must have
    ///     blocked them in every thread first (`ProcessControl.blockTerminationSignals()`).
    ///   - restoring: what a previous process left (a hand-over, or systemd's fd store): its registry
    ///     replaces a fresh one (and ONE `restarted` event is recorded), its listeners replace binding
    ///     (when given), and `run()` adopts its connections. The gateway owns every descriptor in it
    ///     from here on, also when this throws.
    /// - Returns: the gateway, `starting`.
    /// - Throws: `GatewayError.addressInUse` when another epmd has the port (exit 0: `erl` relies on
    ///   it), `GatewayError.cannotStart` otherwise.
    public static func build(
        options: EPMDOptions,
        environment: [String: String],
        logger: Logger,
        handlesSignals: Bool = false,
        restoring restoration: Restoration? = nil
    ) throws(GatewayError) -> Gateway {
        var built = false
        defer { if !built, let restoration { restoration.closeDescriptors() } }
        // systemd's fd store holds copies of registration sockets until sent: kept out of the epmd share.
        let storesDescriptors =
            FDStore.configuration(environment: environment).enabled
            && Systemd.notifies(systemdOption: options.systemd, environment: environment)
        let budget = try self.descriptorBudget(
            options,
            extraReserve: storesDescriptors ? FDStore.sendingLimit : 0,
            logger: logger
        )
        // The HTTP front's files first: a wrong one is reported even when another epmd has the port.
        let security = try HTTPSecurity.load(options)
        let listeners: EPMDServerConfiguration.Listeners
        let httpSocket: Int32?
        if let restoration, let epmd = restoration.epmdListeners {
            listeners = .inherited(epmd)
            httpSocket = restoration.httpListener
        } else {
            let planned = try self.listeners(options, environment: environment, logger: logger)
            listeners = planned.0
            httpSocket = restoration?.httpListener ?? planned.http
        }
        let configuration = EPMDServerConfiguration(
            port: options.socketPort,
            listeners: listeners,
            relaxedCommandCheck: options.relaxedCommandCheck,
            packetTimeout: options.packetTimeout,
            delayAccept: options.delayAccept,
            delayWrite: options.delayWrite,
            historyLimit: options.debugLevel > 0
                ? EPMDLimits.debugUnregisteredHistory : EPMDLimits.unregisteredHistory,
            handleSignals: handlesSignals,
            // At most an hour, as the command line allows (options built in code are not parsed).
            shutdownGrace: min(max(options.shutdownGrace, 0), 3600),
            namesLocalOnly: options.namesLocalOnly,
            maxConnections: budget.epmd,
            connectionsPerAddress: options.connectionsPerAddress
        )
        let registry =
            restoration.map { NodeRegistry(restoring: $0.registry) }
            ?? NodeRegistry(
                historyLimit: configuration.historyLimit,
                eventCapacity: options.eventBuffer,
                flapWindow: Double(options.flapWindow),
                initialGeneration: NodeRegistry.runGeneration()
            )
        let metrics = GatewayMetrics(
            build: BuildInfo(version: EPMDApplication.version, libmicrohttpdVersion: MicroHTTPDServer.libraryVersion),
            httpRoutes: HTTPRoute.allCases.map(\.label),
            nodeInfo: options.metricsNodeInfo,
            logger: logger
        )
        registry.addChangeObserver { metrics.registry.record($0) }
        let notifier =
            Systemd.notifies(systemdOption: options.systemd, environment: environment)
            ? SystemdNotifier(environment: environment, nodeCount: { registry.count }, logger: logger) : nil
        if let notifier { registry.addChangeObserver { _ in notifier.registryChanged() } }
        metrics.loop.limits(
            maxConnections: budget.epmd,
            reserve: budget.reserve,
            epmd: budget.epmd,
            http: budget.http
        )
        let hooks = GatewayLoopHooks(notifier: notifier)
        let handover =
            options.handoverSocket == "none" && restoration?.handoverListener == nil
            ? nil
            : HandoverService(
                registry: registry,
                metrics: metrics,
                environment: environment,
                notifies: notifier != nil,
                logger: logger
            )
        let server: EPMDServer
        do {
            server = try EPMDServer(
                configuration: configuration,
                registry: registry,
                logger: logger,
                instruments: metrics.loop,
                hooks: hooks,
                handover: handover
            )
        } catch let error as ListenerError {
            if case .addressInUse = error { throw .addressInUse(error.description) }
            throw .cannotStart(error.description)
        } catch {
            throw .cannotStart("cannot start: \(error)")
        }
        let wake: WakeEvent
        do {
            wake = try WakeEvent()
        } catch {
            throw .cannotStart("cannot start: \(error)")
        }
        // Only now that the epmd port is ours: a gateway that finds it taken never touches the
        // running one's hand-over socket.
        handover?.open(
            // Port 0 (tests) has no default socket: give --handover-socket.
            path: HandoverService.path(for: options, port: options.socketPort, environment: environment),
            inherited: restoration?.handoverListener
        )
        if let restoration {
            // Once the observers are in: metrics count the restart, never the restored nodes.
            let event = registry.recordRestart(method: restoration.method)
            logger.notice(
                "restored \(registry.count) registrations and \(restoration.connections.count) connections (\(restoration.method.rawValue))",
                metadata: ["registry.generation": "\(event.id)"]
            )
        }
        logger.debug("gateway built", metadata: ["epmd.port": "\(server.boundPort)"])
        built = true
        return Gateway(
            options: options,
            environment: environment,
            logger: logger,
            registry: registry,
            metrics: metrics,
            descriptorBudget: budget,
            server: server,
            wake: wake,
            security: security,
            httpSocket: httpSocket,
            httpSocketOrigin: restoration?.httpListener != nil
                ? "the HTTP socket handed over" : "systemd's socket named \"http\"",
            notifier: notifier,
            adoptions: restoration?.connections ?? [],
            handover: handover,
            hooks: hooks
        )
    }

    /// The descriptor budget for the process's limit now; options that do not fit stop the start.
    private static func descriptorBudget(
        _ options: EPMDOptions,
        extraReserve: Int,
        logger: Logger
    ) throws(GatewayError) -> DescriptorBudget {
        let budget: DescriptorBudget
        do {
            budget = try DescriptorBudget(limit: System.descriptorLimit(), options: options, extraReserve: extraReserve)
        } catch {
            throw .cannotStart(error.description)
        }
        let split = "reserve \(budget.reserve), epmd \(budget.epmd), HTTP \(budget.http)"
        if budget.fits {
            logger.info("descriptor limit \(budget.limit): \(split)")
        } else {
            logger.warning("descriptor limit \(budget.limit) is too low for \(split): raise ulimit -n")
        }
        return budget
    }

    /// The listening sockets: systemd's (`-systemd`: the epmd ones, and the HTTP front's when one is
    /// named `http`), or C epmd's listen plan.
    private static func listeners(
        _ options: EPMDOptions,
        environment: [String: String],
        logger: Logger
    ) throws(GatewayError) -> (EPMDServerConfiguration.Listeners, http: Int32?) {
        guard options.systemd else {
            do {
                return (.bind(try ListenPlan.make(addresses: options.addresses, port: options.socketPort)), nil)
            } catch {
                throw .cannotStart(error.description)
            }
        }
        let sockets: Systemd.ActivatedSockets
        do {
            sockets = try Systemd.activatedSockets(environment: environment)
        } catch {
            throw .cannotStart(error.description)
        }
        logger.debug(
            "systemd sockets",
            metadata: ["epmd": "\(sockets.epmd)", "http": "\(sockets.http.map(String.init) ?? "none")"]
        )
        return (.inherited(sockets.epmd), sockets.http)
    }
}

/// What a previous process left for the next one to serve on: a hand-over (`--takeover`, SIGUSR2) or
/// systemd's fd store. Given to ``Gateway/build(options:environment:logger:handlesSignals:restoring:)``.
public struct Restoration: Sendable {
    /// The registry as the previous process left it (nodes, unregistered FIFO, generation, events).
    public var registry: NodeRegistry.State
    /// The epmd listening sockets, used instead of binding (nil: bind, or systemd's, as usual).
    public var epmdListeners: [Int32]?
    /// The HTTP front's listening socket (nil: bind as usual).
    public var httpListener: Int32?
    /// Every epmd connection (registrations first), each with its descriptor in this process.
    public var connections: [EPMDConnectionSnapshot]
    /// How the table survived (the `restarted` event's method).
    public var method: RestartMethod
    /// The hand-over Unix socket, listening (a hand-over passes it on; nil: listen as usual).
    public var handoverListener: Int32?
    /// The fd store's state journal (a memfd), named `state-journal`, when the predecessor had one.
    public var stateJournal: Int32?

    public init(
        registry: NodeRegistry.State,
        epmdListeners: [Int32]? = nil,
        httpListener: Int32? = nil,
        connections: [EPMDConnectionSnapshot],
        method: RestartMethod
    ) {
        self.registry = registry
        self.epmdListeners = epmdListeners
        self.httpListener = httpListener
        self.connections = connections
        self.method = method
    }

    /// Closes every descriptor it holds (a restoration that cannot be served).
    public func closeDescriptors() {
        for fd in self.epmdListeners ?? [] { System.close(fd) }
        if let fd = self.httpListener { System.close(fd) }
        if let fd = self.handoverListener { System.close(fd) }
        if let fd = self.stateJournal { System.close(fd) }
        for connection in self.connections { System.close(connection.fd) }
    }
}

/// Why a gateway cannot be built or run.
public enum GatewayError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The epmd port is taken: another epmd runs there. The process exits 0 (`erl` starts
    /// `epmd -daemon` on every distributed start and relies on it).
    case addressInUse(String)
    /// The gateway cannot start (bad addresses, no systemd sockets, a listener or resource failure).
    case cannotStart(String)
    /// `run()` was called before, or `shutdown()` stopped the gateway first: a gateway runs once.
    case alreadyRun

    public var description: String {
        switch self {
        case .addressInUse(let message), .cannotStart(let message): message
        case .alreadyRun: "the gateway has run already"
        }
    }
}

/// The lifecycle state behind a lock, shared with the readiness check (which must not retain the gateway).
private final class Lifecycle: Sendable {
    private struct Storage {
        var state = Gateway.State.starting
        var runClaimed = false
        var shutdownRequested = false
    }

    enum ShutdownAction {
        /// Nothing to do: asked before, or stopped already.
        case none
        /// `run()` is under way: wake it to drain.
        case wakeRun
        /// `run()` never came: close the sockets.
        case closeUnrun
    }

    private let storage = Mutex(Storage())
    private let logger: Logger

    init(logger: Logger) {
        self.logger = logger
    }

    var state: Gateway.State { self.storage.withLock { $0.state } }
    var shutdownRequested: Bool { self.storage.withLock { $0.shutdownRequested } }
    var neverRan: Bool { self.storage.withLock { !$0.runClaimed && $0.state == .starting } }

    /// Takes the one `run()`: false when it was taken, or the gateway stopped before it.
    func claimRun() -> Bool {
        self.storage.withLock { storage in
            guard storage.state == .starting, !storage.runClaimed else { return false }
            storage.runClaimed = true
            return true
        }
    }

    /// `starting` to `running`, or straight to `draining` when `shutdown()` came while `run()` started.
    func enterRunning() {
        let to = self.storage.withLock { storage -> Gateway.State? in
            guard storage.state == .starting else { return nil }
            storage.state = storage.shutdownRequested ? .draining : .running
            return storage.state
        }
        if let to { self.logTransition(.starting, to) }
    }

    /// Moves from `from` to `to`; does nothing in any other state (a shutdown got there first).
    func transition(from: Gateway.State, to: Gateway.State) {
        let moved = self.storage.withLock { storage in
            guard storage.state == from else { return false }
            storage.state = to
            return true
        }
        if moved { self.logTransition(from, to) }
    }

    func requestShutdown() -> ShutdownAction {
        let (action, from, to) = self.storage.withLock { storage -> (ShutdownAction, Gateway.State, Gateway.State) in
            let from = storage.state
            guard !storage.shutdownRequested, from != .stopped else { return (.none, from, from) }
            storage.shutdownRequested = true
            if !storage.runClaimed {
                storage.state = .stopped
                return (.closeUnrun, from, .stopped)
            }
            if from == .running { storage.state = .draining }
            return (.wakeRun, from, storage.state)
        }
        if from != to { self.logTransition(from, to) }
        return action
    }

    private func logTransition(_ from: Gateway.State, _ to: Gateway.State) {
        self.logger.debug(
            "gateway \(from) -> \(to)",
            metadata: ["gateway.state.from": "\(from)", "gateway.state.to": "\(to)"]
        )
    }
}
