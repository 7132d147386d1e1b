import EPMDProtocol
import EPMDRegistry
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The HTTP API as a pure function from request to response, over registry snapshots. No C, no
/// sockets: testable as a value. Long-poll (`GET /v1/nodes?index=N&wait=S`) is split in two: the
/// router says whether a request should wait (`longPollWait`), the daemon suspends it, and once the
/// generation passes N (or S seconds pass) the same request is answered by `respond`.
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
    /// Readiness (false while starting or draining): `/readyz` answers 503 then.
    public let isReady: @Sendable () -> Bool
    /// The Prometheus exposition (text format 0.0.4) for `/metrics`; `nil` answers 404.
    public let metrics: (@Sendable () -> [UInt8])?
    let cache = NodeListCache()

    public init(
        registry: NodeRegistry,
        build: Build,
        isReady: @escaping @Sendable () -> Bool = { true },
        metrics: (@Sendable () -> [UInt8])? = nil
    ) {
        self.registry = registry
        self.build = build
        self.isReady = isReady
        self.metrics = metrics
    }

    /// The route templates, the bounded `route` label of the HTTP metrics.
    public static let routes = [
        "/", "/livez", "/readyz", "/version", "/metrics", "/openapi.json", "/openapi.yaml", "/v1/nodes",
        "/v1/nodes/{name}", "/v1/nodes/{name}/health", "/v1/events", "/v1/events/history", "other",
    ]

    /// The route template a path belongs to (`other` for unknown paths).
    public static func route(of segments: [String]?) -> String {
        guard let segments else { return "other" }
        switch segments.count {
        case 0: return "/"
        case 1:
            let path = "/" + segments[0]
            return Self.routes.contains(path) ? path : "other"
        case 2:
            let path = "/" + segments[0] + "/" + segments[1]
            return path == "/v1/nodes" || path == "/v1/events" ? path : "other"
        case 3:
            if segments[0] == "v1" && segments[1] == "nodes" { return "/v1/nodes/{name}" }
            return segments == ["v1", "events", "history"] ? "/v1/events/history" : "other"
        case 4:
            return segments[0] == "v1" && segments[1] == "nodes" && segments[3] == "health"
                ? "/v1/nodes/{name}/health" : "other"
        default: return "other"
        }
    }

    /// Answers one request.
    public func respond(to request: HTTPRequest) -> HTTPResponse {
        let segments = request.pathSegments
        var response = self.dispatch(request, segments)
        response.route = Self.route(of: segments)
        return response
    }

    private func dispatch(_ request: HTTPRequest, _ segments: [String]?) -> HTTPResponse {
        guard let segments else {
            return Self.problem(400, "Bad Request", "The path is not valid percent-encoded UTF-8.")
        }
        switch segments {
        case ["metrics"] where self.metrics != nil:
            return self.only(["GET", "HEAD"], request) {
                HTTPResponse(
                    status: 200,
                    headers: [("Content-Type", "text/plain; version=0.0.4; charset=utf-8")],
                    body: self.metrics?() ?? []
                )
            }
        case [""]:
            return self.only(["GET", "HEAD"], request) {
                HTTPResponse(
                    status: 200,
                    headers: [("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-cache")],
                    body: StatusPage.html
                )
            }
        case ["livez"]:
            return self.only(["GET", "HEAD"], request) { Self.text(200, "ok\n") }
        case ["readyz"]:
            return self.only(["GET", "HEAD"], request) {
                let ready = self.isReady()
                if request.query["verbose"] != nil {
                    return Self.text(ready ? 200 : 503, "[\(ready ? "+" : "-")]ready \(ready ? "ok" : "failed")\n")
                }
                return Self.text(ready ? 200 : 503, ready ? "ok\n" : "not ready\n")
            }
        case ["version"]:
            return self.only(["GET", "HEAD"], request) {
                var json = JSONWriter()
                json.raw("{\"version\":")
                json.string(self.build.version)
                json.raw(",\"libmicrohttpd\":")
                json.string(self.build.libmicrohttpd)
                json.raw("}")
                return Self.json(200, json)
            }
        case ["openapi.json"]:
            return self.only(["GET", "HEAD"], request) {
                HTTPResponse(status: 200, headers: [("Content-Type", "application/json")], body: Self.openAPIJSON)
            }
        case ["openapi.yaml"]:
            return self.only(["GET", "HEAD"], request) {
                HTTPResponse(status: 200, headers: [("Content-Type", "application/yaml")], body: Self.openAPIYAML)
            }
        case ["v1", "nodes"]:
            return self.only(["GET", "HEAD"], request) { self.nodes(request) }
        case ["v1", "events"]:
            // The daemon streams `GET` (see `eventStreamStart`); what comes here is answered at once.
            return self.only(["GET", "HEAD"], request) { self.eventSnapshot(request) }
        case ["v1", "events", "history"]:
            return self.only(["GET", "HEAD"], request) { self.history() }
        case let path where path.count == 3 && path[0] == "v1" && path[1] == "nodes":
            return self.only(["GET", "HEAD"], request) { self.node(named: path[2], request) }
        case let path where path.count == 4 && path[0] == "v1" && path[1] == "nodes" && path[3] == "health":
            return self.only(["GET", "HEAD"], request) { self.health(named: path[2]) }
        default:
            return Self.problem(404, "Not Found", "No resource at \(request.path).")
        }
    }

    /// The contract's bytes, converted once rather than on every request.
    static let openAPIJSON = Array((OpenAPIDocument.json + "\n").utf8)
    static let openAPIYAML = Array((OpenAPIDocument.yaml + "\n").utf8)

    /// The longest a long-poll request waits, whatever it asks.
    public static let maximumWait = RequestNumber.maximumWait

    /// Whether `request` is a long-poll that should wait now: `GET /v1/nodes` with `index` at or past
    /// the current generation and a `wait` above zero (seconds, optionally with `s` or `m`; capped
    /// at 60 s). Without `wait`, or when the generation already passed `index`, it is answered at once.
    /// - Returns: the index and the seconds to wait, or `nil` to answer now.
    public func longPollWait(for request: HTTPRequest) -> (index: UInt64, seconds: Int)? {
        guard request.method == "GET", request.path == "/v1/nodes",
            let index = request.query["index"].flatMap({ RequestNumber.generation($0.utf8) }),
            let seconds = request.query["wait"].flatMap({ RequestNumber.waitSeconds($0.utf8) }), seconds > 0,
            index >= self.registry.generation
        else { return nil }
        return (index, seconds)
    }

    // MARK: - Endpoints

    private func nodes(_ request: HTTPRequest) -> HTTPResponse {
        if let index = request.query["index"], RequestNumber.generation(index.utf8) == nil {
            return Self.problem(400, "Bad Request", "index must be a generation number (0 or more).")
        }
        if let wait = request.query["wait"], RequestNumber.waitSeconds(wait.utf8) == nil {
            return Self.problem(400, "Bad Request", "wait must be seconds: 30, 30s or 1m (at most 60 s are used).")
        }
        if request.query["type"] == nil {
            // The common case, answered without copying the table: the body of this generation.
            let generation = self.registry.generation
            if let cached = self.cache.body(for: generation) {
                let etag = "\"\(generation)\""
                if request.header("if-none-match") == etag {
                    return HTTPResponse(status: 304, headers: [("ETag", etag)])
                }
                return HTTPResponse(
                    status: 200,
                    headers: [("Content-Type", "application/json"), ("ETag", etag)],
                    body: cached
                )
            }
        }
        let (generation, all) = self.registry.versionedSnapshot()
        let etag = "\"\(generation)\""
        var selected = all
        if let raw = request.query["type"] {
            guard let type = HTTPRequest.percentDecode(raw) else {
                return Self.problem(400, "Bad Request", "type is not valid percent-encoded UTF-8.")
            }
            switch type {
            case "normal": selected = all.filter { $0.request.nodeType == 77 }
            case "hidden": selected = all.filter { $0.request.nodeType == 72 }
            default:
                guard let code = RequestNumber.typeCode(type.utf8) else {
                    return Self.problem(400, "Bad Request", "type must be normal, hidden or a type code (0-255).")
                }
                selected = all.filter { $0.request.nodeType == code }
            }
        }
        if request.header("if-none-match") == etag {
            return HTTPResponse(status: 304, headers: [("ETag", etag)])
        }
        var json = JSONWriter(capacity: 64 + selected.count * 256)
        json.raw("{\"generation\":")
        json.number(generation)
        json.raw(",\"nodes\":")
        self.appendNodeArray(selected, to: &json, complete: request.query["type"] == nil)
        json.raw("}")
        var response = Self.json(200, json)
        if request.query["type"] == nil { self.cache.store(response.body, for: generation) }
        response.headers.append(("ETag", etag))
        return response
    }

    private func node(named name: String, _ request: HTTPRequest) -> HTTPResponse {
        if let invalid = Self.invalidName(name) { return invalid }
        let key = Array(name.utf8)
        let generation = self.registry.generation
        if let cached = self.cache.node(key, for: generation) {
            return HTTPResponse(status: 200, headers: [("Content-Type", "application/json")], body: cached)
        }
        guard let node = self.registry.lookup(key) else {
            return Self.problem(404, "Not Found", "No node named \(name) is registered.")
        }
        var json = JSONWriter()
        json.node(node)
        let response = Self.json(200, json)
        self.cache.storeNode(key, response.body, for: generation)
        return response
    }

    /// The load-balancer contract: 200 while the node is registered, 503 when it is not.
    private func health(named name: String) -> HTTPResponse {
        if let invalid = Self.invalidName(name) { return invalid }
        var json = JSONWriter()
        json.raw("{\"name\":")
        json.string(name)
        guard let node = self.registry.lookup(Array(name.utf8)) else {
            json.raw(",\"status\":\"unregistered\"}")
            return Self.json(503, json)
        }
        json.raw(",\"status\":\"registered\",\"port\":")
        json.number(node.port)
        json.raw("}")
        return Self.json(200, json)
    }

    // MARK: - Helpers

    /// Appends `[Node,...]` sorted by name. Each node's JSON is rendered once per registration and
    /// reused (a registration never changes while it lives), so a list after a change costs a sort and
    /// a copy rather than rendering every node again. `complete` says `nodes` is the whole table:
    /// then renderings of nodes no longer registered are dropped.
    func appendNodeArray(_ nodes: [RegisteredNode], to json: inout JSONWriter, complete: Bool) {
        var sorted = nodes
        sorted.sort { Self.precedes($0.name, $1.name) }
        json.raw("[")
        let live = complete ? nodes.count : self.registry.count
        self.cache.withFragments(complete: complete, liveCount: live) { fragments in
            for (index, node) in sorted.enumerated() {
                if index > 0 { json.raw(",") }
                fragments.append(node, to: &json)
            }
        }
        json.raw("]")
    }

    /// Byte order of names (what `lexicographicallyPrecedes` gives, with `memcmp`'s speed).
    public static func precedes(_ lhs: [UInt8], _ rhs: [UInt8]) -> Bool {
        let order = lhs.withUnsafeBytes { a in
            rhs.withUnsafeBytes { b -> Int32 in
                guard let pa = a.baseAddress, let pb = b.baseAddress else { return 0 }
                return memcmp(pa, pb, min(a.count, b.count))
            }
        }
        return order != 0 ? order < 0 : lhs.count < rhs.count
    }

    /// Names in paths: not empty, at most 255 code points, no `/` (sent as `%2F`) and no NUL.
    static func invalidName(_ name: String) -> HTTPResponse? {
        if name.isEmpty || name.unicodeScalars.count > EPMDLimits.maxNameCodePoints || name.contains("/")
            || name.contains("\u{0}")
        {
            return Self.problem(400, "Bad Request", "A node name has 1 to 255 characters, no '/' and no NUL.")
        }
        return nil
    }

    private func only(_ methods: [String], _ request: HTTPRequest, _ body: () -> HTTPResponse) -> HTTPResponse {
        guard methods.contains(request.method) else {
            var response = Self.problem(405, "Method Not Allowed", "\(request.method) is not allowed here.")
            response.headers.append(("Allow", methods.joined(separator: ", ")))
            return response
        }
        return body()
    }

    static func text(_ status: Int, _ text: String) -> HTTPResponse {
        HTTPResponse(status: status, headers: [("Content-Type", "text/plain; charset=utf-8")], body: Array(text.utf8))
    }

    static func json(_ status: Int, _ json: JSONWriter) -> HTTPResponse {
        HTTPResponse(status: status, headers: [("Content-Type", "application/json")], body: json.bytes + [10])
    }

    /// RFC 9457 problem details.
    static func problem(_ status: Int, _ title: String, _ detail: String) -> HTTPResponse {
        var json = JSONWriter()
        json.raw("{\"type\":\"about:blank\",\"title\":")
        json.string(title)
        json.raw(",\"status\":")
        json.number(status)
        json.raw(",\"detail\":")
        json.string(detail)
        json.raw("}")
        return HTTPResponse(
            status: status,
            headers: [("Content-Type", "application/problem+json")],
            body: json.bytes + [10]
        )
    }
}

/// Rendered bodies, valid for one registry generation: the unfiltered `/v1/nodes`, and each node's
/// JSON. A registration never changes while it lives, so a body is stale only once the generation
/// moves on; then everything is dropped.
final class NodeListCache: Sendable {
    private struct Entries {
        var generation: UInt64 = .max
        var list: [UInt8]?
        var nodes: [[UInt8]: [UInt8]] = [:]

        mutating func roll(to generation: UInt64) {
            guard self.generation != generation else { return }
            self = Entries(generation: generation)
        }
    }

    private let entries = Mutex(Entries())
    private let fragments = Mutex(NodeFragments())
    private let frames = Mutex(EventFrames())

    /// Runs `body` with the rendered event frames, under their lock.
    func withFrames<T>(_ body: (inout EventFrames) -> T) -> T {
        self.frames.withLock { body(&$0) }
    }

    /// Runs `body` with the per-registration renderings, under their lock. Renderings of nodes gone
    /// are dropped by a complete render, or once they outnumber the `liveCount` registrations.
    func withFragments(complete: Bool, liveCount: Int, _ body: (inout NodeFragments) -> Void) {
        self.fragments.withLock { fragments in
            if fragments.count > 2 * liveCount + 1024 { fragments = NodeFragments() }
            if complete { fragments.startSweep() }
            body(&fragments)
            if complete { fragments.finishSweep() }
        }
    }

    func body(for generation: UInt64) -> [UInt8]? {
        self.entries.withLock { $0.generation == generation ? $0.list : nil }
    }

    func store(_ body: [UInt8], for generation: UInt64) {
        self.entries.withLock {
            $0.roll(to: generation)
            $0.list = body
        }
    }

    func node(_ name: [UInt8], for generation: UInt64) -> [UInt8]? {
        self.entries.withLock { $0.generation == generation ? $0.nodes[name] : nil }
    }

    func storeNode(_ name: [UInt8], _ body: [UInt8], for generation: UInt64) {
        self.entries.withLock {
            $0.roll(to: generation)
            // Bounded: at most one entry per registered name of this generation.
            $0.nodes[name] = body
        }
    }
}

/// Each live registration's `Node` JSON, rendered once. Keyed by the registration's sequence number
/// (unique per registration, so a name registered again is rendered again). Bounded: a render of the
/// whole table keeps only what it used.
struct NodeFragments {
    private var rendered: [UInt64: [UInt8]] = [:]
    private var used: [UInt64: [UInt8]]?

    var count: Int { self.rendered.count }

    mutating func startSweep() { self.used = [:] }

    mutating func finishSweep() {
        if let used = self.used { self.rendered = used }
        self.used = nil
    }

    /// Appends the node's JSON, rendering it on first use.
    mutating func append(_ node: RegisteredNode, to json: inout JSONWriter) {
        let fragment: [UInt8]
        if let cached = self.rendered[node.sequence] {
            fragment = cached
        } else {
            var single = JSONWriter(capacity: 256)
            single.node(node)
            fragment = single.bytes
            self.rendered[node.sequence] = fragment
        }
        self.used?[node.sequence] = fragment
        json.append(fragment)
    }
}
