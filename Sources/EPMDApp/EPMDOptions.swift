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
