import CEPMDSystem
import EPMDServer

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// `-daemon`. A Swift process may already run threads, so instead of C epmd's bare double fork it
/// spawns itself again, detached: a new session (`setsid`), working directory `/`, stdio on
/// `/dev/null`, and a marker variable so the child knows it is the daemon. The parent exits 0 before
/// the child binds, as C epmd's does.
public enum Daemon {
    /// Set in the spawned daemon's environment.
    public static let childMarker = "EPMD_GATEWAY_DAEMON_CHILD"

    /// Spawns the detached copy of this process.
    /// - Parameter arguments: the full argv (program name first) to pass on.
    /// - Throws: `SystemError` when the spawn fails.
    public static func spawnDetached(arguments: [String]) throws(SystemError) {
        var environment = Self.environmentStrings()
        environment.append("\(self.childMarker)=1")
        let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup($0) } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        let result = cepmd_spawn_detached("/proc/self/exe", argv, envp)
        guard result == 0 else { throw SystemError("posix_spawn", errno: result) }
    }

    private static func environmentStrings() -> [String] {
        var result: [String] = []
        var pointer = environ
        while let entry = pointer.pointee {
            let text = String(cString: entry)
            if !text.hasPrefix("\(self.childMarker)=") { result.append(text) }
            pointer += 1
        }
        return result
    }
}
