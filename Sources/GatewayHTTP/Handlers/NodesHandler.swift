import EPMDProtocol
import EPMDRegistry

/// `/v1/nodes`, `/v1/nodes/{name}` and `/v1/nodes/{name}/health`, with the long-poll decision. Bodies
/// of the current generation are cached (`NodeListCache`); each registration's JSON is rendered once.
struct NodesHandler: Sendable {
    let registry: NodeRegistry
    let cache: NodeListCache

    /// Whether `request` is a long-poll that should wait now: `GET /v1/nodes` with `index` at or past
    /// the current generation and a `wait` above zero (seconds, optionally with `s` or `m`; capped
    /// at 60 s). Without `wait`, or when the generation already passed `index`, it is answered at once.
    /// - Returns: the index and the seconds to wait, or `nil` to answer now.
    func longPollWait(for request: HTTPRequest) -> (index: UInt64, seconds: Int)? {
        guard request.method == "GET", request.path == "/v1/nodes",
            let index = request.query["index"].flatMap({ RequestNumber.generation($0.utf8) }),
            let seconds = request.query["wait"].flatMap({ RequestNumber.waitSeconds($0.utf8) }), seconds > 0,
            index >= self.registry.generation
        else { return nil }
        return (index, seconds)
    }

    /// `GET /v1/nodes[?type=...]`: the table sorted by name, with the generation as its `ETag`.
    func list(_ request: HTTPRequest) -> HTTPResponse {
        if let index = request.query["index"], RequestNumber.generation(index.utf8) == nil {
            return .problem(400, "Bad Request", "index must be a generation number (0 or more).")
        }
        if let wait = request.query["wait"], RequestNumber.waitSeconds(wait.utf8) == nil {
            return .problem(400, "Bad Request", "wait must be seconds: 30, 30s or 1m (at most 60 s are used).")
        }
        let typeFilter = request.query["type"]
        if typeFilter == nil {
            // The common case, answered without copying the table: the body of this generation.
            if let cached = self.cache.list(for: self.registry.generation) {
                if request.header("if-none-match") == cached.etag {
                    return HTTPResponse(status: 304, headers: [("ETag", cached.etag)])
                }
                return HTTPResponse(status: 200, shared: cached.body)
            }
        }
        let (generation, all) = self.registry.versionedSnapshot()
        let etag = Self.etag(generation)
        var selected = all
        if let raw = typeFilter {
            guard let type = HTTPRequest.percentDecode(raw) else {
                return .problem(400, "Bad Request", "type is not valid percent-encoded UTF-8.")
            }
            guard let wanted = NodeType(label: type) ?? RequestNumber.typeCode(type.utf8).map(NodeType.init(code:))
            else {
                return .problem(400, "Bad Request", "type must be normal, hidden or a type code (0-255).")
            }
            selected = all.filter { $0.request.type == wanted }
        }
        if request.header("if-none-match") == etag {
            return HTTPResponse(status: 304, headers: [("ETag", etag)])
        }
        var json = JSONWriter(capacity: 64 + selected.count * 256)
        json.raw("{\"generation\":")
        json.number(generation)
        json.raw(",\"nodes\":")
        self.appendNodeArray(selected, to: &json, complete: typeFilter == nil)
        json.raw("}")
        json.raw("\n")
        let body = SharedBody(bytes: json.bytes, headers: [("Content-Type", "application/json"), ("ETag", etag)])
        if typeFilter == nil { self.cache.storeList(body, etag: etag, for: generation) }
        return HTTPResponse(status: 200, shared: body)
    }

    /// `GET /v1/nodes/{name}`.
    func node(named name: String, _ request: HTTPRequest) -> HTTPResponse {
        if let invalid = Self.invalidName(name) { return invalid }
        let generation = self.registry.generation
        if let cached = self.cache.node(name, for: generation) {
            return HTTPResponse(status: 200, shared: cached)
        }
        guard let node = self.registry.lookup(Array(name.utf8)) else {
            return .problem(404, "Not Found", "No node named \(name) is registered.")
        }
        var json = JSONWriter()
        json.node(node)
        json.raw("\n")
        let body = SharedBody(bytes: json.bytes, headers: [("Content-Type", "application/json")])
        self.cache.storeNode(name, body, for: generation)
        return HTTPResponse(status: 200, shared: body)
    }

    /// The load-balancer contract: 200 while the node is registered, 503 when it is not.
    func health(named name: String) -> HTTPResponse {
        if let invalid = Self.invalidName(name) { return invalid }
        var json = JSONWriter()
        json.raw("{\"name\":")
        json.string(name)
        guard let node = self.registry.lookup(Array(name.utf8)) else {
            json.raw(",\"status\":\"unregistered\"}")
            return .json(503, json)
        }
        json.raw(",\"status\":\"registered\",\"port\":")
        json.number(node.port)
        json.raw("}")
        return .json(200, json)
    }

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

    /// Byte order of names (what `lexicographicallyPrecedes` gives), compared through spans: no
    /// iterator, no bounds checks beyond the spans' own.
    static func precedes(_ lhs: [UInt8], _ rhs: [UInt8]) -> Bool {
        let a = lhs.span
        let b = rhs.span
        let common = min(a.count, b.count)
        var index = 0
        while index < common {
            let x = a[unchecked: index]
            let y = b[unchecked: index]
            if x != y { return x < y }
            index += 1
        }
        return a.count < b.count
    }

    /// Names in paths: not empty, at most 255 code points, no `/` (sent as `%2F`) and no NUL. Checked on
    /// the UTF-8 bytes (no grapheme breaking); code points are counted only past 255 bytes.
    static func invalidName(_ name: String) -> HTTPResponse? {
        let bytes = name.utf8.span
        var forbidden = bytes.isEmpty
        var index = 0
        while index < bytes.count && !forbidden {
            let byte = bytes[index]
            forbidden = byte == UInt8(ascii: "/") || byte == 0
            index += 1
        }
        if forbidden
            || (bytes.count > EPMDLimits.maxNameCodePoints
                && name.unicodeScalars.count > EPMDLimits.maxNameCodePoints)
        {
            return .problem(400, "Bad Request", "A node name has 1 to 255 characters, no '/' and no NUL.")
        }
        return nil
    }

    /// The registry's generation as a strong entity tag, `"42"`.
    static func etag(_ generation: UInt64) -> String { "\"\(generation)\"" }
}
