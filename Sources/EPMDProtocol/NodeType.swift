/// The node type byte of ALIVE2 (`M` 77 normal, `H` 72 hidden), decoded in one place for the JSON
/// API, the metrics, the router's filter and the registry's counts. Any other code is kept as sent.
public enum NodeType: Hashable, Sendable, CustomStringConvertible {
    /// 77 (`M`): a normal Erlang node.
    case normal
    /// 72 (`H`): a hidden node (a C node, `erl -hidden`, a tool).
    case hidden
    /// Any other code, echoed as sent. Never 77 or 72: `init(code:)` decodes those.
    case other(UInt8)

    /// The code of a normal node.
    public static let normalCode: UInt8 = 77
    /// The code of a hidden node.
    public static let hiddenCode: UInt8 = 72

    /// Decodes a type byte.
    public init(code: UInt8) {
        switch code {
        case Self.normalCode: self = .normal
        case Self.hiddenCode: self = .hidden
        default: self = .other(code)
        }
    }

    /// The label for `normal` or `hidden` (`other` is not one type, so it has no inverse).
    public init?(label: String) {
        switch label {
        case "normal": self = .normal
        case "hidden": self = .hidden
        default: return nil
        }
    }

    /// The byte on the wire.
    public var code: UInt8 {
        switch self {
        case .normal: Self.normalCode
        case .hidden: Self.hiddenCode
        case .other(let code): code
        }
    }

    /// `normal`, `hidden` or `other`: the JSON `type` and the metrics' `type` label.
    public var label: String {
        switch self {
        case .normal: "normal"
        case .hidden: "hidden"
        case .other: "other"
        }
    }

    /// The label of each kind once (`other` stands for every other code): what the metrics enumerate.
    public static let labelledKinds: [NodeType] = [.normal, .hidden, .other(0)]

    public var description: String { "\(self.label) (\(self.code))" }

    public static func == (lhs: NodeType, rhs: NodeType) -> Bool { lhs.code == rhs.code }

    public func hash(into hasher: inout Hasher) { hasher.combine(self.code) }
}

extension Alive2Request {
    /// The node type, decoded (``nodeType`` keeps the byte as sent).
    public var type: NodeType { NodeType(code: self.nodeType) }
}
