/// The admin API: off unless the gateway was given a token. It is one operation, `DELETE
/// /v1/nodes/{name}` with `Authorization: Bearer <token>`, which forcibly unregisters a node (STOP's
/// equivalent: the epmd loop closes the node's registration connection). Without it, every mutating
/// method answers 405.
public struct AdminAPI: Sendable {
    /// What the epmd port did with a forced unregistration.
    public enum Outcome: Equatable, Sendable {
        /// The node's registration connection was closed.
        case unregistered
        /// No node has that name.
        case notFound
        /// The epmd loop did not answer in time (or is stopping): nothing was done.
        case unavailable
    }

    /// The `result` label of `epmd_gateway_admin_requests_total`.
    public enum Result: String, Sendable, CaseIterable {
        case ok
        case unauthorized
        case notFound = "not_found"
    }

    let token: [UInt8]
    let unregister: @Sendable ([UInt8]) -> Outcome
    let observer: @Sendable (Result) -> Void

    /// - Parameters:
    ///   - token: the bearer token (non-empty; the caller read it from a private file).
    ///   - unregister: forcibly unregisters the node with this name (blocks for a bounded time).
    ///   - observer: told each request's result, for metrics.
    public init(
        token: [UInt8],
        unregister: @escaping @Sendable ([UInt8]) -> Outcome,
        observer: @escaping @Sendable (Result) -> Void = { _ in }
    ) {
        self.token = token
        self.unregister = unregister
        self.observer = observer
    }
}

/// `DELETE /v1/nodes/{name}` when admin is on.
struct AdminHandler: Sendable {
    let api: AdminAPI

    func delete(named name: String, _ request: HTTPRequest) -> HTTPResponse {
        // The token first: without it, nothing about the registry is told (not even whether a name exists).
        guard let presented = Self.bearerToken(request.header("Authorization")) else {
            self.api.observer(.unauthorized)
            return Self.unauthorized(invalidToken: false)
        }
        guard Self.constantTimeEqual(presented, self.api.token) else {
            self.api.observer(.unauthorized)
            return Self.unauthorized(invalidToken: true)
        }
        if let invalid = NodesHandler.invalidName(name) { return invalid }
        switch self.api.unregister(Array(name.utf8)) {
        case .unregistered:
            self.api.observer(.ok)
            return HTTPResponse(status: 204)
        case .notFound:
            self.api.observer(.notFound)
            return .problem(404, "Not Found", "No node named \(name) is registered.")
        case .unavailable:
            var response = HTTPResponse.problem(503, "Service Unavailable", "The epmd port did not answer in time.")
            response.headers.append(("Retry-After", "1"))
            return response
        }
    }

    /// 401 with the challenge (RFC 6750): `invalid_token` when a token was presented and is wrong.
    static func unauthorized(invalidToken: Bool) -> HTTPResponse {
        var response = HTTPResponse.problem(
            401,
            "Unauthorized",
            invalidToken ? "The bearer token is not valid." : "This operation needs a bearer token."
        )
        response.headers.append(
            (
                "WWW-Authenticate",
                invalidToken
                    ? "Bearer realm=\"epmd-gateway\", error=\"invalid_token\"" : "Bearer realm=\"epmd-gateway\""
            )
        )
        return response
    }

    /// The token of `Authorization: Bearer <token>` (scheme case-insensitive, RFC 9110 §11.1), nil
    /// when the header is absent or another scheme.
    static func bearerToken(_ header: String?) -> [UInt8]? {
        guard let header else { return nil }
        let bytes = Array(header.utf8)
        let scheme = Array("bearer".utf8)
        guard bytes.count > scheme.count,
            zip(bytes, scheme).allSatisfy({ actual, wanted in actual | 0x20 == wanted }),
            bytes[scheme.count] == UInt8(ascii: " ")
        else { return nil }
        let token = bytes[(scheme.count + 1)...].drop { $0 == UInt8(ascii: " ") }
        let trimmed = token.reversed().drop { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") }.reversed()
        return trimmed.isEmpty ? nil : Array(trimmed)
    }

    /// Equality whose time depends only on the lengths, never on where the bytes first differ.
    static func constantTimeEqual(_ presented: [UInt8], _ expected: [UInt8]) -> Bool {
        var difference: UInt8 = presented.count == expected.count ? 0 : 1
        for index in 0..<expected.count {
            let byte = index < presented.count ? presented[index] : ~expected[index]
            difference |= byte ^ expected[index]
        }
        return difference == 0 && !expected.isEmpty
    }
}
