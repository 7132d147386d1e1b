import CEPMDSystem

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The real-time clock, for what is stated in Unix time (`process_start_time_seconds`).
public enum WallClock {
    /// Seconds since the Unix epoch, with the fraction.
    public static func seconds() -> Double {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return Double(spec.tv_sec) + Double(spec.tv_nsec) / 1e9
    }
}
