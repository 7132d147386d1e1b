import Foundation

/// Wall-clock bounds of tests, scaled under a sanitizer: `scripts/sanitize` sets
/// `EPMD_TEST_TIME_SCALE` (ThreadSanitizer runs the gateway several times slower), a normal run keeps
/// each bound as written.
public enum TestTime {
    /// The factor from `EPMD_TEST_TIME_SCALE` (1 to 20), 1 when unset or out of range.
    public static let scale: Int = {
        guard let text = ProcessInfo.processInfo.environment["EPMD_TEST_TIME_SCALE"],
            let value = Int(text), (1...20).contains(value)
        else { return 1 }
        return value
    }()

    /// `duration` times the scale.
    public static func scaled(_ duration: Duration) -> Duration { duration * self.scale }
}
