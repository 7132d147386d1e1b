import CLibFuzzer

/// Reads a fuzzer's input as a stream of small decisions: bytes, bounded numbers and byte strings.
/// Running out of input yields zeros and empty strings, never a trap.
public struct FuzzInput {
    private let bytes: [UInt8]
    private var offset = 0

    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    /// Whether every byte has been read.
    public var isAtEnd: Bool { self.offset >= self.bytes.count }

    /// The bytes not read yet.
    public var remaining: ArraySlice<UInt8> { self.bytes[min(self.offset, self.bytes.count)...] }

    /// The next byte, or 0 at the end.
    public mutating func byte() -> UInt8 {
        guard self.offset < self.bytes.count else { return 0 }
        defer { self.offset += 1 }
        return self.bytes[self.offset]
    }

    /// A number in `0..<bound` (`bound` at least 1).
    public mutating func number(below bound: Int) -> Int {
        Int(self.byte()) % max(1, bound)
    }

    /// The next `count` bytes (fewer at the end).
    public mutating func take(_ count: Int) -> [UInt8] {
        let start = min(self.offset, self.bytes.count)
        let end = min(self.bytes.count, start + max(0, count))
        self.offset = end
        return Array(self.bytes[start..<end])
    }

    /// The bytes up to the next `separator` (which is consumed), or to the end.
    public mutating func field(separator: UInt8) -> [UInt8] {
        let start = min(self.offset, self.bytes.count)
        let end = self.bytes[start...].firstIndex(of: separator) ?? self.bytes.count
        self.offset = min(self.bytes.count, end + 1)
        return Array(self.bytes[start..<end])
    }

    /// The bytes not read yet, consumed.
    public mutating func rest() -> [UInt8] {
        defer { self.offset = self.bytes.count }
        return Array(self.remaining)
    }
}

/// Stops the fuzzer with a message: an invariant broke. libFuzzer records the input as a crash.
public func fuzzCheck(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError("fuzz invariant: \(message())") }
}

/// Runs libFuzzer with the process's arguments, calling `body` on each input. Called from a target's
/// `<Target>_main`, the symbol SwiftPM links as the program's `main`.
public func runFuzzer(
    argc: CInt,
    argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>,
    _ body: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt {
    var count = argc
    var arguments: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = argv
    return LLVMFuzzerRunDriver(&count, &arguments, body)
}

/// The input libFuzzer passes, as an array (an empty input may come with a null pointer).
public func fuzzBytes(_ data: UnsafePointer<UInt8>?, _ count: Int) -> [UInt8] {
    guard let data, count > 0 else { return [] }
    return Array(UnsafeBufferPointer(start: data, count: count))
}
