import CEPMDSystem

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The process itself: its id, its environment, its signal dispositions, and the detached spawn of
/// daemon mode.
public enum ProcessControl {
    /// This process's id.
    public static var processID: Int32 { getpid() }

    /// The signals that stop the daemon: SIGTERM and SIGINT.
    public static let terminationSignals: [Int32] = [SIGTERM, SIGINT]

    /// The signals the epmd loop takes through its signalfd: the termination signals, and SIGUSR2
    /// (start a successor and hand over to it).
    public static let loopSignals: [Int32] = [SIGTERM, SIGINT, SIGUSR2]

    /// Blocks SIGTERM, SIGINT and SIGUSR2 in the calling thread and every thread it starts
    /// afterwards, so that the epmd loop's signalfd receives them. Call before any thread starts.
    public static func blockTerminationSignals() {
        System.blockSignals(self.loopSignals)
    }

    /// Ends the process now (`_exit`): no atexit handler, no buffered output, no socket shut down.
    public static func exitImmediately(_ status: Int32) -> Never {
        _exit(status)
    }

    /// Ignores SIGPIPE: a write to a closed socket or pipe fails with EPIPE instead of killing the process.
    public static func ignoreBrokenPipe() {
        signal(SIGPIPE, SIG_IGN)
    }

    /// The environment as `NAME=value` entries, in `environ`'s order.
    public static func environmentEntries() -> [String] {
        var result: [String] = []
        var pointer = environ
        while let entry = pointer.pointee {
            result.append(String(cString: entry))
            pointer += 1
        }
        return result
    }

    /// The environment as a dictionary (the first of duplicate names wins, as `getenv` finds it).
    public static func environment() -> [String: String] {
        var result: [String: String] = [:]
        for entry in self.environmentEntries() {
            guard let equals = entry.utf8.firstIndex(of: UInt8(ascii: "=")) else { continue }
            let name = String(entry[..<equals])
            if result[name] == nil { result[name] = String(entry[entry.index(after: equals)...]) }
        }
        return result
    }

    /// Removes `names` from the process environment (`unsetenv`), so that no program this process
    /// starts inherits them. Call before any thread starts (the environment is not thread-safe).
    public static func removeEnvironment(_ names: [String]) {
        for name in names { unsetenv(name) }
    }

    /// A pipe whose read end is close-on-exec and whose write end can be passed to a child.
    /// - Returns: the two descriptors.
    /// - Throws: `SystemError` from `pipe2`.
    @inline(never)
    public static func makeChildPipe() throws(SystemError) -> (read: Int32, write: Int32) {
        let ends = try System.makePipe()
        _ = fcntl(ends.write, F_SETFD, 0)
        return ends
    }

    /// Waits until `fd` is readable or at end of file, at most `milliseconds`.
    /// - Returns: whether it became readable in time.
    @inline(never)
    @discardableResult
    public static func waitReadable(_ fd: Int32, milliseconds: Int32) -> Bool {
        var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return ((try? System.syscall("poll") { poll(&entry, 1, milliseconds) }) ?? 0) > 0
    }

    /// Starts `path` detached: a new session, working directory `/`, stdio on `/dev/null`, the signal
    /// mask cleared, SIGPIPE and SIGHUP at their defaults, `descriptor` as the child's descriptor 3
    /// and every other descriptor closed. The child is not waited for (it outlives this process).
    /// - Parameters:
    ///   - path: the program (`/proc/self/exe` for this one).
    ///   - arguments: argv, program name first.
    ///   - environment: `NAME=value` entries.
    ///   - descriptor: passed to the child as descriptor 3.
    /// - Throws: `SystemError` when `posix_spawn` fails.
    @inline(never)
    public static func spawnDetached(
        path: String,
        arguments: [String],
        environment: [String],
        passing descriptor: Int32
    ) throws(SystemError) {
        let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup($0) } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        let result = cepmd_spawn_detached(path, argv, envp, descriptor)
        guard result == 0 else { throw SystemError("posix_spawn", errno: result) }
    }
}
