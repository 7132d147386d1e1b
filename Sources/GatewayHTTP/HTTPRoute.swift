/// Every route of the HTTP API, in one place: what dispatches a request (``match(_:)``) also names the
/// bounded `route` label of the HTTP metrics (``label``), so the two can never disagree.
public enum HTTPRoute: CaseIterable, Sendable {
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
