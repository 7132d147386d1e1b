import EPMDLogging
import EPMDPosix
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
        // systemd's fd store: what a restart kept (registrations, the state journal).
        let stored = FDStore.restoreAtStart(options: options, environment: environment, logger: logger)
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
                restoring: stored?.restoration
            )
        } catch .addressInUse(let message) {
            // erl runs `epmd -daemon` on every distributed start and relies on this exit 0.
            logger.info("\(message)")
            return 0
        } catch {
            logger.error("\(error)")
            return 1
        }
        FDStore.attach(to: gateway, environment: environment, restored: stored, logger: logger)
        do {
            return try gateway.run().exitStatus
        } catch {
            logger.error("\(error)")
            return 1
        }
    }
}
