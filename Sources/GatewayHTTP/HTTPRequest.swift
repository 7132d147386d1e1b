/// An HTTP request as a value: copied out of libmicrohttpd before any Swift code looks at it.
public struct HTTPRequest: Equatable, Sendable {
    /// `GET`, `HEAD`, ...
    public var method: String
    /// The path as sent (still percent-encoded), without the query.
    public var path: String
    /// Query arguments (the last value wins for repeated keys).
    public var query: [String: String]
    /// Header values by lower-cased name (the daemon copies only the ones the router reads).
    public var headers: [String: String]

    public init(
        method: String,
        path: String,
        query: [String: String] = [:],
        headers: [String: String] = [:]
    ) {
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
    }

    /// A header's value, by case-insensitive name.
    public func header(_ name: String) -> String? { self.headers[name.lowercased()] }

    /// The path's segments, each percent-decoded on its own (so `%2F` never splits a segment);
    /// `nil` if a segment is not valid percent-encoded UTF-8.
    public var pathSegments: [String]? {
        var segments: [String] = []
        for raw in self.path.split(separator: "/", omittingEmptySubsequences: false).dropFirst() {
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
