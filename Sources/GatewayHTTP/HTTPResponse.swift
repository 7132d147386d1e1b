/// An HTTP response as a value: the router returns it; the daemon hands it to libmicrohttpd. Its body
/// and headers are either its own or a ``SharedBody`` rendered once and served many times (the daemon
/// then reuses one native response object instead of copying the bytes per request).
public struct HTTPResponse: Equatable, Sendable {
    public var status: Int
    private var ownHeaders: [(name: String, value: String)]
    private var ownBody: [UInt8]
    /// The shared body and headers, when this response serves a cached rendering unchanged.
    private(set) var shared: SharedBody?
    /// The route that answered. Set by the router.
    public var matched = HTTPRoute.other

    /// The route template that answered (`/v1/nodes/{name}`, never the raw path): the `route` label
    /// of the HTTP metrics.
    public var route: String { self.matched.label }

    /// ``matched`` as an index (its `rawValue`): what the daemon tells its observer, without knowing
    /// the routes.
    var routeIndex: Int { self.matched.rawValue }

    public init(status: Int, headers: [(name: String, value: String)] = [], body: [UInt8] = []) {
        self.status = status
        self.ownHeaders = headers
        self.ownBody = body
    }

    /// A response serving `shared` as it is.
    init(status: Int, shared: SharedBody) {
        self.status = status
        self.ownHeaders = []
        self.ownBody = []
        self.shared = shared
    }

    /// Headers in order (libmicrohttpd adds `Date` and `Content-Length`). Changing them (or the body)
    /// makes the response its own, no longer shared.
    public var headers: [(name: String, value: String)] {
        get { self.shared?.headers ?? self.ownHeaders }
        set {
            self.unshare()
            self.ownHeaders = newValue
        }
    }

    public var body: [UInt8] {
        get { self.shared?.bytes ?? self.ownBody }
        set {
            self.unshare()
            self.ownBody = newValue
        }
    }

    private mutating func unshare() {
        guard let shared = self.shared else { return }
        self.ownHeaders = shared.headers
        self.ownBody = shared.bytes
        self.shared = nil
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
