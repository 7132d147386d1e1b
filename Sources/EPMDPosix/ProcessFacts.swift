#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// What the kernel says about this process, for the `process_*` metrics: small `/proc/self` files, the
/// descriptor limit, and two ways of counting open descriptors. Parsing stays with the caller.
public enum ProcessFacts {
    /// Clock ticks per second (`_SC_CLK_TCK`), 100 when unknown.
    public static var clockTicksPerSecond: Double {
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        return ticks > 0 ? ticks : 100
    }

    /// The page size in bytes (`_SC_PAGESIZE`), 4096 when unknown.
    public static var pageSize: Double {
        let page = Double(sysconf(Int32(_SC_PAGESIZE)))
        return page > 0 ? page : 4096
    }

    /// The soft `RLIMIT_NOFILE`, nil when it cannot be read.
    @inline(never)
    public static func descriptorSoftLimit() -> UInt? {
        var limit = rlimit()
        return getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 ? UInt(limit.rlim_cur) : nil
    }

    /// Reads a file of at most `limit` bytes (`/proc/self/stat` or `status`), nil on any error.
    @inline(never)
    public static func readSmallFile(_ path: String, limit: Int = 8192) -> [UInt8]? {
        guard let fd = try? System.syscall("open", { open(path, O_RDONLY | O_CLOEXEC) }) else { return nil }
        defer { System.close(fd) }
        var buffer = [UInt8](repeating: 0, count: limit)
        var filled = 0
        while filled < buffer.count {
            let start = filled
            let result = buffer.withUnsafeMutableBytes { raw in
                Result { () throws(SystemError) in
                    try System.syscall("read") { read(fd, raw.baseAddress.map { $0 + start }, raw.count - start) }
                }
            }
            guard case .success(let count) = result else { return nil }
            if count == 0 { break }
            filled += count
        }
        return Array(buffer[..<filled])
    }

    /// Polls descriptors `0 ..< slots` once, without waiting, and counts those not flagged POLLNVAL.
    /// - Returns: the count, or nil when `poll` fails.
    @inline(never)
    public static func countOpenDescriptorsByPoll(slots: Int) -> Int? {
        guard slots > 0 else { return nil }
        var entries = [pollfd](repeating: pollfd(fd: 0, events: 0, revents: 0), count: slots)
        for index in 0..<slots { entries[index].fd = Int32(index) }
        let result = entries.withUnsafeMutableBufferPointer { buffer -> Int32 in
            guard let base = buffer.baseAddress else { return -1 }
            return poll(base, nfds_t(buffer.count), 0)
        }
        guard result >= 0 else { return nil }
        let invalid = Int16(POLLNVAL)
        var count = 0
        for entry in entries where entry.revents & invalid == 0 { count += 1 }
        return count
    }

    /// Counts the entries of `/proc/self/fd`, leaving out the directory's own descriptor.
    @inline(never)
    public static func countOpenDescriptorsByListing() -> Int? {
        guard let directory = opendir("/proc/self/fd") else { return nil }
        defer { closedir(directory) }
        let own = dirfd(directory)
        var count = 0
        while let entry = readdir(directory) {
            let fd = withUnsafeBytes(of: entry.pointee.d_name) { raw -> Int32? in
                var value: Int32 = 0
                var digits = 0
                for byte in raw {
                    if byte == 0 { break }
                    guard byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"), digits < 10 else { return nil }
                    value = value &* 10 &+ Int32(byte - UInt8(ascii: "0"))
                    digits += 1
                }
                return digits > 0 ? value : nil
            }
            if let fd, fd != own { count += 1 }
        }
        return count
    }
}
