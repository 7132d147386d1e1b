import EPMDProtocol
import EPMDRegistry
import Foundation
import FuzzSupport
import GatewayHTTP

/// Input: a flags byte (readiness, the method, how many nodes to register), then newline-separated
/// fields: a node name, the path, the query (`a=b&c=d`, values left percent-encoded as the daemon
/// leaves them), then the values of `If-None-Match`, `Last-Event-ID` and `Accept`. The router answers
/// over a registry holding the fuzzed name and a few others; then one node goes and the same request is
/// answered again (the cached renderings, ETags and event ring change).
///
/// Invariants: no trap; every status is 100...599, and the only 5xx are the documented 503s (`/readyz`
/// while not ready, a node's health while it is not registered); a 304 only answers an `If-None-Match`; JSON bodies parse; event streams are well-formed SSE
/// lines; a long-poll waits 1...`maximumWait` seconds.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    RouterTarget.run(fuzzBytes(data, count))
    return 0
}

/// The program's `main` (see Package.swift): libFuzzer's driver over ``fuzz(_:_:)``.
@_cdecl("FuzzRouter_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    runFuzzer(argc: argc, argv: argv) { data, count in fuzz(data, count) }
}

enum RouterTarget {
    static let methods = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "get"]
    static let newline = UInt8(ascii: "\n")

    static func run(_ data: [UInt8]) {
        var input = FuzzInput(data)
        let flags = input.byte()
        let ready = flags & 1 == 0
        let methodIndex = Int(flags >> 1) & 7
        let nodeCount = Int(flags >> 4) & 7
        let fuzzedName = input.field(separator: self.newline)
        let path = self.text(input.field(separator: self.newline))
        let query = self.parseQuery(self.text(input.field(separator: self.newline)))
        var headers: [String: String] = [:]
        for name in ["if-none-match", "last-event-id", "accept"] {
            let value = input.field(separator: self.newline)
            if !value.isEmpty { headers[name] = self.text(value) }
        }
        let method = methodIndex < self.methods.count ? self.methods[methodIndex] : self.text(input.rest())

        let registry = NodeRegistry(historyLimit: 5, eventCapacity: 8, clock: { 1_700_000_000 })
        var names: [[UInt8]] = [fuzzedName]
        names += (0..<nodeCount).map { Array("node\($0)".utf8) }
        for (offset, name) in names.enumerated() {
            let alive = Alive2Request(
                port: UInt16(40000 + offset),
                nodeType: offset.isMultiple(of: 2) ? 77 : 72,
                nodeProtocol: 0,
                highestVersion: 6,
                lowestVersion: 5,
                name: name,
                extra: offset == 1 ? [0, 1, 2] : []
            )
            _ = registry.register(
                alive,
                connection: ConnectionID(UInt64(offset + 1)),
                fd: Int32(offset + 10),
                peer: "127.0.0.1"
            )
        }
        let router = HTTPRouter(
            registry: registry,
            build: HTTPRouter.Build(version: "fuzz", libmicrohttpd: "0.9.75"),
            isReady: { ready },
            metrics: { Array("# TYPE up gauge\nup 1\n".utf8) },
            // Admin on, over the same registry: a forced unregistration only with the token.
            admin: AdminAPI(token: Array(Self.adminToken.utf8)) { name in
                guard let node = registry.lookup(name) else { return .notFound }
                registry.unregister(connection: node.connection)
                return .unregistered
            }
        )
        let request = HTTPRequest(method: method, path: path, query: query, headers: headers)
        self.exercise(router, request, ready: ready)
        registry.unregister(connection: ConnectionID(1))
        registry.unregister(connection: ConnectionID(3))
        self.exercise(router, request, ready: ready)
        _ = router.refusal(capacity: 1)
    }

    /// The admin token of the fuzzed router.
    static let adminToken = "fuzz-admin-token"

    static func exercise(_ router: HTTPRouter, _ request: HTTPRequest, ready: Bool) {
        let response = router.respond(to: request)
        // Only DELETE with the exact token mutates (204); without it, 401 and the Bearer challenge.
        if response.status == 204 || response.status == 401 {
            fuzzCheck(
                request.method == "DELETE" && response.matched == .node,
                "\(response.status) for \(request.method)"
            )
        }
        if response.status == 204 {
            let token = request.header("authorization")?.split(separator: " ").last.map(String.init)
            fuzzCheck(token == Self.adminToken, "204 with Authorization \(request.header("authorization") ?? "none")")
        }
        if response.status == 401 { fuzzCheck(response.header("WWW-Authenticate")?.hasPrefix("Bearer") == true, "401") }
        fuzzCheck((100...599).contains(response.status), "status \(response.status)")
        // The documented 503s: `/readyz` while not ready, and a node's health while it is not registered.
        if response.status >= 500 {
            let documented =
                response.status == 503
                && ((response.matched == .readyz && !ready) || response.matched == .nodeHealth)
            fuzzCheck(documented, "\(response.status) from \(response.route) for \(request.method) \(request.path)")
        }
        if response.matched == .nodeHealth, response.status == 200 || response.status == 503,
            let segments = request.pathSegments, segments.count == 4
        {
            let registered = router.registry.lookup(Array(segments[2].utf8)) != nil
            fuzzCheck(registered == (response.status == 200), "health \(response.status) for \(segments[2])")
        }
        if response.status == 304 {
            fuzzCheck(request.header("if-none-match") != nil, "304 without If-None-Match")
            fuzzCheck(response.body.isEmpty, "304 with a body")
        }
        let contentType = response.header("Content-Type") ?? ""
        if contentType.contains("json"), !response.body.isEmpty {
            let parsed = try? JSONSerialization.jsonObject(with: Data(response.body), options: [.fragmentsAllowed])
            fuzzCheck(
                parsed != nil,
                "\(contentType) body does not parse: \(String(decoding: response.body, as: UTF8.self))"
            )
        }
        if contentType.hasPrefix("text/event-stream") { self.checkEventStream(response.body) }

        if let wait = router.longPollWait(for: request) {
            fuzzCheck((1...HTTPRouter.maximumWait).contains(wait.seconds), "long-poll of \(wait.seconds) s")
        }
        if let start = router.eventStreamStart(for: request) {
            var lastID: UInt64?
            if case .after(let id) = start { lastID = id }
            let first = router.eventStreamChunk(after: lastID)
            self.checkEventStream(router.streamPreamble + first.bytes)
            let next = router.eventStreamChunk(after: first.lastID)
            fuzzCheck(next.bytes.isEmpty, "a watcher that saw everything gets more")
            fuzzCheck(next.lastID == first.lastID, "the last id moved with nothing new")
        }
    }

    /// Every line of an event stream is a field this API sends, a comment, or empty; data is UTF-8.
    static func checkEventStream(_ bytes: [UInt8]) {
        fuzzCheck(String(validating: bytes, as: UTF8.self) != nil, "event stream is not UTF-8")
        fuzzCheck(!bytes.contains(UInt8(ascii: "\r")), "carriage return in an event stream")
        for line in bytes.split(separator: self.newline, omittingEmptySubsequences: true) {
            let known = ["id: ", "event: ", "data: ", "retry: ", ":"].contains { line.starts(with: $0.utf8) }
            fuzzCheck(known, "event stream line: \(String(decoding: line, as: UTF8.self))")
        }
    }

    static func parseQuery(_ text: String) -> [String: String] {
        var query: [String: String] = [:]
        guard !text.isEmpty else { return query }
        for pair in text.split(separator: "&", omittingEmptySubsequences: false) {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = String(parts[0])
            // The first value of a repeated argument, as libmicrohttpd gives it.
            if query[name] == nil { query[name] = parts.count > 1 ? String(parts[1]) : "" }
        }
        return query
    }

    /// Bytes as the daemon gets them from libmicrohttpd's C strings: up to the first NUL, invalid
    /// UTF-8 repaired.
    static func text(_ bytes: [UInt8]) -> String {
        String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
    }
}
