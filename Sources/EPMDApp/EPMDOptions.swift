import EPMDProtocol

/// What the command line asks for, parsed the way C epmd parses it.
public struct EPMDOptions: Equatable, Sendable {
    /// `-port` / `ERL_EPMD_PORT` (atoi semantics: garbage gives 0, an ephemeral port).
    public var port: Int = Int(EPMDLimits.defaultPort)
    /// `-address` / `ERL_EPMD_ADDRESS`: comma/space separated IP literals.
    public var addresses: String?
    /// `-d` / `-debug`, once per level.
    public var debugLevel = 0
    public var daemon = false
    public var relaxedCommandCheck = false
    public var systemd = false
    public var packetTimeout = EPMDLimits.defaultPacketTimeout
    public var delayAccept = 0
    public var delayWrite = 0

    // Our own options (GNU-style, each with an environment variable).

    /// `--no-http` / `EPMD_GATEWAY_NO_HTTP`: run the epmd port only.
    public var httpEnabled = true
    /// `--http-address` / `EPMD_GATEWAY_HTTP_ADDRESS`: an IP literal (loopback by default).
    public var httpAddress = "127.0.0.1"
    /// `--http-port` / `EPMD_GATEWAY_HTTP_PORT`.
    public var httpPort = Int(Self.defaultHTTPPort)
    /// `--http-threads` / `EPMD_GATEWAY_HTTP_THREADS`: libmicrohttpd worker threads.
    public var httpThreads = 1
    /// `--http-connections-per-address` / `EPMD_GATEWAY_HTTP_CONNECTIONS_PER_ADDRESS`: HTTP connections at
    /// once from one peer address (0: no per-address limit).
    public var httpConnectionsPerAddress = 128
    /// `--http-header-timeout` / `EPMD_GATEWAY_HTTP_HEADER_TIMEOUT`: seconds an HTTP connection has to
    /// deliver a whole request head, from accept and after each response (0: no deadline).
    public var httpHeaderTimeout = 10
    /// `--shutdown-grace` / `EPMD_GATEWAY_SHUTDOWN_GRACE`: seconds between SIGTERM (readiness turns
    /// 503) and the exit, for load balancers to notice.
    public var shutdownGrace = 0
    /// `--max-watchers` / `EPMD_GATEWAY_MAX_WATCHERS`: `/v1/events` streams at once (then 503).
    public var maxWatchers = 256
    /// `--event-buffer` / `EPMD_GATEWAY_EVENT_BUFFER`: registration events kept for resumption and history.
    public var eventBuffer = 1024
    /// `--flap-window` / `EPMD_GATEWAY_FLAP_WINDOW`: seconds; a node unregistered sooner after
    /// registering is flagged as flapping.
    public var flapWindow = 10
    /// `--metrics-node-info` / `EPMD_GATEWAY_METRICS_NODE_INFO`: export `epmd_node_info{name,port,type}`.
    public var metricsNodeInfo = false
    /// `--names-local-only` / `EPMD_GATEWAY_NAMES_LOCAL_ONLY`: NAMES only from local peers.
    public var namesLocalOnly = false
    /// `--max-connections` / `EPMD_GATEWAY_MAX_CONNECTIONS`: epmd-port connections at once,
    /// registrations included; nil derives it from the descriptor budget (``DescriptorBudget``).
    public var maxConnections: Int?
    /// `--connections-per-address` / `EPMD_GATEWAY_CONNECTIONS_PER_ADDRESS`: epmd-port connections
    /// holding no registration at once from one peer address (0: no per-address cap).
    public var connectionsPerAddress = 128
    /// `--http-connections` / `EPMD_GATEWAY_HTTP_CONNECTIONS`: HTTP connections at once; nil derives
    /// it from the descriptor budget (at most 1024).
    public var httpConnections: Int?
    /// `--http-tls-cert` / `EPMD_GATEWAY_HTTP_TLS_CERT`: PEM certificate (chain) file; with the key, HTTPS.
    public var httpTLSCertificateFile: String?
    /// `--http-tls-key` / `EPMD_GATEWAY_HTTP_TLS_KEY`: its PEM private key file.
    public var httpTLSKeyFile: String?
    /// `--http-tls-client-ca` / `EPMD_GATEWAY_HTTP_TLS_CLIENT_CA`: PEM CA file; HTTPS clients must
    /// present a certificate it signed (mutual TLS).
    public var httpTLSClientCAFile: String?
    /// `--admin-token-file` / `EPMD_GATEWAY_ADMIN_TOKEN_FILE`: turns the admin API on, with the
    /// bearer token in this file (readable by its owner only).
    public var adminTokenFile: String?

    /// `--takeover` (or `-takeover`): take everything over from the gateway that serves the
    /// hand-over socket, instead of binding.
    public var takeover = false
    /// `--handover-socket` / `EPMD_GATEWAY_HANDOVER_SOCKET`: the hand-over Unix socket; nil: the
    /// default for the port (``HandoverService/defaultPath(port:userID:environment:)``); `none`: no
    /// hand-over socket.
    public var handoverSocket: String?

    /// The HTTP port used unless configured: the epmd port plus one, easy to remember.
    public static let defaultHTTPPort: UInt16 = 4370

    public init() {}

    /// The port as the sockets use it (C stores it in an unsigned short).
    public var socketPort: UInt16 { UInt16(truncatingIfNeeded: self.port) }
}

/// The client modes: they talk to a running epmd and exit.
public enum EPMDClientMode: Equatable, Sendable {
    case names
    case started
    case dump
    case kill
    case stop(String)
}

/// What to do, after parsing.
public enum EPMDInvocation: Equatable, Sendable {
    /// Run the daemon.
    case serve(EPMDOptions)
    /// Run a client mode against the epmd on `options.port`.
    case client(EPMDClientMode, EPMDOptions)
    /// Print the usage text on stderr and exit 1 (C epmd's answer to anything it does not know).
    case usage
    /// `--help`: usage on stdout, exit 0.
    case help
    /// `--version`: print the version, exit 0.
    case version
}
