/// The shapes of answers: plain text, JSON from a `JSONWriter`, and RFC 9457 problem details.
extension HTTPResponse {
    static func text(_ status: Int, _ text: String) -> HTTPResponse {
        HTTPResponse(status: status, headers: [("Content-Type", "text/plain; charset=utf-8")], body: Array(text.utf8))
    }

    /// The writer's bytes and a final newline, as `application/json`.
    static func json(_ status: Int, _ json: JSONWriter) -> HTTPResponse {
        HTTPResponse(status: status, headers: [("Content-Type", "application/json")], body: json.bytes + [10])
    }

    /// RFC 9457 problem details (`application/problem+json`).
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

    /// 405 with the `Allow` header.
    static func methodNotAllowed(_ method: String, allow: [String] = HTTPRoute.methods) -> HTTPResponse {
        var response = Self.problem(405, "Method Not Allowed", "\(method) is not allowed here.")
        response.headers.append(("Allow", allow.joined(separator: ", ")))
        return response
    }
}
