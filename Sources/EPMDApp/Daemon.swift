import CEPMDSystem
import EPMDPosix
import EPMDServer

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// `-daemon`. A Swift process may already run threads, so instead of C epmd's bare double fork it
/// spawns itself again, detached: a new session (`setsid`), working directory `/`, stdio on
/// `/dev/null`, and a marker variable so the child knows it is the daemon. The parent exits 0 before
/// the child binds, as C epmd's does; unlike it, the parent first waits (at most 2 s) until the child
/// is listening or has given up, so the `erl` that ran `-daemon` finds the port open.
public enum Daemon {
    /// Set in the spawned daemon's environment.
    public static let childMarker = "EPMD_GATEWAY_DAEMON_CHILD"
    /// The descriptor on which the daemon reports that its sockets are bound (then closes it).
    public static let readyMarker = "EPMD_GATEWAY_DAEMON_READY_FD"

    /// In the daemon: tells the waiting parent that setup is over (bound, or failed).
    public static func reportReady(environment: [String: String]) {
        guard let text = environment[self.readyMarker], let fd = Int32(text), fd > 2 else { return }
        var byte: UInt8 = 1
        _ = write(fd, &byte, 1)
        close(fd)
    }

    /// Spawns the detached copy of this process.
    /// - Parameter arguments: the full argv (program name first) to pass on.
    /// - Throws: `SystemError` when the spawn fails.
    public static func spawnDetached(arguments: [String]) throws(SystemError) {
        var pipeFDs: [Int32] = [-1, -1]
        guard pipe(&pipeFDs) == 0 else { throw SystemError("pipe", errno: errno) }
        let (readEnd, writeEnd) = (pipeFDs[0], pipeFDs[1])
        _ = fcntl(readEnd, F_SETFD, FD_CLOEXEC)
        defer { close(readEnd) }
        var environment = Self.environmentStrings()
        environment.append("\(self.childMarker)=1")
        environment.append("\(self.readyMarker)=3")
        let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup($0) } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        let result = cepmd_spawn_detached("/proc/self/exe", argv, envp, writeEnd)
        close(writeEnd)
        guard result == 0 else { throw SystemError("posix_spawn", errno: result) }
        // Wait for the ready byte or EOF (the daemon exited), bounded.
        var poller = pollfd(fd: readEnd, events: Int16(POLLIN), revents: 0)
        _ = poll(&poller, 1, 2000)
    }

    private static func environmentStrings() -> [String] {
        var result: [String] = []
        var pointer = environ
        while let entry = pointer.pointee {
            let text = String(cString: entry)
            if !text.hasPrefix("\(self.childMarker)="), !text.hasPrefix("\(self.readyMarker)=") {
                result.append(text)
            }
            pointer += 1
        }
        return result
    }
}
