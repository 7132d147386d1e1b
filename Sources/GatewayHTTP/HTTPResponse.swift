/// An HTTP response as a value: the router returns it; the daemon copies it into libmicrohttpd.
public struct HTTPResponse: Equatable, Sendable {
    public var status: Int
    /// Headers in order (libmicrohttpd adds `Date` and `Content-Length`).
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]
    /// The route template that answered (`/v1/nodes/{name}`, never the raw path): the `route` label
    /// of the HTTP metrics. Set by the router.
    public var route = "other"

    public init(status: Int, headers: [(name: String, value: String)] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// A header's value, by case-insensitive name.
    public func header(_ name: String) -> String? {
        self.headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }

    public static func == (lhs: HTTPResponse, rhs: HTTPResponse) -> Bool {
        lhs.status == rhs.status && lhs.body == rhs.body
            && lhs.headers.map { "\($0.name): \($0.value)" } == rhs.headers.map { "\($0.name): \($0.value)" }
    }
}
