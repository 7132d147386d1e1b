/// The fields of an ALIVE2_REQ, exactly as the node sent them.
public struct Alive2Request: Equatable, Sendable {
    /// The node's distribution port (stored and echoed as given, 0 included).
    public var port: UInt16
    /// 77 `M` normal, 72 `H` hidden; not validated, echoed.
    public var nodeType: UInt8
    /// 0 = TCP/IPv4; not validated, echoed.
    public var nodeProtocol: UInt8
    public var highestVersion: UInt16
    public var lowestVersion: UInt16
    /// The name bytes (UTF-8 expected; the registry validates).
    public var name: [UInt8]
    /// Opaque extra bytes, NULs allowed.
    public var extra: [UInt8]

    public init(
        port: UInt16,
        nodeType: UInt8 = 77,
        nodeProtocol: UInt8 = 0,
        highestVersion: UInt16 = 6,
        lowestVersion: UInt16 = 5,
        name: [UInt8],
        extra: [UInt8] = []
    ) {
        self.port = port
        self.nodeType = nodeType
        self.nodeProtocol = nodeProtocol
        self.highestVersion = highestVersion
        self.lowestVersion = lowestVersion
        self.name = name
        self.extra = extra
    }

    /// Whether the reply uses the 6-byte form with a 32-bit creation.
    public var wantsExtendedReply: Bool { self.highestVersion >= 6 }

    /// Decodes an ALIVE2 body in C epmd's order of checks. Bytes past the extra field are ignored.
    /// - Parameter body: the request body, code byte included.
    /// - Throws: `EPMDProtocolError` when C epmd closes without a reply.
    public static func decode(_ body: [UInt8]) throws(EPMDProtocolError) -> Alive2Request {
        guard body.count > 13 else { throw .alive2TooSmall }
        func u16(_ offset: Int) -> UInt16 { UInt16(body[offset]) << 8 | UInt16(body[offset + 1]) }
        let nameLength = Int(u16(9))
        guard nameLength + 13 <= body.count else { throw .alive2NameLength }
        let extraLength = Int(u16(11 + nameLength))
        guard extraLength + nameLength + 13 <= body.count else { throw .alive2ExtraLength }
        let name = Array(body[11..<(11 + nameLength)])
        guard !name.contains(0) else { throw .nulInName }
        let extraStart = 13 + nameLength
        return Alive2Request(
            port: u16(1),
            nodeType: body[3],
            nodeProtocol: body[4],
            highestVersion: u16(5),
            lowestVersion: u16(7),
            name: name,
            extra: Array(body[extraStart..<(extraStart + extraLength)])
        )
    }

    /// Encodes the request body (without the length prefix), for clients and tests.
    public func encode() -> [UInt8] {
        var body: [UInt8] = [EPMDMessageCode.alive2Request.rawValue]
        self.appendFields(to: &body)
        return body
    }

    /// Appends the node's fields in wire order (port, type, protocol, versions, name, extra): the
    /// layout both ALIVE2_REQ and a found PORT2_RESP use.
    public func appendFields(to bytes: inout [UInt8]) {
        bytes.reserveCapacity(bytes.count + 12 + self.name.count + self.extra.count)
        bytes.appendUInt16(self.port)
        bytes.append(self.nodeType)
        bytes.append(self.nodeProtocol)
        bytes.appendUInt16(self.highestVersion)
        bytes.appendUInt16(self.lowestVersion)
        bytes.appendUInt16(UInt16(truncatingIfNeeded: self.name.count))
        bytes += self.name
        bytes.appendUInt16(UInt16(truncatingIfNeeded: self.extra.count))
        bytes += self.extra
    }
}

extension Array where Element == UInt8 {
    /// Appends a big-endian 16-bit integer.
    public mutating func appendUInt16(_ value: UInt16) {
        self.append(UInt8(value >> 8))
        self.append(UInt8(value & 0xFF))
    }

    /// Appends a big-endian 32-bit integer.
    public mutating func appendUInt32(_ value: UInt32) {
        self.append(UInt8(value >> 24))
        self.append(UInt8(value >> 16 & 0xFF))
        self.append(UInt8(value >> 8 & 0xFF))
        self.append(UInt8(value & 0xFF))
    }

    /// Appends the decimal digits of a non-negative integer (no Foundation, no String round trip).
    public mutating func appendDecimal(_ value: Int) {
        if value < 0 {
            self.append(UInt8(ascii: "-"))
            self.appendDecimal(-value)
            return
        }
        var digits: [UInt8] = []
        var rest = value
        repeat {
            digits.append(UInt8(ascii: "0") + UInt8(rest % 10))
            rest /= 10
        } while rest > 0
        self.append(contentsOf: digits.reversed())
    }
}
