import EPMDProtocol
import EPMDRegistry

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The JSON text of the API, written by hand: small, byte-stable (keys in a fixed order), and free
/// of Foundation on the request path.
enum JSON {
    /// A JSON string literal, escaped per RFC 8259.
    static func string(_ text: String) -> String {
        var result = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": result += "\\\""
            case "\\": result += "\\\\"
            case "\n": result += "\\n"
            case "\r": result += "\\r"
            case "\t": result += "\\t"
            case let control where control.value < 0x20:
                let hex = String(control.value, radix: 16)
                result += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default:
                result.unicodeScalars.append(scalar)
            }
        }
        return result + "\""
    }

    /// `{"a":1,"b":"x"}` from already-encoded values, in the given order.
    static func object(_ fields: [(String, String)]) -> String {
        "{" + fields.map { "\(self.string($0.0)):\($0.1)" }.joined(separator: ",") + "}"
    }

    /// RFC 3339 UTC time with milliseconds, e.g. `2026-11-23T07:48:29.123Z`.
    static func timestamp(_ secondsSince1970: Double) -> String {
        var seconds = time_t(secondsSince1970.rounded(.down))
        let milliseconds = Int((secondsSince1970 - Double(seconds)) * 1000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func pad(_ value: Int32, _ width: Int) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))"
            + "T\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2))"
            + ".\(pad(Int32(milliseconds), 3))Z"
    }

    /// Standard base64 of opaque bytes.
    static func base64(_ bytes: [UInt8]) -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
        var output: [UInt8] = []
        output.reserveCapacity((bytes.count + 2) / 3 * 4)
        var index = 0
        while index < bytes.count {
            let chunk = bytes[index..<min(index + 3, bytes.count)]
            let b0 = chunk[chunk.startIndex]
            let b1 = chunk.count > 1 ? chunk[chunk.startIndex + 1] : 0
            let b2 = chunk.count > 2 ? chunk[chunk.startIndex + 2] : 0
            output.append(alphabet[Int(b0 >> 2)])
            output.append(alphabet[Int((b0 & 0x03) << 4 | b1 >> 4)])
            output.append(chunk.count > 1 ? alphabet[Int((b1 & 0x0F) << 2 | b2 >> 6)] : UInt8(ascii: "="))
            output.append(chunk.count > 2 ? alphabet[Int(b2 & 0x3F)] : UInt8(ascii: "="))
            index += 3
        }
        return String(decoding: output, as: UTF8.self)
    }

    /// The `Node` object of the API.
    static func node(_ node: RegisteredNode) -> String {
        let request = node.request
        let type: String
        switch request.nodeType {
        case 77: type = "normal"
        case 72: type = "hidden"
        default: type = "other"
        }
        return self.object([
            ("name", self.string(String(decoding: node.name, as: UTF8.self))),
            ("port", String(request.port)),
            ("type", self.string(type)),
            ("typeCode", String(request.nodeType)),
            ("protocol", String(request.nodeProtocol)),
            ("highestVersion", String(request.highestVersion)),
            ("lowestVersion", String(request.lowestVersion)),
            ("extra", self.string(self.base64(request.extra))),
            ("creation", String(RegisteredNode.wireCreation(node.creation, extended: request.wantsExtendedReply))),
            ("registeredAt", self.string(self.timestamp(node.registeredAt))),
            ("peer", self.string(node.peer)),
        ])
    }
}
