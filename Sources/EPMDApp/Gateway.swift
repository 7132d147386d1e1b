import EPMDPosix
import EPMDProtocol
import EPMDRegistry
import EPMDServer
import GatewayHTTP
import GatewayMetrics
import Logging
import Synchronization

/// The gateway as one value with a lifecycle: the registry, the metrics, the epmd port and the HTTP
/// front, built from options by ``build(options:environment:logger:handlesSignals:)`` and run once
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

        /// The process exit status: 0, except 1 when the loop failed.
        public var exitStatus: Int32 {
            switch self {
            case .killed, .shutdown: 0
            case .failed: 1
            }
        }

        public var description: String {
            switch self {
            case .killed: "killed"
            case .shutdown: "shutdown"
            case .failed(let message): "failed: \(message)"
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
    /// The messages to systemd (`NOTIFY_SOCKET`), nil when nobody listens.
    private let notifier: SystemdNotifier?

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
        notifier: SystemdNotifier?
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
        self.notifier = notifier
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
    public func run() throws(GatewayError) -> StopReason {
        guard self.lifecycle.claimRun() else { throw .alreadyRun }
        let isDaemon = Daemon.isChild(self.options, environment: self.environment)
        self.logger.info("epmd running - daemon = \(isDaemon ? 1 : 0)")
        if self.options.httpEnabled {
            self.startHTTPFront()
        } else if let fd = self.httpSocket {
            self.logger.info("HTTP front disabled: systemd's socket named \"http\" (\(fd)) is closed")
            System.close(fd)
        }
        // READY=1 goes when the loop starts (the notifier is one of its hooks), after the HTTP front.
        self.notifier?.setPorts(epmd: self.epmdPort, http: self.httpPort)
        self.lifecycle.enterRunning()

        let reason = self.runLoop()

        // A signal (drained in the loop already) or KILL: the gateway drains from here on.
        self.lifecycle.transition(from: .running, to: .draining)
        self.http.withLock { http in
            http?.stop()
            http = nil
        }
        self.notifier?.exited(status: reason.exitStatus)
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
            thread = try PosixThread(name: "epmd-loop", stackSize: 1 << 20) {
                [server = self.server, logger = self.logger, wake = self.wake] in
                let reason: StopReason
                do {
                    let exit = try server.run()
                    logger.info("loop ended: \(exit)")
                    reason = exit == .killed ? .killed : .shutdown
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

    /// The loop never ran: let it close the listeners at once.
    private func closeUnrun() {
        self.server.shutdown()
        _ = try? self.server.run()
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
                "HTTP front on systemd's socket named \"http\" (\(fd)): --http-address and --http-port are ignored"
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
    /// - Returns: the gateway, `starting`.
    /// - Throws: `GatewayError.addressInUse` when another epmd has the port (exit 0: `erl` relies on
    ///   it), `GatewayError.cannotStart` otherwise.
    public static func build(
        options: EPMDOptions,
        environment: [String: String],
        logger: Logger,
        handlesSignals: Bool = false
    ) throws(GatewayError) -> Gateway {
        let budget = try self.descriptorBudget(options, logger: logger)
        // The HTTP front's files first: a wrong one is reported even when another epmd has the port.
        let security = try HTTPSecurity.load(options)
        let (listeners, httpSocket) = try self.listeners(options, environment: environment, logger: logger)
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
        let registry = NodeRegistry(
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
        let server: EPMDServer
        do {
            server = try EPMDServer(
                configuration: configuration,
                registry: registry,
                logger: logger,
                instruments: metrics.loop,
                hooks: notifier
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
        logger.debug("gateway built", metadata: ["epmd.port": "\(server.boundPort)"])
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
            notifier: notifier
        )
    }

    /// The descriptor budget for the process's limit now; options that do not fit stop the start.
    private static func descriptorBudget(
        _ options: EPMDOptions,
        logger: Logger
    ) throws(GatewayError) -> DescriptorBudget {
        let budget: DescriptorBudget
        do {
            budget = try DescriptorBudget(limit: System.descriptorLimit(), options: options)
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
