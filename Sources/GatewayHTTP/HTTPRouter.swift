import EPMDProtocol
import EPMDRegistry

/// The HTTP API as a pure function from request to response, over registry snapshots. No C, no
/// sockets: testable as a value. It matches the path to an ``HTTPRoute`` and hands the request to the
/// handler of that resource (nodes, events, probes, documents). Long-poll (`GET /v1/nodes?index=N&wait=S`)
/// is split in two: the router says whether a request should wait (``longPollWait(for:)``), the daemon
/// suspends it, and once the generation passes N (or S seconds pass) the same request is answered by
/// ``respond(to:)``.
public struct HTTPRouter: Sendable {
    /// Facts for `/version`.
    public struct Build: Sendable {
        public var version: String
        public var libmicrohttpd: String

        public init(version: String, libmicrohttpd: String) {
            self.version = version
            self.libmicrohttpd = libmicrohttpd
        }
    }

    public let registry: NodeRegistry
    public let build: Build
    let nodes: NodesHandler
    let events: EventsHandler
    let probes: ProbesHandler
    /// `DELETE /v1/nodes/{name}`; nil (the default): admin is off and every mutating method gets 405.
    let admin: AdminHandler?

    /// - Parameters:
    ///   - registry: the live registry.
    ///   - build: facts for `/version`.
    ///   - isReady: readiness (false while starting or draining): `/readyz` answers 503 then.
    ///   - metrics: the Prometheus exposition (text format 0.0.4) for `/metrics`; `nil` answers 404.
    ///   - admin: the admin API (forced unregistration with a bearer token); `nil` turns it off.
    ///   - readinessDetails: more lines for `/readyz?verbose` after the readiness line (e.g. systemd's
    ///     fd store); they never change the status code.
    public init(
        registry: NodeRegistry,
        build: Build,
        isReady: @escaping @Sendable () -> Bool = { true },
        metrics: (@Sendable () -> [UInt8])? = nil,
        admin: AdminAPI? = nil,
        readinessDetails: @escaping @Sendable () -> [String] = { [] }
    ) {
        self.registry = registry
        self.build = build
        let cache = NodeListCache()
        self.nodes = NodesHandler(registry: registry, cache: cache)
        self.events = EventsHandler(registry: registry, cache: cache, nodes: self.nodes)
        self.probes = ProbesHandler(build: build, isReady: isReady, metrics: metrics, details: readinessDetails)
        self.admin = admin.map(AdminHandler.init(api:))
    }

    /// Answers one request.
    public func respond(to request: HTTPRequest) -> HTTPResponse {
        guard let (route, name) = HTTPRoute.match(path: request.path) else {
            return .problem(400, "Bad Request", "The path is not valid percent-encoded UTF-8.")
        }
        var response = self.dispatch(route, name: name, request)
        response.matched = route
        return response
    }

    private func dispatch(_ route: HTTPRoute, name: String?, _ request: HTTPRequest) -> HTTPResponse {
        if route == .other || (route == .metrics && !self.probes.servesMetrics) {
            return .problem(404, "Not Found", "No resource at \(request.path).")
        }
        if route == .node, let admin = self.admin {
            if request.method == "DELETE" { return admin.delete(named: name ?? "", request) }
            guard HTTPRoute.methods.contains(request.method) else {
                return .methodNotAllowed(request.method, allow: HTTPRoute.methods + ["DELETE"])
            }
        }
        guard HTTPRoute.methods.contains(request.method) else { return .methodNotAllowed(request.method) }
        switch route {
        case .statusPage: return DocumentsHandler.statusPage()
        case .openAPIJSON: return DocumentsHandler.openAPIJSON()
        case .openAPIYAML: return DocumentsHandler.openAPIYAML()
        case .livez: return self.probes.livez()
        case .readyz: return self.probes.readyz(request)
        case .version: return self.probes.version()
        case .metrics: return self.probes.metrics()
        case .nodes: return self.nodes.list(request)
        case .node: return self.nodes.node(named: name ?? "", request)
        case .nodeHealth: return self.nodes.health(named: name ?? "")
        // The daemon streams `GET` (see `eventStreamStart`); what comes here is answered at once.
        case .events: return self.events.snapshot(request)
        case .eventsHistory: return self.events.history()
        case .other: return .problem(404, "Not Found", "No resource at \(request.path).")
        }
    }

    /// The longest a long-poll request waits, whatever it asks.
    public static let maximumWait = RequestNumber.maximumWait

    /// Whether `request` is a long-poll that should wait now (see ``NodesHandler/longPollWait(for:)``).
    /// - Returns: the index and the seconds to wait, or `nil` to answer now.
    public func longPollWait(for request: HTTPRequest) -> (index: UInt64, seconds: Int)? {
        self.nodes.longPollWait(for: request)
    }

    /// Byte order of names (what `lexicographicallyPrecedes` gives), the order of every node list.
    public static func precedes(_ lhs: [UInt8], _ rhs: [UInt8]) -> Bool { NodesHandler.precedes(lhs, rhs) }
}

extension HTTPRouter: EventStreamSource {
    public func eventStreamStart(for request: HTTPRequest) -> EventStreamStart? {
        self.events.streamStart(for: request)
    }

    public func eventStreamChunk(after lastID: UInt64?) -> (bytes: [UInt8], lastID: UInt64) {
        self.events.chunk(after: lastID)
    }

    public var streamPreamble: [UInt8] { ServerSentEvents.preamble }

    public var heartbeat: [UInt8] { ServerSentEvents.heartbeat }

    public var streamRouteIndex: Int { HTTPRoute.events.rawValue }

    public func refusal(capacity: Int) -> HTTPResponse {
        var refusal = HTTPResponse.problem(
            503,
            "Service Unavailable",
            "Too many event watchers (at most \(capacity)); retry later."
        )
        refusal.headers.append(("Retry-After", "5"))
        refusal.matched = .events
        return refusal
    }
}
