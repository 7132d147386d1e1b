/// `/livez`, `/readyz`, `/version` and `/metrics`: what orchestrators and scrapers ask.
struct ProbesHandler: Sendable {
    let build: HTTPRouter.Build
    let isReady: @Sendable () -> Bool
    let exposition: (@Sendable () -> [UInt8])?
    /// More `/readyz?verbose` lines (systemd's fd store): shown, never counted for the status.
    let details: @Sendable () -> [String]

    init(
        build: HTTPRouter.Build,
        isReady: @escaping @Sendable () -> Bool,
        metrics: (@Sendable () -> [UInt8])?,
        details: @escaping @Sendable () -> [String] = { [] }
    ) {
        self.build = build
        self.isReady = isReady
        self.exposition = metrics
        self.details = details
    }

    var servesMetrics: Bool { self.exposition != nil }

    static let alive = SharedBody(bytes: Array("ok\n".utf8), headers: [("Content-Type", "text/plain; charset=utf-8")])

    func livez() -> HTTPResponse { HTTPResponse(status: 200, shared: Self.alive) }

    /// 200 once serving, 503 while starting or draining; `?verbose` gives the check-list form.
    func readyz(_ request: HTTPRequest) -> HTTPResponse {
        let ready = self.isReady()
        if request.query["verbose"] != nil {
            let lines = self.details().map { "\($0)\n" }.joined()
            return .text(ready ? 200 : 503, (ready ? "[+]ready ok\n" : "[-]ready failed\n") + lines)
        }
        return .text(ready ? 200 : 503, ready ? "ok\n" : "not ready\n")
    }

    func version() -> HTTPResponse {
        var json = JSONWriter()
        json.raw("{\"version\":")
        json.string(self.build.version)
        json.raw(",\"libmicrohttpd\":")
        json.string(self.build.libmicrohttpd)
        json.raw("}")
        return .json(200, json)
    }

    func metrics() -> HTTPResponse {
        HTTPResponse(
            status: 200,
            headers: [("Content-Type", "text/plain; version=0.0.4; charset=utf-8")],
            body: self.exposition?() ?? []
        )
    }
}
