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
        namesLocalOnly: Bool = false
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
    }
}
