import EPMDProtocol
import EPMDRegistry

/// The JSON of the API, written straight into bytes: keys in a fixed order, strings escaped per
/// RFC 8259, no Foundation and no intermediate `String`s on the request path.
struct JSONWriter {
    private(set) var bytes: [UInt8] = []

    init(capacity: Int = 256) { self.bytes.reserveCapacity(capacity) }

    /// Appends text that is already JSON (punctuation, keys written as `"key":`).
    mutating func raw(_ text: StaticString) {
        text.withUTF8Buffer { self.bytes.append(contentsOf: $0) }
    }

    /// Appends a JSON string from UTF-8 bytes, escaping `"`, `\` and control characters (RFC 8259 §7).
    /// Other bytes, DEL and non-ASCII UTF-8 included, are copied as they are.
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
                self.bytes += [
                    UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"),
                    Self.hexDigit(byte >> 4), Self.hexDigit(byte & 0x0F),
                ]
            default: self.bytes.append(byte)
            }
        }
        self.bytes.append(UInt8(ascii: "\""))
    }

    private static func hexDigit(_ nibble: UInt8) -> UInt8 {
        nibble < 10 ? UInt8(ascii: "0") &+ nibble : UInt8(ascii: "a") &+ (nibble &- 10)
    }

    mutating func string(_ text: String) { self.string(text.utf8) }

    /// Appends bytes that are already JSON.
    mutating func append(_ json: [UInt8]) { self.bytes.append(contentsOf: json) }

    /// Appends an integer in decimal, any width and sign (never traps: `UInt64.max` and `Int.min` too).
    mutating func number(_ value: some BinaryInteger) {
        if value < 0 { self.bytes.append(UInt8(ascii: "-")) }
        self.decimal(UInt64(truncatingIfNeeded: value.magnitude))
    }

    /// Appends `value`'s decimal digits, written in place (no temporary array).
    private mutating func decimal(_ value: UInt64) {
        var width = 1
        var scan = value
        while scan >= 10 {
            scan /= 10
            width += 1
        }
        let end = self.bytes.count + width
        self.bytes.append(contentsOf: repeatElement(UInt8(ascii: "0"), count: width))
        var rest = value
        var index = end
        while index > end - width {
            index -= 1
            self.bytes[index] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: rest % 10)
            rest /= 10
        }
    }

    /// Appends `value` (0 or more) as exactly `width` digits, zero-padded (the high digits cut).
    private mutating func digits(_ value: Int, _ width: Int) {
        var rest = value < 0 ? 0 : value
        let end = self.bytes.count + width
        self.bytes.append(contentsOf: repeatElement(UInt8(ascii: "0"), count: width))
        var index = end
        while index > end - width {
            index -= 1
            self.bytes[index] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: rest % 10)
            rest /= 10
        }
    }

    /// The times RFC 3339 can write with a four-digit year: 0001-01-01T00:00:00Z ... 9999-12-31T23:59:59Z.
    static let timestampRange: ClosedRange<Double> = -62_135_596_800...253_402_300_799

    /// RFC 3339 UTC time with milliseconds (or microseconds), e.g. `"2026-11-23T07:48:29.123Z"`. The
    /// fraction is cut, not rounded (`.9999996` is `.999999`, never the next second); times outside
    /// ``timestampRange`` are clamped to it and NaN is the epoch.
    mutating func timestamp(_ secondsSince1970: Double, microseconds: Bool = false) {
        let clamped =
            secondsSince1970.isNaN
            ? 0 : min(max(secondsSince1970, Self.timestampRange.lowerBound), Self.timestampRange.upperBound)
        let whole = clamped.rounded(.down)
        let seconds = Int(exactly: whole) ?? 0
        let scale = microseconds ? 1_000_000 : 1000
        let scaled = ((clamped - whole) * (microseconds ? 1_000_000.0 : 1000.0)).rounded(.down)
        let fraction = min(Int(exactly: scaled) ?? 0, scale - 1)
        let days = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
        let secondOfDay = seconds - days * 86_400
        let date = Self.civilDate(daysSince1970: days)
        self.bytes.append(UInt8(ascii: "\""))
        self.digits(date.year, 4)
        self.bytes.append(UInt8(ascii: "-"))
        self.digits(date.month, 2)
        self.bytes.append(UInt8(ascii: "-"))
        self.digits(date.day, 2)
        self.bytes.append(UInt8(ascii: "T"))
        self.digits(secondOfDay / 3600, 2)
        self.bytes.append(UInt8(ascii: ":"))
        self.digits(secondOfDay / 60 % 60, 2)
        self.bytes.append(UInt8(ascii: ":"))
        self.digits(secondOfDay % 60, 2)
        self.bytes.append(UInt8(ascii: "."))
        self.digits(fraction, microseconds ? 6 : 3)
        self.bytes += [UInt8(ascii: "Z"), UInt8(ascii: "\"")]
    }

    /// The proleptic Gregorian date of a day counted from 1970-01-01 (Howard Hinnant's `civil_from_days`:
    /// 400-year eras of 146,097 days), in pure integer arithmetic: no libc, no time zone.
    static func civilDate(daysSince1970: Int) -> (year: Int, month: Int, day: Int) {
        let z = daysSince1970 + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let shiftedMonth = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * shiftedMonth + 2) / 5 + 1
        let month = shiftedMonth < 10 ? shiftedMonth + 3 : shiftedMonth - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        return (year, month, day)
    }

    /// A non-negative number of seconds with millisecond precision, e.g. `12.345` (negative and NaN are
    /// 0; at most about 31,700 years).
    mutating func seconds(_ value: Double) {
        let bounded = value.isNaN ? 0 : min(max(value, 0), 1e15)
        let milliseconds = UInt64(exactly: (bounded * 1000).rounded()) ?? 0
        self.decimal(milliseconds / 1000)
        self.bytes.append(UInt8(ascii: "."))
        self.digits(Int(truncatingIfNeeded: milliseconds % 1000), 3)
    }

    private static let base64Alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    /// Standard base64 (RFC 4648 §4, with `=` padding) of opaque bytes, as a JSON string.
    mutating func base64(_ input: [UInt8]) {
        let alphabet = Self.base64Alphabet
        func symbol(_ sextet: UInt8) -> UInt8 { alphabet[Int(truncatingIfNeeded: sextet & 0x3F)] }
        self.bytes.append(UInt8(ascii: "\""))
        var index = 0
        while index < input.count {
            let b0 = input[index]
            let b1 = index + 1 < input.count ? input[index + 1] : 0
            let b2 = index + 2 < input.count ? input[index + 2] : 0
            self.bytes.append(symbol(b0 >> 2))
            self.bytes.append(symbol((b0 & 0x03) << 4 | b1 >> 4))
            self.bytes.append(index + 1 < input.count ? symbol((b1 & 0x0F) << 2 | b2 >> 6) : UInt8(ascii: "="))
            self.bytes.append(index + 2 < input.count ? symbol(b2) : UInt8(ascii: "="))
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
        let type = request.type
        self.raw(",\"type\":")
        self.string(type.label)
        self.raw(",\"typeCode\":")
        self.number(type.code)
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

    /// The `Event` object of the API (an SSE `data:` line and an entry of the history).
    mutating func event(_ event: RegistryEvent) {
        self.raw("{\"id\":")
        self.number(event.id)
        switch event.kind {
        case .registered:
            self.raw(",\"type\":\"registered\",\"time\":")
            self.timestamp(event.time, microseconds: true)
        case .unregistered(let reason):
            self.raw(",\"type\":\"unregistered\",\"time\":")
            self.timestamp(event.time, microseconds: true)
            self.raw(",\"reason\":")
            self.string(reason.rawValue)
            self.raw(",\"lifetimeSeconds\":")
            self.seconds(event.lifetime ?? 0)
            self.raw(event.isFlap ? ",\"flapping\":true" : ",\"flapping\":false")
        case .restarted(let method):
            self.raw(",\"type\":\"restarted\",\"time\":")
            self.timestamp(event.time, microseconds: true)
            self.raw(",\"method\":")
            self.string(method.rawValue)
            self.raw(",\"nodes\":")
            self.number(event.nodeCount ?? 0)
        }
        if let node = event.node {
            self.raw(",\"node\":")
            self.node(node)
        }
        self.raw("}")
    }
}
