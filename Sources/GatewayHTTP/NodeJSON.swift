import EPMDProtocol
import EPMDRegistry

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The JSON of the API, written straight into bytes: keys in a fixed order, strings escaped per
/// RFC 8259, no Foundation and no intermediate `String`s on the request path.
struct JSONWriter {
    private(set) var bytes: [UInt8] = []

    init(capacity: Int = 256) { self.bytes.reserveCapacity(capacity) }

    /// Appends text that is already JSON (punctuation, keys written as `"key":`).
    mutating func raw(_ text: StaticString) {
        text.withUTF8Buffer { self.bytes.append(contentsOf: $0) }
    }

    /// Appends a JSON string from UTF-8 bytes, escaping `"`, `\` and control characters.
    mutating func string(_ utf8: some Collection<UInt8>) {
        self.bytes.append(UInt8(ascii: "\""))
        for byte in utf8 {
            switch byte {
            case UInt8(ascii: "\""): self.bytes += [UInt8(ascii: "\\"), UInt8(ascii: "\"")]
            case UInt8(ascii: "\\"): self.bytes += [UInt8(ascii: "\\"), UInt8(ascii: "\\")]
            case UInt8(ascii: "\n"): self.bytes += [UInt8(ascii: "\\"), UInt8(ascii: "n")]
            case UInt8(ascii: "\r"): self.bytes += [UInt8(ascii: "\\"), UInt8(ascii: "r")]
            case UInt8(ascii: "\t"): self.bytes += [UInt8(ascii: "\\"), UInt8(ascii: "t")]
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                self.bytes += Array("\\u00".utf8) + [hex[Int(byte >> 4)], hex[Int(byte & 0x0F)]]
            default: self.bytes.append(byte)
            }
        }
        self.bytes.append(UInt8(ascii: "\""))
    }

    mutating func string(_ text: String) { self.string(text.utf8) }

    /// Appends bytes that are already JSON.
    mutating func append(_ json: [UInt8]) { self.bytes.append(contentsOf: json) }

    mutating func number(_ value: some BinaryInteger) {
        self.bytes.appendDecimal(Int(value))
    }

    /// RFC 3339 UTC time with milliseconds (or microseconds), e.g. `"2026-11-23T07:48:29.123Z"`.
    mutating func timestamp(_ secondsSince1970: Double, microseconds: Bool = false) {
        var seconds = time_t(secondsSince1970.rounded(.down))
        let scale = microseconds ? 1_000_000.0 : 1000.0
        let fraction = min(Int((secondsSince1970 - Double(seconds)) * scale), Int(scale) - 1)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func digits(_ value: Int, _ width: Int) {
            var divisor = 1
            for _ in 1..<width { divisor *= 10 }
            var rest = value
            while divisor > 0 {
                self.bytes.append(UInt8(ascii: "0") + UInt8(rest / divisor % 10))
                rest %= divisor
                divisor /= 10
            }
        }
        self.bytes.append(UInt8(ascii: "\""))
        digits(Int(parts.tm_year) + 1900, 4)
        self.bytes.append(UInt8(ascii: "-"))
        digits(Int(parts.tm_mon) + 1, 2)
        self.bytes.append(UInt8(ascii: "-"))
        digits(Int(parts.tm_mday), 2)
        self.bytes.append(UInt8(ascii: "T"))
        digits(Int(parts.tm_hour), 2)
        self.bytes.append(UInt8(ascii: ":"))
        digits(Int(parts.tm_min), 2)
        self.bytes.append(UInt8(ascii: ":"))
        digits(Int(parts.tm_sec), 2)
        self.bytes.append(UInt8(ascii: "."))
        digits(fraction, microseconds ? 6 : 3)
        self.bytes += [UInt8(ascii: "Z"), UInt8(ascii: "\"")]
    }

    /// A non-negative number of seconds with millisecond precision, e.g. `12.345`.
    mutating func seconds(_ value: Double) {
        let milliseconds = value.isFinite ? Int((max(value, 0) * 1000).rounded()) : 0
        self.bytes.appendDecimal(milliseconds / 1000)
        self.bytes.append(UInt8(ascii: "."))
        let rest = milliseconds % 1000
        self.bytes += [
            UInt8(ascii: "0") + UInt8(rest / 100), UInt8(ascii: "0") + UInt8(rest / 10 % 10),
            UInt8(ascii: "0") + UInt8(rest % 10),
        ]
    }

    /// Standard base64 of opaque bytes, as a JSON string.
    mutating func base64(_ input: [UInt8]) {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
        self.bytes.append(UInt8(ascii: "\""))
        var index = 0
        while index < input.count {
            let b0 = input[index]
            let b1 = index + 1 < input.count ? input[index + 1] : 0
            let b2 = index + 2 < input.count ? input[index + 2] : 0
            self.bytes.append(alphabet[Int(b0 >> 2)])
            self.bytes.append(alphabet[Int((b0 & 0x03) << 4 | b1 >> 4)])
            self.bytes.append(index + 1 < input.count ? alphabet[Int((b1 & 0x0F) << 2 | b2 >> 6)] : UInt8(ascii: "="))
            self.bytes.append(index + 2 < input.count ? alphabet[Int(b2 & 0x3F)] : UInt8(ascii: "="))
            index += 3
        }
        self.bytes.append(UInt8(ascii: "\""))
    }

    /// The `Node` object of the API.
    mutating func node(_ node: RegisteredNode) {
        let request = node.request
        self.raw("{\"name\":")
        self.string(node.name)
        self.raw(",\"port\":")
        self.number(request.port)
        switch request.nodeType {
        case 77: self.raw(",\"type\":\"normal\"")
        case 72: self.raw(",\"type\":\"hidden\"")
        default: self.raw(",\"type\":\"other\"")
        }
        self.raw(",\"typeCode\":")
        self.number(request.nodeType)
        self.raw(",\"protocol\":")
        self.number(request.nodeProtocol)
        self.raw(",\"highestVersion\":")
        self.number(request.highestVersion)
        self.raw(",\"lowestVersion\":")
        self.number(request.lowestVersion)
        self.raw(",\"extra\":")
        self.base64(request.extra)
        self.raw(",\"creation\":")
        self.number(RegisteredNode.wireCreation(node.creation, extended: request.wantsExtendedReply))
        self.raw(",\"registeredAt\":")
        self.timestamp(node.registeredAt)
        self.raw(",\"peer\":")
        self.string(node.peer)
        self.raw("}")
    }
}
