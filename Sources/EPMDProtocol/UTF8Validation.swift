/// Strict UTF-8 checks as epmd applies them to node names.
public enum UTF8Validation {
    /// Counts the code points of `bytes` if they are strict UTF-8: no overlong forms, no surrogates,
    /// nothing above U+10FFFF, no truncated sequence.
    /// - Parameter bytes: the bytes to check.
    /// - Returns: the number of code points, or `nil` when the bytes are not valid UTF-8.
    public static func codePointCount(_ bytes: [UInt8]) -> Int? {
        self.codePointCount(bytes.span)
    }

    /// Counts the code points of `bytes` if they are strict UTF-8 (see the array overload).
    public static func codePointCount(_ bytes: ArraySlice<UInt8>) -> Int? {
        self.codePointCount(bytes.span)
    }

    /// Counts the code points of `bytes` if they are strict UTF-8 (see the array overload).
    public static func codePointCount(_ bytes: Span<UInt8>) -> Int? {
        var count = 0
        var index = 0
        while index != bytes.count {
            let lead = bytes[index]
            let width: Int
            let minimumSecond: UInt8
            let maximumSecond: UInt8
            switch lead {
            case 0x00...0x7F:
                width = 1
                minimumSecond = 0x80
                maximumSecond = 0xBF
            case 0xC2...0xDF:
                width = 2
                minimumSecond = 0x80
                maximumSecond = 0xBF
            case 0xE0:
                width = 3
                minimumSecond = 0xA0
                maximumSecond = 0xBF
            case 0xE1...0xEC, 0xEE...0xEF:
                width = 3
                minimumSecond = 0x80
                maximumSecond = 0xBF
            case 0xED:
                width = 3
                minimumSecond = 0x80
                maximumSecond = 0x9F
            case 0xF0:
                width = 4
                minimumSecond = 0x90
                maximumSecond = 0xBF
            case 0xF1...0xF3:
                width = 4
                minimumSecond = 0x80
                maximumSecond = 0xBF
            case 0xF4:
                width = 4
                minimumSecond = 0x80
                maximumSecond = 0x8F
            default:
                return nil
            }
            index += 1
            for position in 1..<width {
                guard index != bytes.count else { return nil }
                let byte = bytes[index]
                if position == 1 {
                    guard byte >= minimumSecond && byte <= maximumSecond else { return nil }
                } else {
                    guard byte & 0xC0 == 0x80 else { return nil }
                }
                index += 1
            }
            count += 1
        }
        return count
    }
}
