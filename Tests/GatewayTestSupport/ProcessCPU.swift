import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The CPU time a process has used, from /proc/PID/stat (utime + stime).
public enum ProcessCPU {
    /// Seconds of CPU (user + system) used by `pid` so far, or nil if it cannot be read.
    public static func seconds(pid: pid_t) -> Double? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.range(of: ")", options: .backwards)
        else { return nil }
        // After "pid (comm)": state is field 3; utime and stime are fields 14 and 15.
        let fields = stat[close.upperBound...].split(separator: " ")
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}
