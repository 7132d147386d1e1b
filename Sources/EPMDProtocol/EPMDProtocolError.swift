/// Why a request was refused without a reply. Each value names a metric reason too.
public struct EPMDProtocolError: Error, Hashable, Sendable, CaseIterable, CustomStringConvertible {
    private enum Base: Hashable, Sendable, CaseIterable {
        case invalidLength
        case overrun
        case unknownCode
        case alive2TooSmall
        case alive2NameLength
        case alive2ExtraLength
        case nulInName
        case emptyName
        case invalidName
        case truncated
    }

    private let base: Base

    private init(_ base: Base) { self.base = base }

    /// The length prefix is 0 or above 3057.
    public static let invalidLength = Self(.invalidLength)
    /// More bytes arrived than the length prefix announced (pipelining or trailing garbage).
    public static let overrun = Self(.overrun)
    /// The first body byte is not a request code epmd serves.
    public static let unknownCode = Self(.unknownCode)
    /// An ALIVE2 body of 13 bytes or fewer.
    public static let alive2TooSmall = Self(.alive2TooSmall)
    /// An ALIVE2 name length that runs past the body.
    public static let alive2NameLength = Self(.alive2NameLength)
    /// An ALIVE2 extra length that runs past the body.
    public static let alive2ExtraLength = Self(.alive2ExtraLength)
    /// A NUL byte inside a node name.
    public static let nulInName = Self(.nulInName)
    /// A PORT2 or STOP request with no name.
    public static let emptyName = Self(.emptyName)
    /// A PORT2 name that is not strict UTF-8 or is too long.
    public static let invalidName = Self(.invalidName)
    /// The connection closed before the request was complete.
    public static let truncated = Self(.truncated)

    /// Every error, in declaration order (the metric reasons made at start).
    public static var allCases: [EPMDProtocolError] { Base.allCases.map(Self.init) }

    /// A short stable label, used in logs and as a metric reason.
    public var reason: String { self.label }

    /// A short stable label, used in logs and as a metric reason.
    public var label: String {
        switch self.base {
        case .invalidLength: "invalid_length"
        case .overrun: "overrun"
        case .unknownCode: "unknown_code"
        case .alive2TooSmall: "alive2_too_small"
        case .alive2NameLength: "alive2_name_length"
        case .alive2ExtraLength: "alive2_extra_length"
        case .nulInName: "nul_in_name"
        case .emptyName: "empty_name"
        case .invalidName: "invalid_name"
        case .truncated: "truncated"
        }
    }

    public var description: String { self.label }
}
