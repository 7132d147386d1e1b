/// Why a state image could not be decoded: truncated, a length beyond what is left or beyond its
/// bound, or a value no encoder writes. Decoding never traps on any input; it throws this.
public struct StateDecodingError: Error, Equatable, Sendable, CustomStringConvertible {
    /// What was wrong, for logs and the refusal message of a hand-over.
    public var message: String
    /// Where in the input (bytes from the start) it was found.
    public var offset: Int

    public init(_ message: String, offset: Int = 0) {
        self.message = message
        self.offset = offset
    }

    public var description: String { "\(self.message) (at byte \(self.offset))" }
}

/// Writes values big-endian into a growing byte array: the state images of a hand-over and of the
/// systemd fd store's journal. Every variable-length value is prefixed with its u32 length.
public struct ByteWriter: Sendable {
    /// What was written so far.
    public private(set) var bytes: [UInt8] = []

    public init(capacity: Int = 0) { self.bytes.reserveCapacity(max(0, capacity)) }

    public mutating func u8(_ value: UInt8) { self.bytes.append(value) }

    public mutating func u16(_ value: UInt16) {
        self.bytes.append(UInt8(truncatingIfNeeded: value >> 8))
        self.bytes.append(UInt8(truncatingIfNeeded: value))
    }

    public mutating func u32(_ value: UInt32) {
        for shift in stride(from: 24, through: 0, by: -8) {
            self.bytes.append(UInt8(truncatingIfNeeded: value >> shift))
        }
    }

    public mutating func u64(_ value: UInt64) {
        for shift in stride(from: 56, through: 0, by: -8) {
            self.bytes.append(UInt8(truncatingIfNeeded: value >> shift))
        }
    }

    public mutating func i32(_ value: Int32) { self.u32(UInt32(bitPattern: value)) }

    public mutating func i64(_ value: Int64) { self.u64(UInt64(bitPattern: value)) }

    /// A `Double` by its bit pattern (exact, NaN and infinities included).
    public mutating func f64(_ value: Double) { self.u64(value.bitPattern) }

    public mutating func bool(_ value: Bool) { self.u8(value ? 1 : 0) }

    /// A count (of elements that follow), as u32. Counts above `UInt32.max` are a programmer error
    /// that cannot happen for in-memory tables; they are clamped so the image stays decodable (and
    /// fails to decode cleanly, not with a trap).
    public mutating func count(_ value: Int) { self.u32(UInt32(clamping: value)) }

    /// Bytes with a u32 length prefix.
    public mutating func blob(_ value: [UInt8]) {
        self.count(value.count)
        self.bytes.append(contentsOf: value)
    }

    /// A string as UTF-8 with a u32 length prefix.
    public mutating func string(_ value: String) { self.blob(Array(value.utf8)) }

    /// Raw bytes, no prefix.
    public mutating func raw(_ value: [UInt8]) { self.bytes.append(contentsOf: value) }
}

/// Reads what a ``ByteWriter`` wrote. Every read checks the bytes left first and throws
/// ``StateDecodingError`` instead of trapping; lengths and counts are checked against what is left
/// (and a caller's bound) before anything is allocated.
public struct ByteReader: Sendable {
    private let bytes: [UInt8]
    /// Bytes consumed so far.
    public private(set) var offset: Int

    public init(_ bytes: [UInt8]) {
        self.bytes = bytes
        self.offset = 0
    }

    /// Bytes not read yet.
    public var remaining: Int { self.bytes.count - self.offset }

    /// Whether everything was read.
    public var isAtEnd: Bool { self.offset >= self.bytes.count }

    /// A decoding error at the current offset.
    public func error(_ message: String) -> StateDecodingError { StateDecodingError(message, offset: self.offset) }

    private mutating func take(_ count: Int, _ what: String) throws(StateDecodingError) -> ArraySlice<UInt8> {
        guard count >= 0, count <= self.remaining else {
            throw self.error("truncated: \(what) needs \(count) bytes, \(self.remaining) left")
        }
        let start = self.offset
        self.offset += count
        return self.bytes[start..<(start + count)]
    }

    private mutating func integer(_ width: Int, _ what: String) throws(StateDecodingError) -> UInt64 {
        var value: UInt64 = 0
        for byte in try self.take(width, what) { value = value << 8 | UInt64(byte) }
        return value
    }

    public mutating func u8() throws(StateDecodingError) -> UInt8 { UInt8(try self.integer(1, "u8")) }

    public mutating func u16() throws(StateDecodingError) -> UInt16 { UInt16(try self.integer(2, "u16")) }

    public mutating func u32() throws(StateDecodingError) -> UInt32 { UInt32(try self.integer(4, "u32")) }

    public mutating func u64() throws(StateDecodingError) -> UInt64 { try self.integer(8, "u64") }

    public mutating func i32() throws(StateDecodingError) -> Int32 { Int32(bitPattern: try self.u32()) }

    public mutating func i64() throws(StateDecodingError) -> Int64 { Int64(bitPattern: try self.u64()) }

    public mutating func f64() throws(StateDecodingError) -> Double { Double(bitPattern: try self.u64()) }

    /// A finite, non-negative `Double` (times and durations).
    public mutating func time() throws(StateDecodingError) -> Double {
        let value = try self.f64()
        guard value.isFinite, value >= 0 else { throw self.error("not a time: \(value)") }
        return value
    }

    public mutating func bool() throws(StateDecodingError) -> Bool {
        switch try self.u8() {
        case 0: return false
        case 1: return true
        case let other: throw self.error("not a bool: \(other)")
        }
    }

    /// A count of elements that follow, each taking at least `minimumElementSize` bytes: larger than
    /// the bytes left allow, or than `bound`, it throws (nothing is allocated from an untrusted count).
    public mutating func count(
        minimumElementSize: Int = 1,
        bound: Int = Int(Int32.max)
    ) throws(StateDecodingError) -> Int {
        let value = Int(try self.u32())
        guard value <= bound else { throw self.error("count \(value) above its bound \(bound)") }
        guard value <= self.remaining / max(1, minimumElementSize) else {
            throw self.error("count \(value) larger than the \(self.remaining) bytes left allow")
        }
        return value
    }

    /// Bytes with a u32 length prefix, at most `bound` of them.
    public mutating func blob(bound: Int = Int(Int32.max)) throws(StateDecodingError) -> [UInt8] {
        let length = Int(try self.u32())
        guard length <= bound else { throw self.error("length \(length) above its bound \(bound)") }
        return Array(try self.take(length, "a blob"))
    }

    /// A UTF-8 string with a u32 length prefix, at most `bound` bytes; invalid UTF-8 throws.
    public mutating func string(bound: Int = 65_536) throws(StateDecodingError) -> String {
        let bytes = try self.blob(bound: bound)
        guard let text = String(validating: bytes, as: UTF8.self) else { throw self.error("a string is not UTF-8") }
        return text
    }

    /// Exactly `count` raw bytes.
    public mutating func raw(_ count: Int) throws(StateDecodingError) -> [UInt8] {
        Array(try self.take(count, "raw bytes"))
    }

    /// Throws unless every byte was read.
    public func expectEnd() throws(StateDecodingError) {
        guard self.isAtEnd else { throw self.error("\(self.remaining) bytes left over") }
    }
}
