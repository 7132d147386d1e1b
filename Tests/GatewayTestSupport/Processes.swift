import Foundation

#if canImport(Glibc)
import Glibc
#endif

// MARK: - Child processes

extension Process {
    /// A fresh log file's place in the temporary directory: `<prefix>-<UUID>.log`.
    public static func temporaryLog(_ prefix: String) -> URL {
        FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString).log")
    }

    /// The child writes stdout and stderr to `log` (created, or emptied) and reads stdin from the null
    /// device. The parent's copy is closed once the child is spawned (`runUnmasked`).
    public func logOutput(to log: URL) throws {
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        self.standardOutput = handle
        self.standardError = handle
        self.standardInput = FileHandle.nullDevice
    }

    /// SIGKILL and wait (at most `seconds`) until Foundation sees the exit; returns whether it did.
    /// Foundation sees it only once every copy of a descriptor the child inherited is closed (see
    /// `exitStatus`): a test can assert with this that a daemon the child started kept none of them.
    @discardableResult
    public func killAndWait(seconds: TimeInterval = 5) -> Bool {
        guard self.processIdentifier > 0, self.isRunning else { return true }
        Glibc.kill(self.processIdentifier, SIGKILL)
        // Ended as the kernel sees it (`exitStatus`), not only as Foundation does: a copy of one of its
        // pipes that leaked into a process another test spawned keeps `isRunning` true (an erl node
        // "still running 5 s after SIGKILL" in a CI rehearsal).
        return Poll.blockingUntil(timeout: .seconds(seconds), interval: .milliseconds(10)) {
            !self.isRunning || self.exitStatus != nil
        } != nil
    }

    /// The exit status (or the number of the signal that ended it) once the child has ended, else nil.
    ///
    /// Asks the kernel (`waitid` with `WNOWAIT`, which leaves the child for Foundation to reap) before
    /// Foundation: Foundation notices an end only once every copy of a descriptor the child inherited is
    /// closed, and a copy that leaked into a process another test spawned at the same moment keeps
    /// `isRunning` true for as long as that process lives.
    public var exitStatus: Int32? {
        let pid = self.processIdentifier
        guard pid > 0 else { return nil }
        var info = siginfo_t()
        if waitid(P_PID, id_t(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 {
            // WNOHANG: si_pid stays 0 while the child runs.
            return info._sifields._sigchld.si_pid == pid ? info._sifields._sigchld.si_status : nil
        }
        // ECHILD: Foundation has reaped it already.
        return self.isRunning ? nil : self.terminationStatus
    }

    /// `run()`, called from a new thread whose signal mask is empty: the child starts with no signal
    /// blocked, as from a shell. Every child process of these tests is started this way.
    ///
    /// Foundation's `Process` hands the calling thread's signal mask to the child, and the threads that
    /// run Swift Testing's tests block nearly every signal: a process started from a test directly starts
    /// with SIGTERM, SIGINT, SIGHUP, SIGCHLD... blocked, so C epmd (which never unblocks them) ignores
    /// SIGTERM. Foundation notices a child's exit through a socket pair and waitpid on its own thread, not
    /// through SIGCHLD or the starting thread, so starting from a short-lived thread changes nothing for
    /// it. The caller waits only for the spawn itself.
    public func runUnmasked() throws {
        final class Outcome: @unchecked Sendable {
            // @unchecked: written by the spawning thread before `done.signal()`, read after `done.wait()`.
            var error: (any Error)?
        }
        let outcome = Outcome()
        let done = DispatchSemaphore(value: 0)
        Thread {
            var none = sigset_t()
            sigemptyset(&none)
            pthread_sigmask(SIG_SETMASK, &none, nil)
            do { try self.run() } catch { outcome.error = error }
            done.signal()
        }
        .start()
        done.wait()
        if let error = outcome.error { throw error }
        self.closeParentFileHandles()
    }

    /// Closes this process's copies of the files given to the child as stdin, stdout and stderr (log
    /// files, mostly): the child has its own. Foundation keeps them open as long as the `Process` lives,
    /// and a full run leaked about a thousand descriptors of deleted log files this way, enough for the
    /// 19,000-registration test to hit EMFILE. Pipes, the shared null device and this process's own
    /// stdin, stdout and stderr (handed on by some tests; closing them once sent the test output into a
    /// socket that took descriptor 2) are left alone.
    private func closeParentFileHandles() {
        for stream in [self.standardInput, self.standardOutput, self.standardError] {
            guard let handle = stream as? FileHandle, handle !== FileHandle.nullDevice,
                handle.fileDescriptor > STDERR_FILENO
            else { continue }
            try? handle.close()
        }
    }

    /// `runUnmasked()` for async code: suspends the calling task, not its thread, until the spawn is done.
    ///
    /// Swift Testing runs tests on the cooperative pool, one thread per core (two here). A test that blocks
    /// a pool thread while a child starts blocks every other async test's polls for that long: under load,
    /// or under a sanitizer, many tests starting children at once held both threads for seconds, and
    /// polls with a time bound in unrelated tests timed out (seen in `scripts/sanitize` runs).
    public func spawnUnmasked() async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            Thread {
                var none = sigset_t()
                sigemptyset(&none)
                pthread_sigmask(SIG_SETMASK, &none, nil)
                continuation.resume(
                    with: Result {
                        try self.run()
                        self.closeParentFileHandles()
                    }
                )
            }
            .start()
        }
    }
}

/// Runs blocking work (a `Command.run` that waits for a process, say) on a thread of its own, so that the
/// two threads of the cooperative pool on this 2-core machine stay free for the other tests running in
/// parallel.
public enum Blocking {
    public static func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            Thread { continuation.resume(with: Result { try body() }) }.start()
        }
    }
}

// MARK: - One-shot commands

/// What `Command.run` returns.
public struct CommandResult: Sendable {
    public var status: Int32
    public var stdout: String
    public var stderr: String

    public init(status: Int32, stdout: String, stderr: String) {
        self.status = status
        self.stdout = stdout
        self.stderr = stderr
    }
}

public enum Command {
    /// Runs a command to completion with a time bound (blocking the calling thread: from async code, call
    /// it inside `Blocking.run`); returns status, stdout and stderr.
    ///
    /// Output goes to files, not pipes: a pipe's write end can leak into processes other tests spawn at the
    /// same moment, and then its reader waits for them.
    public static func run(
        _ path: String,
        _ arguments: [String],
        environment: [String: String] = [:],
        currentDirectory: URL? = nil,
        timeout: TimeInterval = 30
    ) throws -> CommandResult {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        if let currentDirectory { process.currentDirectoryURL = currentDirectory }
        var env = ProcessInfo.processInfo.environment
        env.merge(environment) { $1 }
        process.environment = env
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cmd-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("out")
        let err = dir.appendingPathComponent("err")
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        _ = FileManager.default.createFile(atPath: err.path, contents: nil)
        process.standardOutput = try FileHandle(forWritingTo: out)
        process.standardError = try FileHandle(forWritingTo: err)
        process.standardInput = FileHandle.nullDevice
        try process.runUnmasked()
        var status: Int32?
        _ = Poll.blockingUntil(timeout: .seconds(timeout), interval: .milliseconds(10)) {
            status = process.exitStatus
            return status != nil
        }
        guard let status else {
            process.killAndWait()
            throw TestFailure("\(path) \(arguments) did not finish within \(timeout) s")
        }
        return CommandResult(
            status: status,
            stdout: (try? String(contentsOf: out, encoding: .utf8)) ?? "",
            stderr: (try? String(contentsOf: err, encoding: .utf8)) ?? ""
        )
    }

    /// Runs `binary -port P <arguments>` (an epmd client mode, usually) on a thread of its own (see
    /// `Blocking`), with a 10 s bound.
    public static func epmd(_ binary: String, port: UInt16, _ arguments: [String]) async throws -> CommandResult {
        try await Blocking.run { try self.run(binary, ["-port", String(port)] + arguments, timeout: 10) }
    }
}
