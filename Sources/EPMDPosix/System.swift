import CEPMDSystem

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The one place that makes system calls for the epmd loop. Every call goes through `syscall`,
/// which retries EINTR and turns errno into a typed `SystemError`; EAGAIN is reported as `nil`
/// where the caller can meet it.
///
/// errno is read in the helper right after the call returns, and the wrappers that make the calls are
/// `@inline(never)` (as swift-nio's `System.swift` does), so no retain, release or allocation of the
/// caller's can run between the call and the read and overwrite errno. EBADF and EFAULT mean the
/// program passed a descriptor or a buffer it does not own: programmer errors, which stop the process
/// (`preconditionFailure`) instead of being handled as I/O failures.
public enum System {
    /// Runs `body` until it stops failing with EINTR.
    /// - Parameters:
    ///   - name: the call's name for the error.
    ///   - foreignDescriptor: the descriptor is not the program's own (stdin/stdout/stderr, a
    ///     descriptor named by the environment): EBADF is then an error like any other, since whoever
    ///     started the process may have closed it (`2>&-`).
    ///   - body: the call; a negative result means failure with errno set.
    /// - Returns: the non-negative result.
    /// - Throws: `SystemError` for any failure other than EINTR.
    @inline(__always)
    public static func syscall<T: FixedWidthInteger>(
        _ name: String,
        foreignDescriptor: Bool = false,
        _ body: () -> T
    ) throws(SystemError) -> T {
        while true {
            let result = body()
            if result >= 0 { return result }
            let code = errno
            if code == EINTR { continue }
            if code == EFAULT || (code == EBADF && !foreignDescriptor) {
                preconditionFailure(
                    "\(name) failed with errno \(code): a descriptor or buffer the program does not own"
                )
            }
            throw SystemError(name, errno: code)
        }
    }

    /// Like `syscall`, but EAGAIN/EWOULDBLOCK gives `nil` instead of an error.
    @inline(__always)
    public static func nonBlockingSyscall<T: FixedWidthInteger>(
        _ name: String,
        _ body: () -> T
    ) throws(SystemError) -> T? {
        do {
            return try self.syscall(name, body)
        } catch {
            if error.errno == EAGAIN || error.errno == EWOULDBLOCK { return nil }
            throw error
        }
    }

    // MARK: - Descriptors

    public static func close(_ fd: Int32) {
        // close() must not be retried on EINTR on Linux: the descriptor is gone either way.
        _ = Glibc.close(fd)
    }

    /// A pipe, both ends close-on-exec from the start (`pipe2`): no program that another thread starts
    /// meanwhile inherits one.
    /// - Returns: the read end and the write end.
    /// - Throws: `SystemError` from `pipe2`.
    @inline(never)
    public static func makePipe() throws(SystemError) -> (read: Int32, write: Int32) {
        var ends: [Int32] = [-1, -1]
        _ = try self.syscall("pipe2") { ends.withUnsafeMutableBufferPointer { cepmd_pipe2($0.baseAddress, O_CLOEXEC) } }
        return (ends[0], ends[1])
    }

    @inline(never)
    public static func setNonBlocking(_ fd: Int32) throws(SystemError) {
        let flags = try self.syscall("fcntl") { fcntl(fd, F_GETFL) }
        _ = try self.syscall("fcntl") { fcntl(fd, F_SETFL, flags | O_NONBLOCK) }
    }

    /// Whether `fd` is an open descriptor (an inherited one is checked before use: a wrong
    /// `LISTEN_FDS` is an operator's mistake, not the program's).
    @inline(never)
    public static func isOpenDescriptor(_ fd: Int32) -> Bool {
        fcntl(fd, F_GETFD) >= 0
    }

    /// Reads into the start of `buffer`, at most `maxCount` bytes (and at most `buffer.count`).
    /// - Returns: the byte count (0 = EOF), or `nil` when nothing is ready.
    /// - Throws: `SystemError` for a failed read (a reset connection).
    @inline(never)
    public static func read(_ fd: Int32, into buffer: inout [UInt8], maxCount: Int) throws(SystemError) -> Int? {
        let count = max(0, min(maxCount, buffer.count))
        let result = buffer.withUnsafeMutableBytes { raw in
            Result { () throws(SystemError) in
                try self.nonBlockingSyscall("read") { Glibc.read(fd, raw.baseAddress, count) }
            }
        }
        return try result.get()
    }

    /// Sends `bytes[offset...]` without SIGPIPE.
    /// - Returns: the count written, or `nil` when the socket buffer is full.
    /// - Throws: `SystemError` for a failed send (a reset connection, a broken pipe).
    @inline(never)
    public static func send(_ fd: Int32, _ bytes: [UInt8], from offset: Int = 0) throws(SystemError) -> Int? {
        guard offset < bytes.count else { return 0 }
        let result = bytes.withUnsafeBytes { raw in
            Result { () throws(SystemError) in
                try self.nonBlockingSyscall("send") {
                    Glibc.send(fd, raw.baseAddress.map { $0 + offset }, raw.count - offset, Int32(MSG_NOSIGNAL))
                }
            }
        }
        return try result.get()
    }

    /// Reads into `buffer`. Returns the byte count (0 = EOF), or `nil` when nothing is ready.
    @inline(never)
    public static func read(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer) throws(SystemError) -> Int? {
        try self.nonBlockingSyscall("read") { Glibc.read(fd, buffer.baseAddress, buffer.count) }
    }

    /// Sends bytes without SIGPIPE. Returns the count written, or `nil` when the socket buffer is full.
    @inline(never)
    public static func send(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) throws(SystemError) -> Int? {
        try self.nonBlockingSyscall("send") { Glibc.send(fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL)) }
    }

    /// Whether the peer of a connected socket has closed it (EOF, or a reset), seen without consuming
    /// anything: `recv` with `MSG_PEEK | MSG_DONTWAIT`. False while it is open with nothing to read, and
    /// when bytes are waiting (they are the caller's to read).
    @inline(never)
    public static func peerHasClosed(_ fd: Int32) -> Bool {
        var byte: UInt8 = 0
        do {
            let count = try self.nonBlockingSyscall("recv") {
                Glibc.recv(fd, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT))
            }
            return count == 0
        } catch {
            return true  // ECONNRESET, ETIMEDOUT...: the connection is over
        }
    }

    /// Writes all of `bytes` to a blocking descriptor (stderr, a pipe), retrying partial writes. A closed
    /// descriptor is an error, never a trap: whoever started the process may have closed stderr.
    @inline(never)
    public static func writeAll(_ fd: Int32, _ bytes: [UInt8]) throws(SystemError) {
        var offset = 0
        while offset < bytes.count {
            let start = offset
            let result = bytes.withUnsafeBytes { raw in
                Result { () throws(SystemError) in
                    try self.syscall("write", foreignDescriptor: true) {
                        Glibc.write(fd, raw.baseAddress.map { $0 + start }, raw.count - start)
                    }
                }
            }
            let written = try result.get()
            guard written > 0 else { return }
            offset += written
        }
    }

    /// Opens `/dev/null` read-only: the descriptor kept in reserve for when the process runs out.
    @inline(never)
    public static func openReserve() -> Int32? {
        try? self.syscall("open") { open("/dev/null", O_RDONLY | O_CLOEXEC) }
    }

    /// Adds one to an eventfd counter (wakes a loop waiting on it).
    @inline(never)
    public static func signalEvent(_ fd: Int32) {
        var one: UInt64 = 1
        _ = try? self.syscall("write") { Glibc.write(fd, &one, 8) }
    }

    /// Resets an eventfd counter.
    @inline(never)
    public static func drainEvent(_ fd: Int32) {
        var value: UInt64 = 0
        _ = try? self.nonBlockingSyscall("read") { Glibc.read(fd, &value, 8) }
    }

    /// Reads one pending signal from a signalfd, or `nil` when none is pending.
    @inline(never)
    public static func readSignal(_ fd: Int32) -> UInt32? {
        var info = signalfd_siginfo()
        let size = MemoryLayout<signalfd_siginfo>.size
        guard let count = try? self.nonBlockingSyscall("read", { Glibc.read(fd, &info, size) }), count == size else {
            return nil
        }
        return info.ssi_signo
    }

    /// Sleeps whole seconds (`-delay_accept`), resuming after signals.
    public static func sleepSeconds(_ seconds: Int) {
        var request = timespec(tv_sec: seconds, tv_nsec: 0)
        var remaining = timespec()
        while nanosleep(&request, &remaining) != 0 && errno == EINTR { request = remaining }
    }

    /// Sleeps `milliseconds`, resuming after signals.
    public static func sleepMilliseconds(_ milliseconds: Int) {
        var request = timespec(tv_sec: milliseconds / 1000, tv_nsec: (milliseconds % 1000) * 1_000_000)
        var remaining = timespec()
        while nanosleep(&request, &remaining) != 0 && errno == EINTR { request = remaining }
    }

    // MARK: - Sockets

    @inline(never)
    public static func socket(family: Int32) throws(SystemError) -> Int32 {
        try self.syscall("socket") {
            Glibc.socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        }
    }

    @inline(never)
    public static func setSocketOption(_ fd: Int32, level: Int32, name: Int32, value: Int32) throws(SystemError) {
        var value = value
        _ = try self.syscall("setsockopt") {
            setsockopt(fd, level, name, &value, socklen_t(MemoryLayout<Int32>.size))
        }
    }

    @inline(never)
    public static func bind(_ fd: Int32, _ address: SocketAddress) throws(SystemError) {
        _ = try self.syscall("bind") {
            address.withSockaddr { Glibc.bind(fd, $0, $1) }
        }
    }

    @inline(never)
    public static func listen(_ fd: Int32, backlog: Int32) throws(SystemError) {
        _ = try self.syscall("listen") { Glibc.listen(fd, backlog) }
    }

    /// Accepts one connection (non-blocking, close-on-exec). Returns `nil` when none is pending.
    @inline(never)
    public static func accept(_ fd: Int32) throws(SystemError) -> (fd: Int32, peer: SocketAddress)? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let flags = Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        let accepted = try withUnsafeMutablePointer(to: &storage) { pointer throws(SystemError) in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address throws(SystemError) in
                try self.nonBlockingSyscall("accept4") { cepmd_accept4(fd, address, &length, flags) }
            }
        }
        guard let accepted else { return nil }
        return (accepted, SocketAddress(storage: storage))
    }

    @inline(never)
    public static func localAddress(_ fd: Int32) throws(SystemError) -> SocketAddress {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = try withUnsafeMutablePointer(to: &storage) { pointer throws(SystemError) in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address throws(SystemError) in
                try self.syscall("getsockname") { getsockname(fd, address, &length) }
            }
        }
        return SocketAddress(storage: storage)
    }

    /// An integer socket option (`getsockopt`), e.g. `SO_ACCEPTCONN`, `SO_TYPE`, `SO_DOMAIN`.
    /// - Throws: `SystemError` (ENOTSOCK for a descriptor that is not a socket, EBADF for a closed one).
    @inline(never)
    public static func socketOption(_ fd: Int32, level: Int32, name: Int32) throws(SystemError) -> Int32 {
        var value: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        _ = try self.syscall("getsockopt", foreignDescriptor: true) { getsockopt(fd, level, name, &value, &length) }
        return value
    }

    // MARK: - epoll, eventfd, signalfd

    @inline(never)
    public static func epollCreate() throws(SystemError) -> Int32 {
        try self.syscall("epoll_create1") { epoll_create1(Int32(EPOLL_CLOEXEC)) }
    }

    @inline(never)
    public static func epollControl(
        _ epfd: Int32,
        _ operation: Int32,
        _ fd: Int32,
        events: UInt32,
        data: UInt64
    ) throws(SystemError) {
        _ = try self.syscall("epoll_ctl") { cepmd_epoll_ctl(epfd, operation, fd, events, data) }
    }

    @inline(never)
    public static func epollWait(
        _ epfd: Int32,
        events: UnsafeMutablePointer<UInt32>,
        data: UnsafeMutablePointer<UInt64>,
        capacity: Int32,
        timeoutMilliseconds: Int32
    ) throws(SystemError) -> Int {
        // EINTR here means a signal arrived: report no events so the loop re-checks its state.
        do {
            return Int(
                try self.syscall("epoll_wait") {
                    let result = cepmd_epoll_wait(epfd, events, data, capacity, timeoutMilliseconds)
                    return result < 0 && errno == EINTR ? 0 : result
                }
            )
        }
    }

    @inline(never)
    public static func eventFD() throws(SystemError) -> Int32 {
        try self.syscall("eventfd") { eventfd(0, Int32(EFD_NONBLOCK) | Int32(EFD_CLOEXEC)) }
    }

    @inline(never)
    public static func signalFD(_ signals: [Int32]) throws(SystemError) -> Int32 {
        var set = sigset_t()
        sigemptyset(&set)
        for signal in signals { sigaddset(&set, signal) }
        return try self.syscall("signalfd") { signalfd(-1, &set, Int32(SFD_NONBLOCK) | Int32(SFD_CLOEXEC)) }
    }

    /// Blocks `signals` in the calling thread (and the threads it creates afterwards).
    public static func blockSignals(_ signals: [Int32]) {
        var set = sigset_t()
        sigemptyset(&set)
        for signal in signals { sigaddset(&set, signal) }
        pthread_sigmask(SIG_BLOCK, &set, nil)
    }

    /// Sends one preformatted line to syslog (`syslog()` itself is variadic).
    public static func syslog(priority: Int32, _ message: String) {
        cepmd_syslog(priority, message)
    }

    /// The device and inode of an open descriptor (`fstat`), as systemd writes them in `JOURNAL_STREAM`.
    @inline(never)
    public static func fileIdentity(_ fd: Int32) -> (device: UInt64, inode: UInt64)? {
        var status = stat()
        guard (try? self.syscall("fstat", foreignDescriptor: true) { fstat(fd, &status) }) != nil else { return nil }
        return (UInt64(status.st_dev), UInt64(status.st_ino))
    }

    /// The wall clock as `ctime_r` prints it, without the newline: `Wed Dec  2 05:17:57 2026`.
    public static func ctimeNow() -> String {
        var now = time(nil)
        var buffer = [CChar](repeating: 0, count: 64)
        guard ctime_r(&now, &buffer) != nil else { return "?" }
        return String(decoding: buffer.prefix { $0 != 0 && $0 != 10 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The monotonic clock in nanoseconds.
    public static func monotonicNanoseconds() -> UInt64 {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return UInt64(spec.tv_sec) * 1_000_000_000 + UInt64(spec.tv_nsec)
    }

    /// The soft descriptor limit (RLIMIT_NOFILE), at most `Int32.max` (also for "unlimited").
    public static func descriptorLimit() -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 1024 }
        return Int(min(UInt64(limit.rlim_cur), UInt64(Int32.max)))
    }

    /// Raises the soft descriptor limit to the hard limit (as many registrations as the system allows).
    /// Nothing is asked of the kernel when the soft limit is the hard one already (systemd's
    /// `LimitNOFILE=N` sets both), so a seccomp filter without `setrlimit` is not hit.
    /// - Throws: `SystemError` from `setrlimit` (EPERM under such a filter): the limit stays as it was.
    @inline(never)
    public static func raiseDescriptorLimit() throws(SystemError) {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
        limit.rlim_cur = limit.rlim_max
        _ = try self.syscall("setrlimit") { setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) }
    }
}
