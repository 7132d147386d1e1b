/// The static documents: the status page and the OpenAPI contract, embedded at build time from
/// `Resources/` (SwiftPM `embedInCode`; `openapi.yaml` and `openapi.json` there are symlinks to the
/// canonical contract in `openapi/`, so the bytes served are the files' bytes).
enum DocumentsHandler {
    static let page = SharedBody(
        bytes: StatusPage.html,
        headers: [("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-cache")]
    )
    static let json = SharedBody(bytes: OpenAPIDocument.json, headers: [("Content-Type", "application/json")])
    static let yaml = SharedBody(bytes: OpenAPIDocument.yaml, headers: [("Content-Type", "application/yaml")])

    static func statusPage() -> HTTPResponse { HTTPResponse(status: 200, shared: Self.page) }

    static func openAPIJSON() -> HTTPResponse { HTTPResponse(status: 200, shared: Self.json) }

    static func openAPIYAML() -> HTTPResponse { HTTPResponse(status: 200, shared: Self.yaml) }
}

/// The live status page served at `GET /` (`Resources/status.html`): one self-contained HTML document
/// (inline CSS and JavaScript, no external assets) that lists the registered nodes with their age and the
/// recent registry events, kept current from the Server-Sent Events stream at `v1/events` (a relative URL,
/// so the page also works behind a path prefix). Node names are untrusted: the script only ever sets them
/// with `textContent` and `setAttribute`. Each node row carries `data-node="NAME"`; `#nodes`, `#events`
/// and `#state` are the node table body, the event list and the connection state.
public enum StatusPage {
    /// The page as UTF-8 bytes.
    public static let html: [UInt8] = PackageResources.status_html
}

/// The OpenAPI contract, served at `/openapi.yaml` and `/openapi.json`: the bytes of `openapi/openapi.yaml`
/// and `openapi/openapi.json`, embedded at build time.
public enum OpenAPIDocument {
    public static let yaml: [UInt8] = PackageResources.openapi_yaml
    public static let json: [UInt8] = PackageResources.openapi_json
}
