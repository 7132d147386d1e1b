import Foundation
import Testing

@testable import GatewayHTTP

#if canImport(Glibc)
import Glibc
#endif

/// The JSON writer alone: string escaping, numbers, base64, RFC 3339 times, seconds. Every result is also
/// parsed back with Foundation's JSON parser where it is a JSON text.
@Suite struct JSONWriterTests {
    static func string(_ bytes: [UInt8]) -> String {
        var json = JSONWriter()
        json.string(bytes)
        return String(decoding: json.bytes, as: UTF8.self)
    }

    static func decoded(_ text: String) throws -> String? {
        try JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed]) as? String
    }

    @Test("every control character 0x00-0x1F is escaped, and parses back to itself", arguments: 0..<0x20)
    func controlCharacter(_ code: Int) throws {
        let byte = UInt8(truncatingIfNeeded: code)
        let text = Self.string([byte])
        let expected: String
        switch byte {
        case 0x0A: expected = #""\n""#
        case 0x0D: expected = #""\r""#
        case 0x09: expected = #""\t""#
        default: expected = "\"\\u00" + String(code, radix: 16).leftPadded(to: 2) + "\""
        }
        #expect(text == expected)
        #expect(try Self.decoded(text) == String(decoding: [byte], as: UTF8.self))
    }

    @Test("quote and backslash are escaped; DEL, slash and non-ASCII UTF-8 (2, 3, 4 bytes) pass as they are")
    func escapes() throws {
        #expect(Self.string(Array("\"".utf8)) == #""\"""#)
        #expect(Self.string(Array("\\".utf8)) == #""\\""#)
        #expect(Self.string([0x7F]) == "\"\u{7F}\"")
        #expect(Self.string(Array("a/b".utf8)) == "\"a/b\"")
        for sample in ["é", "€", "😀", "naïve café 日本 𝄞", ""] {
            let text = Self.string(Array(sample.utf8))
            #expect(text == "\"\(sample)\"")
            #expect(try Self.decoded(text) == sample)
        }
        let mixed = "a\"b\\c\u{1}\u{1F}\u{7F}é😀"
        #expect(try Self.decoded(Self.string(Array(mixed.utf8))) == mixed)
    }

    @Test("numbers: zero, the extremes of every width and sign, never through a trapping conversion")
    func numbers() {
        func text(_ body: (inout JSONWriter) -> Void) -> String {
            var json = JSONWriter()
            body(&json)
            return String(decoding: json.bytes, as: UTF8.self)
        }
        #expect(text { $0.number(0) } == "0")
        #expect(text { $0.number(UInt64.max) } == "18446744073709551615")
        #expect(text { $0.number(Int64.min) } == "-9223372036854775808")
        #expect(text { $0.number(Int.max) } == "9223372036854775807")
        #expect(text { $0.number(UInt8(255)) } == "255")
        #expect(text { $0.number(Int8(-128)) } == "-128")
        #expect(text { $0.number(UInt16(65535)) } == "65535")
        #expect(text { $0.number(10) } == "10")
        #expect(text { $0.number(1_000_000) } == "1000000")
    }

    @Test(
        "base64: empty, no padding, one and two padding characters; every byte value",
        arguments: [
            ([UInt8](), ""), ([0x66], "Zg=="), ([0x66, 0x6F], "Zm8="), ([0x66, 0x6F, 0x6F], "Zm9v"),
            ([0x66, 0x6F, 0x6F, 0x62], "Zm9vYg=="), ([0x66, 0x6F, 0x6F, 0x62, 0x61], "Zm9vYmE="),
            ([0x66, 0x6F, 0x6F, 0x62, 0x61, 0x72], "Zm9vYmFy"), ([0xFF, 0xFE, 0xFD], "//79"), ([0, 0], "AAA="),
        ]
    )
    func base64(_ input: [UInt8], _ expected: String) {
        var json = JSONWriter()
        json.base64(input)
        #expect(String(decoding: json.bytes, as: UTF8.self) == "\"\(expected)\"")
        #expect(Data(input).base64EncodedString() == expected)
    }

    @Test("base64 of all 256 byte values, at every padding offset, equals Foundation's")
    func base64AllBytes() {
        let all = (0...255).map { UInt8(truncatingIfNeeded: $0) }
        for drop in 0..<3 {
            let input = Array(all.dropFirst(drop))
            var json = JSONWriter()
            json.base64(input)
            #expect(String(decoding: json.bytes, as: UTF8.self) == "\"\(Data(input).base64EncodedString())\"")
        }
    }

    static func timestamp(_ seconds: Double, microseconds: Bool = false) -> String {
        var json = JSONWriter()
        json.timestamp(seconds, microseconds: microseconds)
        return String(decoding: json.bytes, as: UTF8.self)
    }

    @Test("RFC 3339: the epoch, fractions cut (never rounded into the next second), Feb 29, year 9999, before 1970")
    func timestamps() {
        #expect(Self.timestamp(0) == "\"1970-01-01T00:00:00.000Z\"")
        #expect(Self.timestamp(0, microseconds: true) == "\"1970-01-01T00:00:00.000000Z\"")
        #expect(Self.timestamp(1_795_411_787.25) == "\"2026-11-23T05:29:47.250Z\"")
        // Near the next second: .9999996 stays in this second.
        #expect(Self.timestamp(59.9999996, microseconds: true) == "\"1970-01-01T00:00:59.999999Z\"")
        #expect(Self.timestamp(59.9999996) == "\"1970-01-01T00:00:59.999Z\"")
        // Leap years: 2024-02-29 and 2000-02-29 exist; 2100 is not a leap year.
        #expect(Self.timestamp(1_709_164_800) == "\"2024-02-29T00:00:00.000Z\"")
        #expect(Self.timestamp(951_782_400) == "\"2000-02-29T00:00:00.000Z\"")
        #expect(Self.timestamp(4_107_542_400) == "\"2100-03-01T00:00:00.000Z\"")
        // The last second of year 9999, and past it (clamped).
        #expect(Self.timestamp(253_402_300_799) == "\"9999-12-31T23:59:59.000Z\"")
        #expect(Self.timestamp(1e300) == "\"9999-12-31T23:59:59.000Z\"")
        // Before 1970: the fraction counts forward from the second below.
        #expect(Self.timestamp(-1) == "\"1969-12-31T23:59:59.000Z\"")
        #expect(Self.timestamp(-0.25) == "\"1969-12-31T23:59:59.750Z\"")
        #expect(Self.timestamp(-62_135_596_800) == "\"0001-01-01T00:00:00.000Z\"")
        #expect(Self.timestamp(-1e300) == "\"0001-01-01T00:00:00.000Z\"")
        // Never a trap on NaN or infinities.
        #expect(Self.timestamp(.nan) == "\"1970-01-01T00:00:00.000Z\"")
        #expect(Self.timestamp(.infinity) == "\"9999-12-31T23:59:59.000Z\"")
    }

    @Test("the calendar arithmetic agrees with the C library's gmtime_r from year 1 to 9999")
    func calendarMatchesGmtime() {
        var generator = SystemRandomNumberGenerator()
        var samples: [Int] = [0, -1, 86_399, 86_400, 951_782_399, 951_782_400, -62_135_596_800, 253_402_300_799]
        for _ in 0..<20_000 { samples.append(Int.random(in: -62_135_596_800...253_402_300_799, using: &generator)) }
        for second in samples {
            var time = time_t(second)
            var parts = tm()
            gmtime_r(&time, &parts)
            let expected = String(
                format: "\"%04d-%02d-%02dT%02d:%02d:%02d.000Z\"",
                parts.tm_year + 1900,
                parts.tm_mon + 1,
                parts.tm_mday,
                parts.tm_hour,
                parts.tm_min,
                parts.tm_sec
            )
            #expect(Self.timestamp(Double(second)) == expected, "\(second)")
        }
    }

    @Test("seconds: three decimals, rounded; negative, NaN and infinity never trap")
    func seconds() {
        func text(_ value: Double) -> String {
            var json = JSONWriter()
            json.seconds(value)
            return String(decoding: json.bytes, as: UTF8.self)
        }
        #expect(text(0) == "0.000")
        #expect(text(12.3456) == "12.346")
        #expect(text(0.0004) == "0.000")
        #expect(text(59.9996) == "60.000")
        #expect(text(-5) == "0.000")
        #expect(text(.nan) == "0.000")
        #expect(text(.infinity) == "1000000000000000.000")
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        String(repeating: "0", count: Swift.max(0, width - self.count)) + self
    }
}
