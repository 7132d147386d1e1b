import EPMDProtocol
import Testing

/// The byte codec under the state images: round trips, and no trap on any input.
@Suite struct ByteCodingTests {
    @Test("every value round-trips, big-endian, lengths prefixed")
    func roundTrip() throws {
        var writer = ByteWriter()
        writer.u8(0xAB)
        writer.u16(0x1234)
        writer.u32(0xDEAD_BEEF)
        writer.u64(0x0102_0304_0506_0708)
        writer.i32(-5)
        writer.f64(1_764_000_000.123456)
        writer.f64(-0.0)
        writer.bool(true)
        writer.blob([1, 2, 3])
        writer.string("nodé")
        #expect(Array(writer.bytes[1...2]) == [0x12, 0x34])
        var reader = ByteReader(writer.bytes)
        #expect(try reader.u8() == 0xAB)
        #expect(try reader.u16() == 0x1234)
        #expect(try reader.u32() == 0xDEAD_BEEF)
        #expect(try reader.u64() == 0x0102_0304_0506_0708)
        #expect(try reader.i32() == -5)
        #expect(try reader.f64() == 1_764_000_000.123456)
        #expect(try reader.f64().bitPattern == (-0.0).bitPattern)
        #expect(try reader.bool())
        #expect(try reader.blob() == [1, 2, 3])
        #expect(try reader.string() == "nodé")
        #expect(reader.isAtEnd)
        try reader.expectEnd()
    }

    @Test("truncation, oversized lengths and counts, bad bools and bad UTF-8 throw")
    func refusals() {
        var short = ByteReader([0, 0, 0])
        #expect(throws: StateDecodingError.self) { try short.u32() }
        var long = ByteReader([0, 0, 0, 9, 1, 2])
        #expect(throws: StateDecodingError.self) { try long.blob() }
        var bounded = ByteReader([0, 0, 0, 2, 1, 2])
        #expect(throws: StateDecodingError.self) { try bounded.blob(bound: 1) }
        var huge = ByteReader([0xFF, 0xFF, 0xFF, 0xFF])
        #expect(throws: StateDecodingError.self) { try huge.count(minimumElementSize: 1) }
        var many = ByteReader([0, 0, 0, 3, 1, 2, 3, 4, 5])
        #expect(throws: StateDecodingError.self) { try many.count(minimumElementSize: 2) }
        var bool = ByteReader([2])
        #expect(throws: StateDecodingError.self) { try bool.bool() }
        var text = ByteReader([0, 0, 0, 1, 0xFF])
        #expect(throws: StateDecodingError.self) { try text.string() }
        var time = ByteReader(ByteWriter.encoding { $0.f64(.nan) })
        #expect(throws: StateDecodingError.self) { try time.time() }
        let left = ByteReader([1])
        #expect(throws: StateDecodingError.self) { try left.expectEnd() }
    }

    @Test("random and truncated inputs never trap: every read either succeeds or throws")
    func fuzz() {
        var generator = SplitMix(seed: 0x5EED)
        for _ in 0..<2000 {
            let count = Int(generator.next() % 64)
            let bytes = (0..<count).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
            var reader = ByteReader(bytes)
            for _ in 0..<16 {
                let operation = generator.next() % 9
                do {
                    switch operation {
                    case 0: _ = try reader.u8()
                    case 1: _ = try reader.u16()
                    case 2: _ = try reader.u32()
                    case 3: _ = try reader.u64()
                    case 4: _ = try reader.blob(bound: 32)
                    case 5: _ = try reader.string(bound: 32)
                    case 6: _ = try reader.count(minimumElementSize: 4, bound: 100)
                    case 7: _ = try reader.bool()
                    default: _ = try reader.time()
                    }
                } catch {
                    #expect(!error.description.isEmpty)
                }
            }
        }
    }
}

extension ByteWriter {
    /// The bytes `body` writes.
    static func encoding(_ body: (inout ByteWriter) -> Void) -> [UInt8] {
        var writer = ByteWriter()
        body(&writer)
        return writer.bytes
    }
}

/// A small deterministic generator for the fuzz loops.
struct SplitMix {
    var state: UInt64

    init(seed: UInt64) { self.state = seed }

    mutating func next() -> UInt64 {
        self.state &+= 0x9E37_79B9_7F4A_7C15
        var z = self.state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
