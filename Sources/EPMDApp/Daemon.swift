import EPMDPosix

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

    /// Whether this process is the spawned daemon of `options` (`-daemon`, and the marker is set).
    public static func isChild(_ options: EPMDOptions, environment: [String: String]) -> Bool {
        options.daemon && environment[self.childMarker] != nil
    }

    /// In the daemon: tells the waiting parent that setup is over (bound, or failed).
    public static func reportReady(environment: [String: String]) {
        guard let text = environment[self.readyMarker], let fd = Int32(text), fd > 2 else { return }
        try? System.writeAll(fd, [1])
        System.close(fd)
    }

    /// Spawns the detached copy of this process.
    /// - Parameter arguments: the full argv (program name first) to pass on.
    /// - Throws: `SystemError` when the spawn fails.
    public static func spawnDetached(arguments: [String]) throws(SystemError) {
        let ready = try ProcessControl.makeChildPipe()
        defer { System.close(ready.read) }
        // Neither the markers of a previous spawn nor systemd's sockets (the child gets none of them).
        let dropped = [self.childMarker, self.readyMarker] + Systemd.activationVariables
        var environment = ProcessControl.environmentEntries().filter { entry in
            !dropped.contains { entry.hasPrefix("\($0)=") }
        }
        environment.append("\(self.childMarker)=1")
        environment.append("\(self.readyMarker)=3")
        do {
            defer { System.close(ready.write) }
            try ProcessControl.spawnDetached(
                path: "/proc/self/exe",
                arguments: arguments,
                environment: environment,
                passing: ready.write
            )
        }
        // Wait for the ready byte or EOF (the daemon exited), bounded.
        ProcessControl.waitReadable(ready.read, milliseconds: 2000)
    }
}
