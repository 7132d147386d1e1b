#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A small file named on the command line (a TLS certificate or key, the admin token), read whole at
/// start together with its permission bits, so that the caller can refuse one others may read.
public struct ConfigurationFile: Sendable {
    /// The file's bytes.
    public var bytes: [UInt8]
    /// Its permission bits (`st_mode & 0o7777`), from the descriptor that was read.
    public var permissions: UInt32

    /// Whether the group or others have any access (read, write or execute) to the file.
    public var isAccessibleToOthers: Bool { self.permissions & 0o077 != 0 }

    /// Reads `path` (a regular file of at most `limit` bytes).
    /// - Throws: `SystemError` (`open`, `fstat`, `read`), with EISDIR or EINVAL for something that is
    ///   not a regular file, and EFBIG for a file larger than `limit`.
    @inline(never)
    public static func read(_ path: String, limit: Int = 1 << 20) throws(SystemError) -> ConfigurationFile {
        let fd = try System.syscall("open", foreignDescriptor: true) { open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY) }
        defer { System.close(fd) }
        var status = stat()
        _ = try System.syscall("fstat", foreignDescriptor: true) { fstat(fd, &status) }
        let type = UInt32(status.st_mode) & UInt32(S_IFMT)
        if type == UInt32(S_IFDIR) { throw SystemError("read", errno: EISDIR) }
        guard type == UInt32(S_IFREG) else { throw SystemError("read", errno: EINVAL) }
        var bytes = [UInt8](repeating: 0, count: limit + 1)
        var filled = 0
        while filled < bytes.count {
            let start = filled
            let result = bytes.withUnsafeMutableBytes { raw in
                Result { () throws(SystemError) in
                    try System.syscall("read", foreignDescriptor: true) {
                        Glibc.read(fd, raw.baseAddress.map { $0 + start }, raw.count - start)
                    }
                }
            }
            let count = try result.get()
            if count == 0 { break }
            filled += count
        }
        guard filled <= limit else { throw SystemError("read", errno: EFBIG) }
        return ConfigurationFile(bytes: Array(bytes[..<filled]), permissions: UInt32(status.st_mode) & 0o7777)
    }
}
