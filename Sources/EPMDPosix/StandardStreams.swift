#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// stdout and stderr as byte sinks: one `write(2)` sequence per call, no stdio buffering, errors
/// ignored (as a C program's output is when its reader has gone).
public enum StandardStreams {
    /// Writes `bytes` to standard output (descriptor 1).
    public static func writeOutput(_ bytes: [UInt8]) {
        try? System.writeAll(1, bytes)
    }

    /// Writes `bytes` to standard error (descriptor 2).
    public static func writeError(_ bytes: [UInt8]) {
        try? System.writeAll(2, bytes)
    }
}
