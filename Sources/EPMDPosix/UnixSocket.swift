import CEPMDSystem

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Unix stream sockets with descriptor passing (`SCM_RIGHTS`) and peer credentials (`SO_PEERCRED`):
/// the hand-over between two gateway processes. Every descriptor made here is close-on-exec.
public enum UnixSocket {
    /// The most descriptors one message carries (the kernel's limit, SCM_MAX_FD).
    public static let maxDescriptorsPerMessage = Int(CEPMD_MAX_FDS_PER_MESSAGE)

    /// Who is at the other end of a Unix socket (`SO_PEERCRED`, as of its `connect`).
    public struct Credentials: Equatable, Sendable {
        public var pid: Int32
        public var uid: UInt32
        public var gid: UInt32
    }

    /// This process's real user id.
    public static var userID: UInt32 { getuid() }

    /// A socket address for `path`, or nil when the path does not fit `sun_path` (107 bytes).
    private static func withAddress<R>(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R? {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard !bytes.isEmpty, bytes.count < capacity, !bytes.contains(0) else { return nil }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + 1)
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, length) }
        }
    }

    @inline(never)
    private static func makeSocket(nonBlocking: Bool) throws(SystemError) -> Int32 {
        var type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        if nonBlocking { type |= Int32(SOCK_NONBLOCK.rawValue) }
        return try System.syscall("socket") { Glibc.socket(AF_UNIX, type, 0) }
    }

    /// Creates the directory of `path` (mode 0700) when it is missing, one level only, and its parents
    /// with the same mode.
    @inline(never)
    public static func makeParentDirectory(of path: String) throws(SystemError) {
        guard let slash = path.utf8.lastIndex(of: UInt8(ascii: "/")), slash != path.utf8.startIndex else { return }
        let directory = String(path[..<slash])
        var status = stat()
        if stat(directory, &status) == 0 { return }
        try self.makeParentDirectory(of: directory)
        let result = mkdir(directory, 0o700)
        if result != 0 && errno != EEXIST { throw SystemError("mkdir \(directory)", errno: errno) }
    }

    /// Listens on `path` (non-blocking, mode 0600, its directory made 0700 when missing). A socket file
    /// left by a process that is gone (nothing answers on it) is replaced; one that answers is not.
    /// - Returns: the listening descriptor.
    /// - Throws: `SystemError` (EADDRINUSE when a live process listens there, ENAMETOOLONG for a path
    ///   that does not fit).
    @inline(never)
    public static func listen(path: String, backlog: Int32 = 8) throws(SystemError) -> Int32 {
        try self.makeParentDirectory(of: path)
        let fd = try self.makeSocket(nonBlocking: true)
        do throws(SystemError) {
            if try !self.bind(fd, path) {
                // Something is there: a live listener, or a stale file.
                if let probe = try? self.connect(path: path) {
                    System.close(probe)
                    throw SystemError("bind \(path)", errno: EADDRINUSE)
                }
                _ = Glibc.unlink(path)
                guard try self.bind(fd, path) else { throw SystemError("bind \(path)", errno: EADDRINUSE) }
            }
            _ = try System.syscall("chmod") { chmod(path, 0o600) }
            try System.listen(fd, backlog: backlog)
            return fd
        } catch {
            System.close(fd)
            throw error
        }
    }

    /// - Returns: false for EADDRINUSE.
    @inline(never)
    private static func bind(_ fd: Int32, _ path: String) throws(SystemError) -> Bool {
        guard let result = self.withAddress(path, { Glibc.bind(fd, $0, $1) }) else {
            throw SystemError("bind \(path)", errno: ENAMETOOLONG)
        }
        if result == 0 { return true }
        let code = errno
        if code == EADDRINUSE { return false }
        throw SystemError("bind \(path)", errno: code)
    }

    /// Connects to `path` (a blocking socket).
    /// - Throws: `SystemError` (ENOENT, ECONNREFUSED, EACCES...).
    @inline(never)
    public static func connect(path: String) throws(SystemError) -> Int32 {
        let fd = try self.makeSocket(nonBlocking: false)
        while true {
            guard let result = self.withAddress(path, { Glibc.connect(fd, $0, $1) }) else {
                System.close(fd)
                throw SystemError("connect \(path)", errno: ENAMETOOLONG)
            }
            if result == 0 { return fd }
            let code = errno
            if code == EINTR { continue }
            System.close(fd)
            throw SystemError("connect \(path)", errno: code)
        }
    }

    /// The device and inode of the file at `path` (nil when there is none).
    @inline(never)
    public static func fileIdentity(path: String) -> (device: UInt64, inode: UInt64)? {
        var status = stat()
        guard stat(path, &status) == 0 else { return nil }
        return (UInt64(status.st_dev), UInt64(status.st_ino))
    }

    /// Removes the file at `path` if it is still the one identified by `identity` (see
    /// `fileIdentity(path:)`), so that a successor's socket file is never removed.
    @inline(never)
    public static func unlink(path: String, ifIdentity identity: (device: UInt64, inode: UInt64)) {
        guard let now = self.fileIdentity(path: path), now == identity else { return }
        _ = Glibc.unlink(path)
    }

    /// The peer's credentials (`SO_PEERCRED`).
    @inline(never)
    public static func peerCredentials(_ fd: Int32) throws(SystemError) -> Credentials {
        var pid: Int32 = 0
        var uid: UInt32 = 0
        var gid: UInt32 = 0
        _ = try System.syscall("getsockopt") { cepmd_peer_credentials(fd, &pid, &uid, &gid) }
        return Credentials(pid: pid, uid: uid, gid: gid)
    }

    /// Makes `fd` blocking, with send and receive timeouts (each call fails with EAGAIN past it).
    @inline(never)
    public static func setBlocking(_ fd: Int32, timeoutMilliseconds: Int) throws(SystemError) {
        let flags = try System.syscall("fcntl") { fcntl(fd, F_GETFL) }
        _ = try System.syscall("fcntl") { fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) }
        var timeout = timeval(
            tv_sec: timeoutMilliseconds / 1000,
            tv_usec: (timeoutMilliseconds % 1000) * 1000
        )
        let size = socklen_t(MemoryLayout<timeval>.size)
        _ = try System.syscall("setsockopt") { setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, size) }
        _ = try System.syscall("setsockopt") { setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, size) }
    }

    /// Sends all of `bytes`, with `descriptors` (at most `maxDescriptorsPerMessage`) attached to the
    /// first byte. Blocking (timeouts from `setBlocking`).
    @inline(never)
    public static func send(_ fd: Int32, _ bytes: [UInt8], descriptors: [Int32] = []) throws(SystemError) {
        guard !bytes.isEmpty else { return }
        var offset = 0
        while offset < bytes.count {
            let start = offset
            let attached = start == 0 ? descriptors : []
            let result = bytes.withUnsafeBytes { raw in
                attached.withUnsafeBufferPointer { fds in
                    Result { () throws(SystemError) in
                        try System.syscall("sendmsg", foreignDescriptor: true) {
                            cepmd_send_with_fds(
                                fd,
                                raw.baseAddress.map { $0 + start },
                                raw.count - start,
                                fds.baseAddress,
                                Int32(fds.count)
                            )
                        }
                    }
                }
            }
            offset += try result.get()
        }
    }

    /// Receives exactly `count` bytes (blocking), and every descriptor that came with them.
    /// - Throws: `SystemError` (EAGAIN past the timeout, ECONNRESET; EPIPE for an end of file first;
    ///   EPROTO when descriptors were lost: more than the capacity, or truncated by the kernel).
    @inline(never)
    public static func receive(
        _ fd: Int32,
        count: Int,
        descriptorCapacity: Int = 0
    ) throws(SystemError) -> (bytes: [UInt8], descriptors: [Int32]) {
        var bytes = [UInt8](repeating: 0, count: count)
        var descriptors: [Int32] = []
        var offset = 0
        var lost = false
        var scratch = [Int32](repeating: -1, count: Self.maxDescriptorsPerMessage)
        while offset < count {
            let start = offset
            var received: Int32 = 0
            var truncated: Int32 = 0
            let room = max(0, descriptorCapacity - descriptors.count)
            let result = bytes.withUnsafeMutableBytes { raw in
                scratch.withUnsafeMutableBufferPointer { fds in
                    Result { () throws(SystemError) in
                        try System.syscall("recvmsg", foreignDescriptor: true) {
                            cepmd_receive_with_fds(
                                fd,
                                raw.baseAddress.map { $0 + start },
                                raw.count - start,
                                fds.baseAddress,
                                Int32(min(room, fds.count)),
                                &received,
                                &truncated
                            )
                        }
                    }
                }
            }
            let read: Int
            do throws(SystemError) {
                read = try result.get()
            } catch {
                for descriptor in descriptors { System.close(descriptor) }
                throw error
            }
            descriptors += scratch.prefix(Int(received))
            if truncated != 0 { lost = true }
            if read == 0 {
                for descriptor in descriptors { System.close(descriptor) }
                throw SystemError("recvmsg (end of file)", errno: EPIPE)
            }
            offset += read
        }
        if lost {
            for descriptor in descriptors { System.close(descriptor) }
            throw SystemError("recvmsg (descriptors lost)", errno: EPROTO)
        }
        return (bytes, descriptors)
    }

    /// A duplicate of `fd`, close-on-exec.
    @inline(never)
    public static func duplicate(_ fd: Int32) throws(SystemError) -> Int32 {
        try System.syscall("fcntl") { fcntl(fd, F_DUPFD_CLOEXEC, 3) }
    }

    /// Starts `path` again as a child that inherits descriptors 0-2 only (every other is closed),
    /// with a cleared signal mask.
    /// - Returns: the child's pid.
    @inline(never)
    public static func spawnChild(
        path: String,
        arguments: [String],
        environment: [String]
    ) throws(SystemError)
        -> Int32
    {
        let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup($0) } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        var pid: Int32 = -1
        let result = cepmd_spawn_child(path, argv, envp, &pid)
        guard result == 0 else { throw SystemError("posix_spawn", errno: result) }
        return pid
    }
}
