import EPMDPosix
import EPMDProtocol

/// Everything the epmd loop needs to know, as a value.
public struct EPMDServerConfiguration: Sendable {
    /// Where the listening sockets come from.
    public enum Listeners: Sendable, Equatable {
        /// Bind these addresses. `required` says whether a failure to bind is fatal (an address the
        /// operator listed) or only logged (the implicit loopback addresses).
        case bind([(address: SocketAddress, required: Bool)])
        /// Use already-listening descriptors (systemd socket activation, or a test).
        case inherited([Int32])

        public static func == (lhs: Listeners, rhs: Listeners) -> Bool {
            switch (lhs, rhs) {
            case (.bind(let a), .bind(let b)):
                a.count == b.count && zip(a, b).allSatisfy { $0.address == $1.address && $0.required == $1.required }
            case (.inherited(let a), .inherited(let b)):
                a == b
            default:
                false
            }
        }
    }

    /// The configured port: sent in the NAMES/DUMP prefix (even when the sockets came from systemd).
    public var port: UInt16
    public var listeners: Listeners
    /// `-relaxed_command_check` / `ERL_EPMD_RELAXED_COMMAND_CHECK`.
    public var relaxedCommandCheck: Bool
    /// Seconds a connection has, from connect, to deliver its request and read the reply.
    public var packetTimeout: Int
    /// `-delay_accept`: seconds slept after each wake-up (simulates a busy server).
    public var delayAccept: Int
    /// `-delay_write`: seconds before each reply is written (without blocking the loop).
    public var delayWrite: Int
    /// Unregistered names remembered (1000, or 5 under `-d`).
    public var historyLimit: Int
    /// Handle SIGTERM/SIGINT in the loop (they must be blocked in every thread by the caller).
    public var handleSignals: Bool
    /// Seconds between the first SIGTERM/SIGINT and the exit, while `isDraining` is true (so
    /// readiness can turn 503) and the epmd port keeps serving. A second signal exits at once.
    public var shutdownGrace: Int
    /// `--names-local-only`: NAMES_REQ, like ALIVE2/DUMP/KILL/STOP, only from a local peer (NAMES lists
    /// every node and its distribution port to whoever asks; lookups by name stay open to all).
    public var namesLocalOnly: Bool
    /// `--max-connections`: epmd-port connections at once, registrations included (0: no cap of its
    /// own). At the cap, the oldest connection that holds no registration is closed to admit a new
    /// one; when every connection holds a registration, the new one is accepted and closed at once.
    public var maxConnections: Int
    /// `--connections-per-address`: connections holding no registration at once from one peer
    /// address, loopback like any other (0: no per-address cap). Past it, that address's oldest such
    /// connection is closed to admit the new one. Registrations never count.
    public var connectionsPerAddress: Int
    /// Seconds between two log lines for one reason of eviction or refusal (the lines in between are
    /// counted, and the next line says how many).
    public var refusalLogInterval: Int

    /// The default of ``connectionsPerAddress``: far above what one host's nodes need at once (each
    /// lookup is one short connection), far below the cap, so one flooder cannot take every slot.
    public static let defaultConnectionsPerAddress = 128

    public init(
        port: UInt16 = EPMDLimits.defaultPort,
        listeners: Listeners,
        relaxedCommandCheck: Bool = false,
        packetTimeout: Int = EPMDLimits.defaultPacketTimeout,
        delayAccept: Int = 0,
        delayWrite: Int = 0,
        historyLimit: Int = EPMDLimits.unregisteredHistory,
        handleSignals: Bool = false,
        shutdownGrace: Int = 0,
        namesLocalOnly: Bool = false,
        maxConnections: Int = 0,
        connectionsPerAddress: Int = Self.defaultConnectionsPerAddress,
        refusalLogInterval: Int = 10
    ) {
        self.port = port
        self.listeners = listeners
        self.relaxedCommandCheck = relaxedCommandCheck
        self.packetTimeout = packetTimeout
        self.delayAccept = delayAccept
        self.delayWrite = delayWrite
        self.historyLimit = historyLimit
        self.handleSignals = handleSignals
        self.shutdownGrace = shutdownGrace
        self.namesLocalOnly = namesLocalOnly
        self.maxConnections = max(maxConnections, 0)
        self.connectionsPerAddress = max(connectionsPerAddress, 0)
        self.refusalLogInterval = max(refusalLogInterval, 0)
    }
}
