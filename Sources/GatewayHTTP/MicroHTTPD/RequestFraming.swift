import CMicroHTTPD

/// The checks libmicrohttpd 0.9.75 does not make on a request head, made once the headers are in and
/// before anything else looks at the request. Each is a way a proxy in front and the gateway could
/// disagree about where a request ends (request smuggling), or a way to hold a connection open:
/// - two `Content-Length` headers (libmicrohttpd takes the first, a proxy may take the other);
/// - a `Transfer-Encoding` other than `chunked` (`xchunked` used to hang the connection);
/// - any request body (no endpoint takes one);
/// - HTTP/1.1 without `Host`;
/// - a control character (other than tab) in a header name or value. (A NUL is not seen: libmicrohttpd
///   0.9.75 ends the value there before the gateway sees it.)
/// A refused request gets 400 (413 for a body) and its connection is closed.
struct RequestFraming {
    /// Why a request head is refused.
    enum Refusal: Equatable {
        case duplicateContentLength
        case invalidContentLength
        case unknownTransferEncoding
        case body
        case missingHost
        case controlCharacter

        var status: Int { self == .body ? 413 : 400 }

        var title: String { self == .body ? "Content Too Large" : "Bad Request" }

        var detail: String {
            switch self {
            case .duplicateContentLength: "More than one Content-Length header."
            case .invalidContentLength: "Content-Length is not a number."
            case .unknownTransferEncoding: "Transfer-Encoding other than chunked."
            case .body: "This API takes no request body."
            case .missingHost: "HTTP/1.1 requests must have a Host header."
            case .controlCharacter: "A header contains a control character."
            }
        }
    }

    private var contentLengths = 0
    private var contentLengthIsZero = true
    private var contentLengthIsNumber = true
    private var transferEncoding: [UInt8]?
    private var hasHost = false
    private var hasControlCharacter = false

    /// Takes one header line as libmicrohttpd parsed it.
    mutating func header(name: UnsafeBufferPointer<UInt8>, value: UnsafeBufferPointer<UInt8>) {
        if name.contains(where: Self.isControl) || value.contains(where: Self.isControl) {
            self.hasControlCharacter = true
        }
        if Self.equalsIgnoringCase(name, "content-length") {
            self.contentLengths += 1
            let digits = value.filter { $0 != UInt8(ascii: " ") && $0 != UInt8(ascii: "\t") }
            self.contentLengthIsNumber =
                self.contentLengthIsNumber && !digits.isEmpty
                && digits.allSatisfy { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }
            self.contentLengthIsZero = self.contentLengthIsZero && digits.allSatisfy { $0 == UInt8(ascii: "0") }
        } else if Self.equalsIgnoringCase(name, "transfer-encoding") {
            self.transferEncoding = Array(value)
        } else if Self.equalsIgnoringCase(name, "host") {
            self.hasHost = true
        }
    }

    /// The verdict once every header was seen.
    /// - Parameter http11: whether the request line said HTTP/1.1.
    func refusal(http11: Bool) -> Refusal? {
        if self.hasControlCharacter { return .controlCharacter }
        if self.contentLengths > 1 { return .duplicateContentLength }
        if self.contentLengths == 1 && !self.contentLengthIsNumber { return .invalidContentLength }
        if let encoding = self.transferEncoding {
            let trimmed = encoding.filter { $0 != UInt8(ascii: " ") && $0 != UInt8(ascii: "\t") }
            guard Self.equalsIgnoringCase(trimmed, "chunked") else { return .unknownTransferEncoding }
            return .body
        }
        if self.contentLengths == 1 && !self.contentLengthIsZero { return .body }
        if http11 && !self.hasHost { return .missingHost }
        return nil
    }

    /// Collects the head of `connection` and judges it.
    static func check(_ connection: OpaquePointer, version: UnsafePointer<CChar>?) -> Refusal? {
        var framing = RequestFraming()
        withUnsafeMutablePointer(to: &framing) { pointer in
            _ = MHD_get_connection_values_n(connection, .HEADER_KIND, Self.collect, UnsafeMutableRawPointer(pointer))
        }
        let http11 = version.map { String(cString: $0) == "HTTP/1.1" } ?? false
        return framing.refusal(http11: http11)
    }

    private static let collect: MHD_KeyValueIteratorN = { cls, _, key, keySize, value, valueSize in
        guard let cls, let key else { return .YES }
        let framing = cls.assumingMemoryBound(to: RequestFraming.self)
        key.withMemoryRebound(to: UInt8.self, capacity: keySize) { name in
            let nameBuffer = UnsafeBufferPointer(start: name, count: keySize)
            guard let value else {
                framing.pointee.header(name: nameBuffer, value: UnsafeBufferPointer(start: nil, count: 0))
                return
            }
            value.withMemoryRebound(to: UInt8.self, capacity: valueSize) { bytes in
                framing.pointee.header(name: nameBuffer, value: UnsafeBufferPointer(start: bytes, count: valueSize))
            }
        }
        return .YES
    }

    private static func isControl(_ byte: UInt8) -> Bool {
        (byte < 0x20 && byte != UInt8(ascii: "\t")) || byte == 0x7F
    }

    private static func equalsIgnoringCase(_ bytes: some Collection<UInt8>, _ lowercase: StaticString) -> Bool {
        guard bytes.count == lowercase.utf8CodeUnitCount else { return false }
        return lowercase.withUTF8Buffer { expected in
            zip(bytes, expected).allSatisfy { (actual, wanted) in
                let folded = actual >= UInt8(ascii: "A") && actual <= UInt8(ascii: "Z") ? actual | 0x20 : actual
                return folded == wanted
            }
        }
    }
}
