import EPMDLogging
import EPMDPosix
import EPMDProtocol
import EPMDRegistry
import EPMDServer
import Foundation
import GatewayHTTP
import GatewayMetrics
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The whole program: parse the command line, then run a client mode or the daemon.
public enum EPMDApplication {
    /// The gateway's version.
    public static let version = "0.1.0"

    /// Runs the program and returns its exit status.
    /// - Parameters:
    ///   - arguments: argv, program name first.
    ///   - environment: the process environment.
    public static func main(arguments: [String], environment: [String: String]) -> Int32 {
        signal(SIGPIPE, SIG_IGN)
        switch EPMDArguments.parse(Array(arguments.dropFirst()), environment: environment) {
        case .usage:
            self.write(2, Array(EPMDArguments.usageText.utf8))
            return 1
        case .help:
            self.write(1, Array(EPMDArguments.usageText.utf8))
            return 0
        case .version:
            self.write(1, Array("epmd-gateway \(self.version)\n".utf8))
            return 0
        case .client(let mode, let options):
            let outcome = EPMDClient.run(mode, port: options.socketPort)
            self.write(1, outcome.stdout)
            self.write(2, outcome.stderr)
            return outcome.status
        case .serve(let options):
            if options.daemon && environment[Daemon.childMarker] == nil {
                do {
                    try Daemon.spawnDetached(arguments: arguments)
                    return 0
                } catch {
                    EPMDLogger(level: 0).log(0, "cannot start daemon: \(error)")
                    return 1
                }
            }
            return self.serve(options, environment: environment)
        }
    }

    /// Runs the daemon in this process until KILL or a signal.
    public static func serve(_ options: EPMDOptions, environment: [String: String]) -> Int32 {
        let isDaemon = options.daemon && environment[Daemon.childMarker] != nil
        let logger = EPMDLogger(level: options.debugLevel, sink: isDaemon ? .syslog : .standardError)
        // SIGTERM/SIGINT are taken by the loop through a signalfd: block them before any thread starts.
        System.blockSignals([SIGTERM, SIGINT])
        System.raiseDescriptorLimit()

        let listeners: EPMDServerConfiguration.Listeners
        if options.systemd {
            guard let fds = Systemd.listenDescriptors(environment: environment) else {
                logger.log(0, "cannot obtain sockets from systemd")
                return 1
            }
            guard !fds.isEmpty else {
                logger.log(0, "systemd provides no sockets")
                return 1
            }
            guard fds.count <= ListenPlan.maximumSockets else {
                logger.log(0, "cannot listen on more than \(ListenPlan.maximumSockets) IP addresses")
                return 1
            }
            listeners = .inherited(fds)
        } else {
            do {
                listeners = .bind(try ListenPlan.make(addresses: options.addresses, port: options.socketPort))
            } catch {
                logger.log(0, error.description)
                return 1
            }
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
            handleSignals: true,
            shutdownGrace: options.shutdownGrace
        )
        let registry = NodeRegistry(
            historyLimit: configuration.historyLimit,
            eventCapacity: options.eventBuffer,
            flapWindow: Double(options.flapWindow),
            initialGeneration: NodeRegistry.runGeneration()
        )
        let metrics = GatewayMetrics(
            build: BuildInfo(version: self.version, libmicrohttpdVersion: MicroHTTPDServer.libraryVersion),
            httpRoutes: HTTPRoute.allCases.map(\.label),
            nodeInfo: options.metricsNodeInfo
        )
        registry.addChangeObserver { metrics.record($0) }
        let server: EPMDServer
        do {
            defer { if isDaemon { Daemon.reportReady(environment: environment) } }
            server = try EPMDServer(
                configuration: configuration,
                registry: registry,
                logger: logger,
                instruments: metrics
            )
        } catch let error as ListenerError {
            if case .addressInUse = error {
                // erl runs `epmd -daemon` on every distributed start and relies on this exit 0.
                logger.log(1, error.description)
                return 0
            }
            logger.log(0, error.description)
            return 1
        } catch {
            logger.log(0, "cannot start: \(error)")
            return 1
        }
        logger.log(1, "epmd running - daemon = \(isDaemon ? 1 : 0)")
        if options.systemd {
            Systemd.notify(
                "READY=1\nSTATUS=Processing port mapping requests...\nMAINPID=\(getpid())",
                environment: environment
            )
        }
        let ready = ReadinessFlag()
        let http =
            options.httpEnabled
            ? self.startHTTP(
                options,
                registry: registry,
                server: server,
                ready: ready,
                metrics: metrics,
                logger: logger,
                httpLogger: Logger(label: "epmd-gateway.http") { _ in
                    EPMDLogHandler(
                        sink: isDaemon ? .syslog : EPMDLogHandler.standardErrorSink(environment: environment),
                        debugLevel: options.debugLevel
                    )
                }
            ) : nil
        ready.set(true)
        let status = self.runOnLoopThread(server, logger: logger)
        ready.set(false)
        http?.stop()
        if options.systemd {
            Systemd.notify("STATUS=Exited.\nERRNO=\(status)", environment: environment)
        }
        return status
    }

    /// Starts the HTTP/JSON front. Drop-in use never breaks because of it: when its port is taken (several
    /// gateways started in a row, as `erl` and OTP's test suite do) the failure is logged and the epmd
    /// port runs on without HTTP.
    private static func startHTTP(
        _ options: EPMDOptions,
        registry: NodeRegistry,
        server: EPMDServer,
        ready: ReadinessFlag,
        metrics: GatewayMetrics,
        logger: EPMDLogger,
        httpLogger: Logger
    ) -> MicroHTTPDServer? {
        let router = HTTPRouter(
            registry: registry,
            build: .init(version: self.version, libmicrohttpd: MicroHTTPDServer.libraryVersion),
            isReady: { ready.value && !server.isDraining },
            metrics: { metrics.exposition(registry: registry, openConnections: server.statistics.openConnections) }
        )
        let configuration = MicroHTTPDServer.Configuration(
            address: options.httpAddress,
            port: UInt16(truncatingIfNeeded: options.httpPort),
            threads: options.httpThreads,
            maxWatchers: options.maxWatchers
        )
        do {
            let http = MicroHTTPDServer(
                configuration: configuration,
                logger: httpLogger,
                longPoll: { router.longPollWait(for: $0) },
                events: router,
                observer: { metrics.httpRequest(route: $0, status: $1, seconds: $2) },
                handler: { router.respond(to: $0) }
            )
            try http.start()
            registry.addChangeObserver { http.generationChanged($0.id) }
            metrics.readEventWatchers { http.eventWatchers }
            metrics.httpFrontStarted(true)
            logger.log(1, "HTTP front on \(options.httpAddress) port \(http.port)")
            return http
        } catch {
            logger.log(0, "HTTP front disabled, the epmd port runs on: \(error)")
            metrics.httpFrontStarted(false)
            return nil
        }
    }

    /// Runs the epoll loop on its own thread (never on the Swift concurrency pool) and waits for it.
    private static func runOnLoopThread(_ server: EPMDServer, logger: EPMDLogger) -> Int32 {
        let done = DispatchSemaphore(value: 0)
        let status = LoopStatus()
        let thread = Thread {
            do {
                let reason = try server.run()
                logger.log(1, "loop ended: \(reason)")
                status.set(0)
            } catch {
                logger.log(0, "event loop failed: \(error)")
                status.set(1)
            }
            done.signal()
        }
        thread.name = "epmd-loop"
        thread.stackSize = 1 << 20
        thread.start()
        done.wait()
        return status.value
    }

    private static func write(_ fd: Int32, _ bytes: [UInt8]) {
        bytes.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let written = Glibc.write(fd, raw.baseAddress.map { $0 + offset }, raw.count - offset)
                if written < 0 && errno == EINTR { continue }
                if written <= 0 { return }
                offset += written
            }
        }
    }
}

/// Whether the gateway is ready: set once both fronts run, cleared when the loop ends.
private final class ReadinessFlag: Sendable {
    private let storage = Atomic<Bool>(false)
    func set(_ value: Bool) { self.storage.store(value, ordering: .releasing) }
    var value: Bool { self.storage.load(ordering: .acquiring) }
}

/// The loop thread's exit status, handed to the main thread.
private final class LoopStatus: Sendable {
    private let storage = Mutex<Int32>(0)
    func set(_ value: Int32) { self.storage.withLock { $0 = value } }
    var value: Int32 { self.storage.withLock { $0 } }
}
