/// Where a request's query arguments and headers come from, read by name only when a handler asks
/// (libmicrohttpd looks them up in its own buffers: no dictionary is built per request).
public protocol HTTPRequestValues: Sendable {
    /// The raw (still percent-encoded) value of the query argument `name`: `nil` when absent, `""` when
    /// present without a value. For a repeated argument, the first value.
    func argument(_ name: String) -> String?
    /// A header's value by case-insensitive name (the first one when repeated).
    func header(_ name: String) -> String?
}

/// An HTTP request as the API sees it: method and path as values, query arguments and headers read on
/// demand. A request made by the daemon reads libmicrohttpd's buffers and is valid only during the
/// handler call that receives it.
public struct HTTPRequest: Sendable {
    /// The query arguments, by name (`request.query["index"]`).
    public struct Query: Sendable {
        fileprivate let values: Values

        public subscript(_ name: String) -> String? {
            switch self.values {
            case .fixed(let query, _): query[name]
            case .lookup(let source): source.argument(name)
            }
        }
    }

    fileprivate enum Values: Sendable {
        case fixed(query: [String: String], headers: [String: String])
        case lookup(any HTTPRequestValues)
    }

    /// `GET`, `HEAD`, ...
    public var method: String
    /// The path as sent (still percent-encoded), without the query.
    public var path: String
    private let values: Values

    /// A request with fixed query arguments and headers (tests, and anything not from a live daemon).
    /// - Parameters:
    ///   - query: arguments by name, values still percent-encoded.
    ///   - headers: values by lower-cased name.
    public init(
        method: String,
        path: String,
        query: [String: String] = [:],
        headers: [String: String] = [:]
    ) {
        self.method = method
        self.path = path
        self.values = .fixed(query: query, headers: headers)
    }

    /// A request whose arguments and headers are read from `values` when asked.
    public init(method: String, path: String, values: some HTTPRequestValues) {
        self.method = method
        self.path = path
        self.values = .lookup(values)
    }

    /// The query arguments, by name.
    public var query: Query { Query(values: self.values) }

    /// A header's value, by case-insensitive name.
    public func header(_ name: String) -> String? {
        switch self.values {
        case .fixed(_, let headers): headers[name.lowercased()]
        case .lookup(let source): source.header(name)
        }
    }

    /// The path's segments, each percent-decoded on its own (so `%2F` never splits a segment);
    /// `nil` if a segment is not valid percent-encoded UTF-8.
    public var pathSegments: [String]? { Self.segments(of: self.path) }

    /// The segments of `path` after its leading `/`, each percent-decoded; `nil` for a broken escape or
    /// bytes that are not UTF-8.
    static func segments(of path: String) -> [String]? {
        var segments: [String] = []
        for raw in path.split(separator: "/", omittingEmptySubsequences: false).dropFirst() {
            guard let decoded = Self.percentDecode(String(raw)) else { return nil }
            segments.append(decoded)
        }
        return segments
    }

    /// Decodes `%XX` escapes; `nil` for a broken escape or bytes that are not UTF-8.
    public static func percentDecode(_ text: String) -> String? {
        var bytes: [UInt8] = []
        var iterator = Array(text.utf8).makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                continue
            }
            guard let high = iterator.next().flatMap(Self.hexValue), let low = iterator.next().flatMap(Self.hexValue)
            else { return nil }
            bytes.append(high << 4 | low)
        }
        return String(validating: bytes, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
