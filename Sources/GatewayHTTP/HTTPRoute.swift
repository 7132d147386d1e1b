/// Every route of the HTTP API, in one place: what dispatches a request (``match(_:)``) also names the
/// bounded `route` label of the HTTP metrics (``label``), so the two can never disagree.
///
/// A route's `rawValue` is its index in `allCases` (declaration order, from 0): the daemon reports a
/// response's route to its observer as that index, and the metrics find the route's series by it in
/// the label list they were given (`HTTPRoute.allCases.map(\.label)`), without hashing a string.
public enum HTTPRoute: Int, CaseIterable, Sendable {
    case statusPage
    case livez
    case readyz
    case version
    case metrics
    case openAPIJSON
    case openAPIYAML
    case nodes
    case node
    case nodeHealth
    case events
    case eventsHistory
    /// Any path no route matches.
    case other

    /// The route template: the metric label (`/v1/nodes/{name}`, never the raw path).
    public var label: String {
        switch self {
        case .statusPage: "/"
        case .livez: "/livez"
        case .readyz: "/readyz"
        case .version: "/version"
        case .metrics: "/metrics"
        case .openAPIJSON: "/openapi.json"
        case .openAPIYAML: "/openapi.yaml"
        case .nodes: "/v1/nodes"
        case .node: "/v1/nodes/{name}"
        case .nodeHealth: "/v1/nodes/{name}/health"
        case .events: "/v1/events"
        case .eventsHistory: "/v1/events/history"
        case .other: "other"
        }
    }

    /// The route of a path as sent (still percent-encoded), and the decoded `{name}` segment of the node
    /// routes; `nil` when a segment is not valid percent-encoded UTF-8. A path without `%` is matched as
    /// it is, without splitting or copying it; one with `%` is decoded segment by segment first (so
    /// `%2F` never splits a segment) and matched by ``match(_:)``.
    public static func match(path: String) -> (route: HTTPRoute, name: String?)? {
        let bytes = path.utf8.span
        // The node routes first (the hot path): `/v1/nodes/NAME` and `/v1/nodes/NAME/health`.
        if bytes.count > Self.nodesPrefix.count, Self.starts(bytes, with: Self.nodesPrefix) {
            var slash: Int?
            var index = Self.nodesPrefix.count
            while index < bytes.count {
                let byte = bytes[index]
                if byte == UInt8(ascii: "%") { return self.matchDecoded(path) }
                if byte == UInt8(ascii: "/") && slash == nil { slash = index }
                index += 1
            }
            let start = path.utf8.index(path.utf8.startIndex, offsetBy: Self.nodesPrefix.count)
            guard let slash else { return (.node, String(path[start...])) }
            guard bytes.count - slash == Self.healthSuffix.count,
                Self.starts(bytes.extracting(slash...), with: Self.healthSuffix)
            else { return (.other, nil) }
            let end = path.utf8.index(path.utf8.startIndex, offsetBy: slash)
            return (.nodeHealth, String(path[start..<end]))
        }
        var index = 0
        while index < bytes.count {
            if bytes[index] == UInt8(ascii: "%") { return self.matchDecoded(path) }
            index += 1
        }
        switch path {
        case "/": return (.statusPage, nil)
        case "/livez": return (.livez, nil)
        case "/readyz": return (.readyz, nil)
        case "/version": return (.version, nil)
        case "/metrics": return (.metrics, nil)
        case "/openapi.json": return (.openAPIJSON, nil)
        case "/openapi.yaml": return (.openAPIYAML, nil)
        case "/v1/nodes": return (.nodes, nil)
        case "/v1/nodes/": return (.node, "")
        case "/v1/events": return (.events, nil)
        case "/v1/events/history": return (.eventsHistory, nil)
        default: return (.other, nil)
        }
    }

    private static let nodesPrefix = Array("/v1/nodes/".utf8)
    private static let healthSuffix = Array("/health".utf8)

    private static func starts(_ bytes: Span<UInt8>, with prefix: [UInt8]) -> Bool {
        guard bytes.count >= prefix.count else { return false }
        let expected = prefix.span
        var index = 0
        while index < expected.count {
            if bytes[index] != expected[index] { return false }
            index += 1
        }
        return true
    }

    private static func matchDecoded(_ path: String) -> (route: HTTPRoute, name: String?)? {
        guard let segments = HTTPRequest.segments(of: path) else { return nil }
        return self.match(segments)
    }

    /// The route of a path's decoded segments (the empty path `/` is one empty segment), and the `{name}`
    /// segment for the node routes.
    public static func match(_ segments: [String]) -> (route: HTTPRoute, name: String?) {
        switch segments.count {
        case 1:
            switch segments[0] {
            case "": return (.statusPage, nil)
            case "livez": return (.livez, nil)
            case "readyz": return (.readyz, nil)
            case "version": return (.version, nil)
            case "metrics": return (.metrics, nil)
            case "openapi.json": return (.openAPIJSON, nil)
            case "openapi.yaml": return (.openAPIYAML, nil)
            default: return (.other, nil)
            }
        case 2 where segments[0] == "v1":
            switch segments[1] {
            case "nodes": return (.nodes, nil)
            case "events": return (.events, nil)
            default: return (.other, nil)
            }
        case 3 where segments[0] == "v1" && segments[1] == "nodes":
            return (.node, segments[2])
        case 3 where segments[0] == "v1" && segments[1] == "events" && segments[2] == "history":
            return (.eventsHistory, nil)
        case 4 where segments[0] == "v1" && segments[1] == "nodes" && segments[3] == "health":
            return (.nodeHealth, segments[2])
        default:
            return (.other, nil)
        }
    }

    /// The methods every route answers (no endpoint takes a body).
    static let methods = ["GET", "HEAD"]
}
