import CEPMDSystem

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// An anonymous memory file (`memfd_create`, close-on-exec), read and written by offset only
/// (`pread`/`pwrite`: the file offset is shared with every copy of the descriptor, such as the one
/// systemd's fd store keeps, so it is never used).
public struct MemoryFile: Sendable {
    /// The descriptor.
    public let descriptor: Int32

    /// Wraps a descriptor (one received from systemd, or from a hand-over); the caller checked it.
    public init(descriptor: Int32) {
        self.descriptor = descriptor
    }

    /// Makes a new empty memory file named `name` (shown in `/proc/PID/fd` as `memfd:NAME`).
    /// - Throws: `SystemError` from `memfd_create`.
    @inline(never)
    public static func create(name: String) throws(SystemError) -> MemoryFile {
        let fd = try System.syscall("memfd_create") { cepmd_memfd_create(name) }
        return MemoryFile(descriptor: fd)
    }

    /// Whether `fd` is a regular file (a memory file passed back is one; a socket is not).
    public static func isRegularFile(_ fd: Int32) -> Bool {
        var status = stat()
        guard fstat(fd, &status) == 0 else { return false }
        return status.st_mode & S_IFMT == S_IFREG
    }

    /// The file's size in bytes.
    @inline(never)
    public func size() throws(SystemError) -> Int {
        var status = stat()
        _ = try System.syscall("fstat", foreignDescriptor: true) { fstat(self.descriptor, &status) }
        return Int(status.st_size)
    }

    /// Writes all of `bytes` at `offset` (the file grows as needed).
    @inline(never)
    public func write(_ bytes: [UInt8], at offset: Int) throws(SystemError) {
        var written = 0
        while written < bytes.count {
            let count = try bytes.withUnsafeBytes { raw in
                Result { () throws(SystemError) in
                    try System.syscall("pwrite", foreignDescriptor: true) {
                        pwrite(
                            self.descriptor,
                            raw.baseAddress.map { $0 + written },
                            raw.count - written,
                            off_t(offset + written)
                        )
                    }
                }
            }.get()
            guard count > 0 else { throw SystemError("pwrite", errno: EIO) }
            written += count
        }
    }

    /// Reads up to `count` bytes at `offset` (fewer at the end of the file).
    @inline(never)
    public func read(count: Int, at offset: Int) throws(SystemError) -> [UInt8] {
        guard count > 0 else { return [] }
        var buffer = [UInt8](repeating: 0, count: count)
        var total = 0
        while total < count {
            let got = try buffer.withUnsafeMutableBytes { raw in
                Result { () throws(SystemError) in
                    try System.syscall("pread", foreignDescriptor: true) {
                        pread(self.descriptor, raw.baseAddress.map { $0 + total }, count - total, off_t(offset + total))
                    }
                }
            }.get()
            if got == 0 { break }
            total += got
        }
        return Array(buffer.prefix(total))
    }

    /// Sets the size (`ftruncate`).
    @inline(never)
    public func truncate(to size: Int) throws(SystemError) {
        _ = try System.syscall("ftruncate", foreignDescriptor: true) { ftruncate(self.descriptor, off_t(size)) }
    }

    /// Frees the memory of a byte range; it reads as zeros afterwards and the size is kept.
    @inline(never)
    public func punchHole(offset: Int, length: Int) throws(SystemError) {
        guard length > 0 else { return }
        _ = try System.syscall("fallocate", foreignDescriptor: true) {
            cepmd_punch_hole(self.descriptor, Int64(offset), Int64(length))
        }
    }
}
