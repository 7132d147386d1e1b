/// epmd's command line: parsed strictly left to right, numbers with `atoi`, a zero or missing value
/// is a usage error, client modes must come last. Our own options are GNU-style `--long` ones.
public enum EPMDArguments {
    /// - Parameters:
    ///   - arguments: the arguments without the program name.
    ///   - environment: the process environment (`ERL_EPMD_PORT`, `ERL_EPMD_ADDRESS`,
    ///     `ERL_EPMD_RELAXED_COMMAND_CHECK`).
    /// - Returns: what to do.
    public static func parse(_ arguments: [String], environment: [String: String]) -> EPMDInvocation {
        var options = EPMDOptions()
        if let port = environment["ERL_EPMD_PORT"] { options.port = self.atoi(port) }
        options.addresses = environment["ERL_EPMD_ADDRESS"]
        options.relaxedCommandCheck = environment["ERL_EPMD_RELAXED_COMMAND_CHECK"] != nil
        if environment["EPMD_GATEWAY_NO_HTTP"] != nil { options.httpEnabled = false }
        if environment["EPMD_GATEWAY_METRICS_NODE_INFO"] != nil { options.metricsNodeInfo = true }
        if environment["EPMD_GATEWAY_NAMES_LOCAL_ONLY"] != nil { options.namesLocalOnly = true }
        for option in self.longOptions.values {
            guard let key = option.environment, let value = environment[key] else { continue }
            guard option.apply(value, &options) else { return .usage }
        }

        var index = 0
        func positiveValue() -> Int? {
            guard index + 1 < arguments.count else { return nil }
            let value = self.atoi(arguments[index + 1])
            return value == 0 ? nil : value
        }
        while index < arguments.count {
            let isLast = index == arguments.count - 1
            switch arguments[index] {
            case "-d", "-debug":
                options.debugLevel += 1
                index += 1
            case let flag where self.numericOptions[flag] != nil:
                guard let value = positiveValue(), let keyPath = self.numericOptions[flag] else { return .usage }
                options[keyPath: keyPath] = value
                index += 2
            case "-address":
                guard index + 1 < arguments.count else { return .usage }
                options.addresses = arguments[index + 1]
                index += 2
            case "-daemon":
                options.daemon = true
                index += 1
            case "-relaxed_command_check":
                options.relaxedCommandCheck = true
                index += 1
            case "-systemd":
                options.systemd = true
                index += 1
            case "-names":
                return isLast ? .client(.names, options) : .usage
            case "-started":
                return isLast ? .client(.started, options) : .usage
            case "-dump":
                return isLast ? .client(.dump, options) : .usage
            case "-kill":
                return isLast ? .client(.kill, options) : .usage
            case "-stop":
                return index == arguments.count - 2 ? .client(.stop(arguments[index + 1]), options) : .usage
            case "--help":
                return .help
            case "--version":
                return .version
            case "--no-http":
                options.httpEnabled = false
                index += 1
            case "--metrics-node-info":
                options.metricsNodeInfo = true
                index += 1
            case "--names-local-only":
                options.namesLocalOnly = true
                index += 1
            case "--takeover", "-takeover":
                options.takeover = true
                index += 1
            case let argument where argument.hasPrefix("--"):
                // `--name value` or `--name=value`.
                let parts = argument.split(separator: "=", maxSplits: 1).map(String.init)
                guard let option = self.longOptions[parts[0]] else { return .usage }
                let value: String
                if parts.count == 2 {
                    value = parts[1]
                    index += 1
                } else {
                    guard index + 1 < arguments.count else { return .usage }
                    value = arguments[index + 1]
                    index += 2
                }
                guard option.apply(value, &options) else { return .usage }
            default:
                return .usage
            }
        }
        return .serve(options)
    }

    /// Our own long options that take a value, with their environment variables.
    struct LongOption: Sendable {
        var environment: String?
        var apply: @Sendable (String, inout EPMDOptions) -> Bool
    }

    static let longOptions: [String: LongOption] = [
        "--http-address": LongOption(environment: "EPMD_GATEWAY_HTTP_ADDRESS") { value, options in
            guard !value.isEmpty else { return false }
            options.httpAddress = value
            return true
        },
        "--http-port": LongOption(environment: "EPMD_GATEWAY_HTTP_PORT") { value, options in
            guard let port = UInt16(value) else { return false }
            options.httpPort = Int(port)
            return true
        },
        "--http-threads": LongOption(environment: "EPMD_GATEWAY_HTTP_THREADS") { value, options in
            guard let threads = Int(value), (1...64).contains(threads) else { return false }
            options.httpThreads = threads
            return true
        },
        "--http-connections-per-address": LongOption(environment: "EPMD_GATEWAY_HTTP_CONNECTIONS_PER_ADDRESS") {
            value,
            options in
            guard let count = Int(value), (0...100_000).contains(count) else { return false }
            options.httpConnectionsPerAddress = count
            return true
        },
        "--max-connections": LongOption(environment: "EPMD_GATEWAY_MAX_CONNECTIONS") { value, options in
            guard let count = Int(value), (1...Int(Int32.max)).contains(count) else { return false }
            options.maxConnections = count
            return true
        },
        "--connections-per-address": LongOption(environment: "EPMD_GATEWAY_CONNECTIONS_PER_ADDRESS") {
            value,
            options in
            guard let count = Int(value), (0...Int(Int32.max)).contains(count) else { return false }
            options.connectionsPerAddress = count
            return true
        },
        "--http-connections": LongOption(environment: "EPMD_GATEWAY_HTTP_CONNECTIONS") { value, options in
            guard let count = Int(value), (1...65_536).contains(count) else { return false }
            options.httpConnections = count
            return true
        },
        "--http-header-timeout": LongOption(environment: "EPMD_GATEWAY_HTTP_HEADER_TIMEOUT") { value, options in
            guard let seconds = Int(value), (0...3600).contains(seconds) else { return false }
            options.httpHeaderTimeout = seconds
            return true
        },
        "--http-tls-cert": LongOption(environment: "EPMD_GATEWAY_HTTP_TLS_CERT") { value, options in
            options.httpTLSCertificateFile = value
            return !value.isEmpty
        },
        "--http-tls-key": LongOption(environment: "EPMD_GATEWAY_HTTP_TLS_KEY") { value, options in
            options.httpTLSKeyFile = value
            return !value.isEmpty
        },
        "--http-tls-client-ca": LongOption(environment: "EPMD_GATEWAY_HTTP_TLS_CLIENT_CA") { value, options in
            options.httpTLSClientCAFile = value
            return !value.isEmpty
        },
        "--admin-token-file": LongOption(environment: "EPMD_GATEWAY_ADMIN_TOKEN_FILE") { value, options in
            options.adminTokenFile = value
            return !value.isEmpty
        },
        "--handover-socket": LongOption(environment: "EPMD_GATEWAY_HANDOVER_SOCKET") { value, options in
            guard !value.isEmpty else { return false }
            options.handoverSocket = value
            return true
        },
        "--shutdown-grace": LongOption(environment: "EPMD_GATEWAY_SHUTDOWN_GRACE") { value, options in
            guard let seconds = Int(value), (0...3600).contains(seconds) else { return false }
            options.shutdownGrace = seconds
            return true
        },
        "--max-watchers": LongOption(environment: "EPMD_GATEWAY_MAX_WATCHERS") { value, options in
            guard let count = Int(value), (0...100_000).contains(count) else { return false }
            options.maxWatchers = count
            return true
        },
        "--event-buffer": LongOption(environment: "EPMD_GATEWAY_EVENT_BUFFER") { value, options in
            guard let count = Int(value), (1...1_000_000).contains(count) else { return false }
            options.eventBuffer = count
            return true
        },
        "--flap-window": LongOption(environment: "EPMD_GATEWAY_FLAP_WINDOW") { value, options in
            guard let seconds = Int(value), (0...86_400).contains(seconds) else { return false }
            options.flapWindow = seconds
            return true
        },
    ]

    /// The options that take a number: `atoi` of the next argument, and 0 or a missing value is a usage error.
    private static let numericOptions: [String: any WritableKeyPath<EPMDOptions, Int> & Sendable] = [
        "-port": \.port,
        "-packet_timeout": \.packetTimeout,
        "-delay_accept": \.delayAccept,
        "-delay_write": \.delayWrite,
    ]

    /// C's `atoi`: optional leading whitespace and sign, then digits up to the first non-digit;
    /// no digits gives 0. Saturates instead of overflowing.
    public static func atoi(_ text: String) -> Int {
        var bytes = Substring(text).utf8.drop { $0 == 0x20 || (0x09...0x0D).contains($0) }
        var negative = false
        if let sign = bytes.first, sign == UInt8(ascii: "-") || sign == UInt8(ascii: "+") {
            negative = sign == UInt8(ascii: "-")
            bytes = bytes.dropFirst()
        }
        var value = 0
        for byte in bytes {
            guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) else { break }
            let (multiplied, overflow1) = value.multipliedReportingOverflow(by: 10)
            let (added, overflow2) = multiplied.addingReportingOverflow(Int(byte - UInt8(ascii: "0")))
            if overflow1 || overflow2 { return negative ? Int(Int32.min) : Int(Int32.max) }
            value = added
        }
        value = negative ? -value : value
        return Int(Int32(clamping: value))
    }

    /// C epmd's usage text (stderr, exit 1).
    public static let usageText = """
        usage: epmd [-d|-debug] [DbgExtra...] [-address List]
                    [-port No] [-daemon] [-relaxed_command_check]
               epmd [-d|-debug] [-port No] [-names|-kill|-stop name]

        See the Erlang epmd manual page for info about the usage.

        Regular options
            -address List
                Let epmd listen only on the comma-separated list of IP
                addresses (and on the loopback interface).
            -port No
                Let epmd listen to another port than default 4369
            -d
            -debug
                Enable debugging. This will give a log to
                the standard error stream. It will shorten
                the number of saved used node names to 5.

                If you give more than one debug flag you may
                get more debugging information.
            -daemon
                Start epmd detached (as a daemon)
            -relaxed_command_check
                Allow this instance of epmd to be killed with
                epmd -kill even if there are registered nodes.
                Also allows forced unregister (epmd -stop).
            -systemd
                Wait for socket from systemd. The option makes sense
                when started from .socket unit.

        DbgExtra options
            -packet_timeout Seconds
                Set the number of seconds a connection can be
                inactive before epmd times out and closes the
                connection (default 60).

            -delay_accept Seconds
                To simulate a busy server you can insert a
                delay between epmd gets notified about that
                a new connection is requested and when the
                connections gets accepted.

            -delay_write Seconds
                Also a simulation of a busy server. Inserts
                a delay before a reply is sent.

        Interactive options
            -names
                List names registered with the currently running epmd
            -kill
                Kill the currently running epmd
                (only allowed if -names show empty database or
                -relaxed_command_check was given when epmd was started).
            -stop Name
                Forcibly unregisters a name with epmd
                (only allowed if -relaxed_command_check was given when 
                epmd was started).

        epmd-gateway options (each also read from the environment variable shown)
            --http-address IP   Address of the HTTP/JSON front (EPMD_GATEWAY_HTTP_ADDRESS;
                                default 127.0.0.1).
            --http-port N       Its port (EPMD_GATEWAY_HTTP_PORT; default 4370; 0 picks one).
            --http-threads N    Its worker threads (EPMD_GATEWAY_HTTP_THREADS; default 1).
            --http-connections-per-address N
                                HTTP connections at once from one peer address, loopback
                                included (EPMD_GATEWAY_HTTP_CONNECTIONS_PER_ADDRESS; default
                                128; 0: no limit but --http-connections).
            --http-connections N
                                HTTP connections at once (EPMD_GATEWAY_HTTP_CONNECTIONS;
                                default: 1/32 of the descriptor limit, 32 to 1024).
            --http-header-timeout S
                                Seconds an HTTP connection has to send a whole request head,
                                from connect and after each response; then it is closed
                                (EPMD_GATEWAY_HTTP_HEADER_TIMEOUT; default 10; 0: none).
            --http-tls-cert FILE
                                Serve HTTPS with this PEM certificate (chain)
                                (EPMD_GATEWAY_HTTP_TLS_CERT; needs --http-tls-key).
            --http-tls-key FILE Its PEM private key (EPMD_GATEWAY_HTTP_TLS_KEY).
            --http-tls-client-ca FILE
                                Mutual TLS: clients must present a certificate signed by
                                this PEM CA, or get 403 (EPMD_GATEWAY_HTTP_TLS_CLIENT_CA).
            --admin-token-file FILE
                                Turn the admin API on (DELETE /v1/nodes/NAME forcibly
                                unregisters), with the bearer token in FILE, which only its
                                owner may access (EPMD_GATEWAY_ADMIN_TOKEN_FILE; default off:
                                every mutating method answers 405).
            --no-http           No HTTP front (EPMD_GATEWAY_NO_HTTP, any value).
            --max-connections N epmd-port connections at once, registrations included
                                (EPMD_GATEWAY_MAX_CONNECTIONS; default: the descriptor limit
                                less the reserve and the HTTP connections). At the cap the
                                oldest connection without a registration is closed.
            --connections-per-address N
                                epmd-port connections without a registration at once from
                                one peer address, loopback included; past it that address's
                                oldest is closed (EPMD_GATEWAY_CONNECTIONS_PER_ADDRESS;
                                default 128; 0: no per-address cap).
            --shutdown-grace S  Seconds between SIGTERM and exit while /readyz answers 503
                                (EPMD_GATEWAY_SHUTDOWN_GRACE; default 0).
            --max-watchers N    /v1/events streams at once, then 503 + Retry-After
                                (EPMD_GATEWAY_MAX_WATCHERS; default 256).
            --event-buffer N    Registration events kept for /v1/events resumption and
                                /v1/events/history (EPMD_GATEWAY_EVENT_BUFFER; default 1024).
            --flap-window S     A node that unregisters within S seconds of registering is
                                flagged as flapping (EPMD_GATEWAY_FLAP_WINDOW; default 10).
            --metrics-node-info Export epmd_node_info{name,port,type} per registered node
                                (EPMD_GATEWAY_METRICS_NODE_INFO, any value; default off).
            --names-local-only  Answer NAMES only to local peers, as ALIVE2, DUMP, KILL and
                                STOP are; lookups by name stay open to every peer
                                (EPMD_GATEWAY_NAMES_LOCAL_ONLY, any value; default off).
            --takeover          Take over from the gateway running on the same port: its
                                sockets, registrations and registry, with no gap (-takeover
                                too). SIGUSR2 to a running gateway does the same with its
                                own binary.
            --handover-socket PATH
                                The hand-over Unix socket (EPMD_GATEWAY_HANDOVER_SOCKET;
                                default /run/epmd-gateway/handover-PORT.sock as root, else
                                under $XDG_RUNTIME_DIR or /tmp/epmd-gateway-UID; "none":
                                no hand-over).
            --help              Print this text on stdout and exit 0.
            --version           Print the version and exit 0.

        """
}
