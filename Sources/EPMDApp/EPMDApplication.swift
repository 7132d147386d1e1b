import EPMDLogging
import EPMDPosix
import EPMDRegistry
import Logging

/// The program's entry: parse the command line, then print usage, help or the version, run a client
/// mode, spawn the daemon, or build and run a ``Gateway``.
public enum EPMDApplication {
    /// The gateway's version.
    public static let version = "0.1.0"

    /// Runs the program and returns its exit status. Bootstraps swift-log's `LoggingSystem` (once per
    /// process: call this once, from the executable).
    /// - Parameters:
    ///   - arguments: argv, program name first.
    ///   - environment: the process environment.
    public static func main(arguments: [String], environment: [String: String]) -> Int32 {
        ProcessControl.ignoreBrokenPipe()
        switch EPMDArguments.parse(Array(arguments.dropFirst()), environment: environment) {
        case .usage:
            StandardStreams.writeError(Array(EPMDArguments.usageText.utf8))
            return 1
        case .help:
            StandardStreams.writeOutput(Array(EPMDArguments.usageText.utf8))
            return 0
        case .version:
            StandardStreams.writeOutput(Array("epmd-gateway \(self.version)\n".utf8))
            return 0
        case .client(let mode, let options):
            let outcome = EPMDClient.run(mode, port: options.socketPort)
            StandardStreams.writeOutput(outcome.stdout)
            StandardStreams.writeError(outcome.stderr)
            return outcome.status
        case .serve(let options):
            let logger = self.bootstrapLogging(options, environment: environment)
            if options.daemon && !Daemon.isChild(options, environment: environment) {
                do {
                    try HTTPSecurity.checkBeforeDaemon(options)  // the daemon runs in `/`, without a terminal
                    try Daemon.spawnDetached(arguments: arguments)
                    return 0
                } catch let error as GatewayError {
                    logger.error("\(error)")
                    return 1
                } catch {
                    logger.error("cannot start daemon: \(error)")
                    return 1
                }
            }
            return self.serve(options, environment: environment, logger: logger)
        }
    }

    /// Sends every `Logger` of the process to C epmd's lines: syslog in the daemon, the journal when
    /// stderr is one, stderr otherwise; the threshold from the number of `-d`.
    private static func bootstrapLogging(_ options: EPMDOptions, environment: [String: String]) -> Logger {
        let sink: EPMDLogHandler.Sink =
            Daemon.isChild(options, environment: environment)
            ? .syslog : EPMDLogHandler.standardErrorSink(environment: environment)
        let debugLevel = options.debugLevel
        LoggingSystem.bootstrap { _ in EPMDLogHandler(sink: sink, debugLevel: debugLevel) }
        return Logger(label: "epmd")
    }

    /// `--takeover`: receives everything from the running gateway on the hand-over socket.
    private static func takeOver(
        _ options: EPMDOptions,
        environment: inout [String: String],
        logger: Logger
    ) -> Result<(client: HandoverClient, restoration: Restoration), HandoverError> {
        let port = options.socketPort
        guard let path = HandoverService.path(for: options, port: port, environment: environment) else {
            return .failure(HandoverError("--takeover needs a hand-over socket: give --handover-socket PATH"))
        }
        do throws(HandoverError) {
            let client = try HandoverClient.connect(path: path)
            let (restoration, predecessor) = try client.receive()
            // Started by SIGUSR2 under systemd: the predecessor was the process systemd started, and
            // this one speaks for the service from now on (it becomes MAINPID), the watchdog's pings
            // included: systemd named the predecessor in WATCHDOG_PID, and a successor that honoured that
            // sent none and was killed by the watchdog seconds after the hand-over.
            for key in ["SYSTEMD_EXEC_PID", "WATCHDOG_PID"]
            where environment[key].flatMap({ Int32($0) }) == predecessor {
                environment[key] = String(ProcessControl.processID)
            }
            logger.notice(
                "taking over from PID \(predecessor): \(restoration.registry.nodes.count) registrations, \(restoration.connections.count) connections"
            )
            return .success((client, restoration))
        } catch {
            return .failure(error)
        }
    }

    /// Builds and runs the gateway in this process until KILL or a signal.
    /// - Parameters:
    ///   - options: the parsed command line (`.serve`).
    ///   - environment: the process environment.
    ///   - logger: where the gateway logs.
    /// - Returns: the exit status: 0 after KILL or a signal, and when the port is taken (another epmd
    ///   runs); 1 when the gateway cannot start or its loop fails.
    public static func serve(_ options: EPMDOptions, environment: [String: String], logger: Logger) -> Int32 {
        // SIGTERM/SIGINT are taken by the loop through a signalfd: block them before any thread starts.
        ProcessControl.blockTerminationSignals()
        do {
            try System.raiseDescriptorLimit()
        } catch {
            // A seccomp filter without setrlimit (systemd's SystemCallFilter=~@resources): LimitNOFILE= rules.
            logger.warning("cannot raise the descriptor limit (\(error)); it stays at \(System.descriptorLimit())")
        }
        var environment = environment
        var takeover: (client: HandoverClient, restoration: Restoration)?
        if options.takeover {
            switch self.takeOver(options, environment: &environment, logger: logger) {
            case .success(let received): takeover = received
            case .failure(let error):
                logger.error("\(error)")
                if Daemon.isChild(options, environment: environment) { Daemon.reportReady(environment: environment) }
                return 1
            }
        }
        // systemd's fd store: what a restart kept (registrations, the state journal); a hand-over
        // passes everything itself.
        let stored =
            takeover == nil ? FDStore.restoreAtStart(options: options, environment: environment, logger: logger) : nil
        let gateway: Gateway
        do {
            // The waiting `-daemon` parent is released once the sockets are bound, or binding failed.
            defer {
                if Daemon.isChild(options, environment: environment) { Daemon.reportReady(environment: environment) }
            }
            gateway = try Gateway.build(
                options: options,
                environment: environment,
                logger: logger,
                handlesSignals: true,
                restoring: takeover?.restoration ?? stored?.restoration
            )
        } catch .addressInUse(let message) where takeover == nil {
            // erl runs `epmd -daemon` on every distributed start and relies on this exit 0.
            logger.info("\(message)")
            return 0
        } catch {
            takeover?.client.refuse("the successor cannot start: \(error)")
            logger.error("\(error)")
            return 1
        }
        let store = FDStore.attach(
            to: gateway,
            environment: environment,
            restored: stored,
            adoptingJournal: takeover?.restoration.stateJournal,
            logger: logger
        )
        // What the last registrations sent to systemd's store is sent before the exit (a restart keeps it).
        // At most 10 s (TimeoutStopSec=30s, less the grace): a PID 1 behind a burst takes ~100 a second.
        defer { store?.flush(milliseconds: 10_000) }
        do {
            guard let client = takeover?.client else { return try gateway.run().exitStatus }
            return try gateway.run {
                // Both fronts serve: the predecessor may let go now.
                guard client.acknowledge() else {
                    // It timed out and serves on with every socket: leave them all to it, at once.
                    logger.critical("the predecessor did not confirm the hand-over: exiting, it serves on")
                    ProcessControl.exitImmediately(1)
                }
                logger.notice("took over from the running gateway at \(client.path)")
            }.exitStatus
        } catch {
            logger.error("\(error)")
            return 1
        }
    }
}
