/// The one place where numbers read from the network become integers: query values (`index`, `wait`,
/// `type`), the `Last-Event-ID` header and its `lastEventId` query form. Every parser here is bounded
/// (a digit count and a maximum) and overflow-checked, accepts ASCII digits only (no sign, no
/// whitespace, no other Unicode digits), and returns `nil` for anything the contract
/// (`openapi/openapi.yaml`) does not allow, so no request text can trap the process.
///
/// `scripts/lint-numbers` keeps it the only place: every other file of `GatewayHTTP` is refused if it
/// calls an unlabeled integer or floating-point initializer (`Int(text)`, `UInt64(x)`, `Double(n)`).
/// The few conversions of values that are not request text live here too, written so they cannot trap.
public enum RequestNumber {
    /// The longest a long-poll request waits, whatever it asks.
    public static let maximumWait = 60

    /// A decimal number of 1 to `maxDigits` ASCII digits, at most `max`.
    /// - Parameters:
    ///   - text: the UTF-8 bytes as sent.
    ///   - maxDigits: the most digits accepted (leading zeros count).
    ///   - max: the largest value accepted.
    /// - Returns: the value, or `nil` for an empty text, a non-digit, too many digits, or a value over `max`.
    public static func decimal(_ text: some Collection<UInt8>, maxDigits: Int, max: UInt64) -> UInt64? {
        guard !text.isEmpty, text.count <= maxDigits else { return nil }
        var value: UInt64 = 0
        for byte in text {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            let (shifted, overflowShift) = value.multipliedReportingOverflow(by: 10)
            let (sum, overflowAdd) = shifted.addingReportingOverflow(UInt64(truncatingIfNeeded: byte &- 48))
            guard !overflowShift, !overflowAdd, sum <= max else { return nil }
            value = sum
        }
        return value
    }

    /// `index`: a registry generation, `^[0-9]{1,19}$`.
    public static func generation(_ text: some Collection<UInt8>) -> UInt64? {
        self.decimal(text, maxDigits: 19, max: UInt64.max)
    }

    /// `wait`: `^[0-9]{1,9}[sm]?$` (seconds, or minutes with `m`), clamped to ``maximumWait``.
    /// - Returns: the seconds to wait (0 means answer at once), or `nil` when the text breaks the pattern.
    public static func waitSeconds(_ text: some Collection<UInt8>) -> Int? {
        var digits = ArraySlice(text)
        var scale: UInt64 = 1
        if let unit = digits.last, unit == UInt8(ascii: "s") || unit == UInt8(ascii: "m") {
            digits = digits.dropLast()
            if unit == UInt8(ascii: "m") { scale = 60 }
        }
        guard let count = self.decimal(digits, maxDigits: 9, max: 999_999_999) else { return nil }
        let (seconds, overflow) = count.multipliedReportingOverflow(by: scale)
        let limit = UInt64(truncatingIfNeeded: self.maximumWait)
        return Int(truncatingIfNeeded: overflow || seconds > limit ? limit : seconds)
    }

    /// A node type code in the `type` query: `^([0-9]{1,2}|[01][0-9]{2}|2[0-4][0-9]|25[0-5])$`, that is
    /// 1 to 3 digits, at most 255 (`normal` and `hidden` are matched by the caller).
    public static func typeCode(_ text: some Collection<UInt8>) -> UInt8? {
        self.decimal(text, maxDigits: 3, max: 255).map { UInt8(truncatingIfNeeded: $0) }
    }

    /// An event id (`Last-Event-ID`, `lastEventId`): 1 to 20 digits, at most `UInt64.max`; spaces around
    /// it are ignored (`EventSource` clients send the id as received).
    public static func eventID(_ text: some Collection<UInt8>) -> UInt64? {
        var bytes = ArraySlice(text)
        while bytes.first == UInt8(ascii: " ") { bytes = bytes.dropFirst() }
        while bytes.last == UInt8(ascii: " ") { bytes = bytes.dropLast() }
        return self.decimal(bytes, maxDigits: 20, max: UInt64.max)
    }

    // MARK: - Conversions that are not request text

    /// Nanoseconds as seconds, for latency observations.
    static func seconds(nanoseconds: UInt64) -> Double { Double(nanoseconds) / 1e9 }

    /// A `Double` of an integer count (exact below 2^53; rounded above, never a trap).
    static func double(_ value: Int) -> Double { Double(value) }
}
