/// An HTTP request as a value: copied out of libmicrohttpd before any Swift code looks at it.
public struct HTTPRequest: Equatable, Sendable {
    /// `GET`, `HEAD`, ...
    public var method: String
    /// The path, percent-decoded by libmicrohttpd, without the query.
    public var path: String
    /// Query arguments (the last value wins for repeated keys).
    public var query: [String: String]
    /// Header values by lower-cased name.
    public var headers: [String: String]
    /// The client's address, printable (`127.0.0.1`, `::1`).
    public var peer: String

    public init(
        method: String,
        path: String,
        query: [String: String] = [:],
        headers: [String: String] = [:],
        peer: String = ""
    ) {
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.peer = peer
    }

    /// A header's value, by case-insensitive name.
    public func header(_ name: String) -> String? { self.headers[name.lowercased()] }
}

/// An HTTP response as a value: the router returns it; the daemon copies it into libmicrohttpd.
public struct HTTPResponse: Equatable, Sendable {
    public var status: Int
    /// Headers in order (libmicrohttpd adds `Date` and `Content-Length`).
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

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
