/// The first byte of every epmd request and of the binary replies.
public enum EPMDMessageCode: UInt8, Sendable {
    /// `x`: register a node; the connection then stays open as the registration.
    case alive2Request = 120
    /// `y`: the 4-byte registration reply (16-bit creation), for HighestVersion < 6.
    case alive2Response = 121
    /// `v`: the 6-byte registration reply (32-bit creation), for HighestVersion ≥ 6.
    case alive2ExtendedResponse = 118
    /// `z`: look a node up by name.
    case portPlease2Request = 122
    /// `w`: the lookup reply.
    case port2Response = 119
    /// `n`: list the registered names.
    case namesRequest = 110
    /// `d`: list registered and old names with descriptors (local peers only).
    case dumpRequest = 100
    /// `k`: stop the daemon (local peers only).
    case killRequest = 107
    /// `s`: unregister a name by force (local peers, relaxed mode only).
    case stopRequest = 115
}

/// Limits of the wire protocol, as C epmd applies them.
public enum EPMDLimits {
    /// `MAXSYMLEN`: the longest node name or extra field in bytes.
    public static let maxSymbolBytes = 1020
    /// The longest node name in Unicode code points.
    public static let maxNameCodePoints = 255
    /// The longest request body (`INBUF_SIZE - 3`); longer lengths are refused.
    public static let maxRequestLength = 3057
    /// The creation value sent with a failed registration.
    public static let failedCreation: UInt32 = 99
    /// Unregistered names remembered for creation numbers (`MAX_UNREG_COUNT`).
    public static let unregisteredHistory = 1000
    /// The same history under `-d` (`DEBUG_MAX_UNREG_COUNT`).
    public static let debugUnregisteredHistory = 5
    /// The default epmd port.
    public static let defaultPort: UInt16 = 4369
    /// Default seconds a connection may take to deliver its request.
    public static let defaultPacketTimeout = 60
}
