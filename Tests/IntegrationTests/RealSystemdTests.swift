import Foundation
import GatewayTestSupport
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The shipped package and units under a real systemd 252 as PID 1: one booted Debian 12 container
/// (`scripts/systemd-container`) per run of the suite, with `epmd-gateway_*.deb` installed by apt-get and
/// drop-ins moving its ports to free ones (the container shares the host's network: never 4369/4370).
/// Real `erl` nodes, curl and the real `epmd` client run on the host against the activated sockets.
///
/// The tests run one at a time in one container; each starts from "installed, sockets listening" (see
/// `RealSystemd.ensureServing`) and puts back what it changes, so they do not depend on their order.
/// Needs root, debootstrap and systemd-nspawn: outside CI the suite is skipped without them, in CI it fails.
/// It tests the packaged release binary, so `scripts/sanitize` leaves it out; it runs alone after the
/// other suites (`scripts/load-suites`).
@Suite(
    "Real systemd 252: the .deb and its units",
    .serialized,
    .enabled(if: SystemdContainer.usable),
    .timeLimit(.minutes(3)),
    .realSystemd
)
struct RealSystemdTests {
    private static let service = "epmd-gateway.service"
    private static let epmdSocket = "epmd-gateway.socket"
    private static let httpSocket = "epmd-gateway-http.socket"

    private static func fixture(sourceLocation: SourceLocation = #_sourceLocation) throws -> RealSystemd {
        try #require(RealSystemd.current, "the suite's container did not start", sourceLocation: sourceLocation)
    }

    // MARK: 1. The package

    @Test("1. apt-get install ./epmd-gateway_*.deb: enabled sockets on the drop-ins' ports, named descriptors")
    func install() async throws {
        let sd = try Self.fixture()
        try await sd.ensureServing()
        let container = sd.container
        #expect(sd.installLog.contains("Setting up epmd-gateway"), "\(sd.installLog)")
        let status = try await container.check("dpkg-query -W -f '${Status}' epmd-gateway")
        #expect(status == "install ok installed")
        let enabled = try await container.shell("systemctl is-enabled \(Self.epmdSocket) \(Self.httpSocket)")
        #expect(enabled.stdout == "enabled\nenabled\n", "\(enabled)")

        let epmd = try await container.show(Self.epmdSocket, ["ActiveState", "Listen", "FileDescriptorName"])
        #expect(epmd["ActiveState"] == "active")
        #expect(epmd["Listen"] == "127.0.0.1:\(sd.epmdPort) (Stream)")
        #expect(epmd["FileDescriptorName"] == "epmd")
        let http = try await container.show(Self.httpSocket, ["ActiveState", "Listen", "FileDescriptorName"])
        #expect(http["ActiveState"] == "active")
        #expect(http["Listen"] == "127.0.0.1:\(sd.httpPort) (Stream)")
        #expect(http["FileDescriptorName"] == "http")
        // systemd's sockets, on the host's loopback.
        #expect(WireClient.canConnect(port: sd.epmdPort))
        #expect(WireClient.canConnect(port: sd.httpPort))

        // The release binary needs no Swift runtime in the container (static standard library).
        let libraries = try await container.check("ldd /usr/bin/epmd-gateway")
        #expect(!libraries.contains("libswift"), "\(libraries)")
        #expect(libraries.contains("libmicrohttpd"), "\(libraries)")
    }

    // MARK: 2. Real nodes through the activated sockets

    @Test("2. two erl nodes register through the activated port; epmd -names, /v1/nodes, net_adm:ping")
    func nodesRegister() async throws {
        let sd = try Self.fixture()
        try await sd.ensureServing()
        let (first, second) = try await sd.nodes()

        // The real epmd client on the host.
        let epmd = try ExternalTool.require("epmd")
        let names = try await Command.epmd(epmd, port: sd.epmdPort, ["-names"])
        #expect(names.status == 0)
        #expect(names.stdout.contains("name \(first.name) at port "), "\(names)")
        #expect(names.stdout.contains("name \(second.name) at port "), "\(names)")

        // The HTTP front through systemd's HTTP socket.
        let list = try await Curl.run(["http://127.0.0.1:\(sd.httpPort)/v1/nodes"])
        #expect(list.status == 200, "\(list)")
        #expect(list.body.contains("\"\(first.name)\""), "\(list)")
        #expect(list.body.contains("\"\(second.name)\""), "\(list)")

        // The service got both sockets by name (LISTEN_FDNAMES), and serves from them.
        let pid = try await sd.mainPID()
        let environment = try await sd.container.check("tr '\\0' '\\n' < /proc/\(pid)/environ")
        let fdNames = environment.split(separator: "\n").first { $0.hasPrefix("LISTEN_FDNAMES=") }
        #expect(
            fdNames.map { $0.dropFirst("LISTEN_FDNAMES=".count).split(separator: ":").sorted() } == ["epmd", "http"],
            "\(environment)"
        )

        // One node pings the other: each finds the other's port through the gateway.
        let ping = try await ErlangNode.eval(
            name: NodeNames.unique("sd_ping"),
            cookie: sd.cookie,
            epmdPort: sd.epmdPort,
            expression: """
                io:format("~p~n", [rpc:call('\(first.name)@\(NodeNames.shortHostName)', net_adm, ping, \
                ['\(second.name)@\(NodeNames.shortHostName)'])]), halt().
                """
        )
        #expect(ping.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "pong", "\(ping)")
    }

    // MARK: 3. Type=notify: READY, STATUS, WATCHDOG

    @Test("3. systemctl show: READY (active/running), STATUS= with the node count, watchdog pings advancing")
    func notifyState() async throws {
        let sd = try Self.fixture()
        try await sd.ensureServing()
        _ = try await sd.nodes()
        let container = sd.container

        let properties = [
            "Type", "ActiveState", "SubState", "StatusText", "WatchdogUSec", "WatchdogTimestampMonotonic",
        ]
        // The one-shot ping node of another test may still be counted for a moment: poll for 2.
        var state: [String: String] = [:]
        let counted = try await Poll.until(timeout: .seconds(10), interval: .milliseconds(200)) {
            state = try await container.show(Self.service, properties)
            return Self.mentions(state["StatusText"] ?? "", count: 2)
        }
        #expect(counted != nil, "StatusText never showed 2 nodes: \(state)")
        #expect(state["Type"] == "notify")
        #expect(state["ActiveState"] == "active")
        #expect(state["SubState"] == "running")
        #expect(state["WatchdogUSec"] != "0" && state["WatchdogUSec"] != "infinity", "\(state)")

        let first = UInt64(state["WatchdogTimestampMonotonic"] ?? "") ?? 0
        #expect(first > 0, "no WATCHDOG=1 received: \(state)")
        // Pings come at half of WatchdogSec (5 s here): a newer one within 4 s.
        var later: UInt64 = 0
        let advanced = try await Poll.until(timeout: .seconds(4), interval: .milliseconds(200)) {
            later =
                UInt64(
                    try await container.show(Self.service, ["WatchdogTimestampMonotonic"])["WatchdogTimestampMonotonic"]
                        ?? ""
                ) ?? 0
            return later > first
        }
        #expect(advanced != nil, "WatchdogTimestampMonotonic stayed at \(first) (now \(later))")
    }

    /// True when `text` gives `count` as a count of nodes ("Serving 2 nodes (epmd port ...)").
    private static func mentions(_ text: String, count: Int) -> Bool {
        let words = text.split { $0 == " " || $0 == "," || $0 == "(" || $0 == ")" }
        return zip(words, words.dropFirst()).contains { $0 == String(count) && $1.hasPrefix("node") }
    }

    // MARK: 4. Stopping

    @Test("4. systemctl stop: deactivating, /readyz 503 through systemd's socket during the grace, exit 0")
    func stop() async throws {
        let sd = try Self.fixture()
        try await sd.ensureServing()
        _ = try await sd.nodes()
        let container = sd.container
        let readyz = "http://127.0.0.1:\(sd.httpPort)/readyz"
        #expect(try await Curl.run([readyz]).status == 200)

        let stopping = Task { try await container.run(["systemctl", "stop", Self.service], timeout: 60) }
        let (deactivating, unready) = try await Self.watchShutdown(sd)
        let stopped = try await stopping.value
        // Read at once: the nodes' retries (every 2 s) activate the service again through its socket.
        let after = try await container.show(Self.service, ["ActiveState", "Result", "ExecMainCode", "ExecMainStatus"])
        #expect(stopped.status == 0, "\(stopped)")
        #expect(deactivating, "ActiveState never deactivating")
        #expect(unready, "/readyz never answered 503 during the grace")
        #expect(after["ExecMainCode"] == "1", "not a plain exit: \(after)")
        #expect(after["ExecMainStatus"] == "0", "\(after)")
        #expect(after["Result"] == "success", "\(after)")
        // The sockets stay with systemd.
        let sockets = try await container.shell("systemctl is-active \(Self.epmdSocket) \(Self.httpSocket)")
        #expect(sockets.stdout == "active\nactive\n", "\(sockets)")

        // SIGTERM from outside systemd: only STOPPING=1 tells it the service is going (deactivating),
        // and a clean exit under Restart=on-failure is not restarted.
        try await container.check("systemctl start \(Self.service)")
        _ = try await sd.nodes()
        let pid = try await sd.mainPID()
        let cursor = try await container.journalCursor()
        try await container.check("kill -TERM \(pid)")
        let (notified, unreadyAgain) = try await Self.watchShutdown(sd)
        var state: [String: String] = [:]
        let ended = try await Poll.until(timeout: .seconds(15), interval: .milliseconds(100)) {
            state = try await container.show(
                Self.service,
                ["ActiveState", "Result", "ExecMainPID", "ExecMainStatus", "ExecMainCode"]
            )
            return state["ExecMainPID"] == String(pid) && state["ExecMainCode"] == "1"
        }
        #expect(notified, "ActiveState never deactivating after SIGTERM: STOPPING=1 not seen")
        #expect(unreadyAgain, "/readyz never answered 503 after SIGTERM")
        #expect(ended != nil, "no exit of \(pid): \(state)")
        #expect(state["ExecMainStatus"] == "0", "\(state)")
        let journal = await container.journal(Self.service, after: cursor)
        #expect(!journal.contains("Scheduled restart job"), "a clean exit was restarted: \(journal.suffix(3000))")

        try await container.check("systemctl start \(Self.service)")
        _ = try await sd.nodes()
    }

    /// Polls the service and `/readyz` (through systemd's HTTP socket) until both the `deactivating`
    /// state and a 503 were seen, or 15 s. `/readyz` is no longer asked once it answered 503: after the
    /// exit a request would activate the service again.
    private static func watchShutdown(_ sd: RealSystemd) async throws -> (deactivating: Bool, unready: Bool) {
        var deactivating = false
        var unready = false
        _ = try await Poll.until(timeout: .seconds(15), interval: .milliseconds(50)) {
            if !deactivating {
                let state = try await sd.container.show(Self.service, ["ActiveState"])
                deactivating = state["ActiveState"] == "deactivating"
            }
            if !unready {
                unready = try await Curl.run(["http://127.0.0.1:\(sd.httpPort)/readyz"], maxTime: 2).status == 503
            }
            return deactivating && unready
        }
        return (deactivating, unready)
    }

    // MARK: 5. The watchdog

    @Test("5. SIGSTOP of the main process: the watchdog kills and restarts it, the nodes register again")
    func watchdog() async throws {
        let sd = try Self.fixture()
        try await sd.ensureServing()
        let (first, second) = try await sd.nodes()
        let container = sd.container
        let before = try await container.show(Self.service, ["MainPID", "NRestarts"])
        let pid = try #require(before["MainPID"].flatMap { Int32($0) }, "\(before)")
        let restarts = try #require(before["NRestarts"].flatMap { Int($0) }, "\(before)")

        let cursor = try await container.journalCursor()
        try await container.check("kill -STOP \(pid)")
        var state: [String: String] = [:]
        let restarted = try await Poll.until(timeout: .seconds(20), interval: .milliseconds(200)) {
            state = try await container.show(Self.service, ["MainPID", "NRestarts", "ActiveState", "SubState"])
            let newPID = state["MainPID"].flatMap { Int32($0) } ?? 0
            return newPID != 0 && newPID != pid && state["ActiveState"] == "active" && state["SubState"] == "running"
        }
        let clock = ContinuousClock()
        let restartedAt = clock.now
        let journal = await container.journal(Self.service, after: cursor)
        try #require(restarted != nil, "not restarted within 20 s: \(state) \(journal.suffix(3000))")
        #expect(state["NRestarts"] == String(restarts + 1), "\(state)")
        #expect(journal.contains("Watchdog timeout"), "\(journal.suffix(3000))")
        #expect(journal.contains("Failed with result 'watchdog'"), "\(journal.suffix(3000))")

        // OTP 24+ nodes retry their epmd connection every 2 s.
        var listed = ""
        let back = try await Poll.until(timeout: .seconds(10), interval: .milliseconds(100)) {
            listed = (try? await WireClient.names(port: sd.epmdPort).text) ?? ""
            return NamesText.port(of: first.name, in: listed) != nil
                && NamesText.port(of: second.name, in: listed) != nil
        }
        #expect(back != nil, "the nodes were not listed again within 10 s: \(listed.debugDescription)")
        print(
            "RealSystemdTests: watchdog restart \(restarted.map { "\($0)" } ?? "-") after SIGSTOP, nodes back \(restartedAt.duration(to: clock.now)) after"
        )
        let list = try await Curl.run(["http://127.0.0.1:\(sd.httpPort)/v1/nodes"])
        #expect(list.status == 200 && list.body.contains("\"\(first.name)\""), "\(list)")
    }

    // MARK: 6. systemd-analyze

    @Test("6. systemd-analyze verify on the shipped units; systemd-analyze security: exposure at most 2.0")
    func analyze() async throws {
        let sd = try Self.fixture()
        try await sd.ensureServing()
        let container = sd.container
        let units = try await sd.shippedFiles().filter { $0.hasSuffix(".service") || $0.hasSuffix(".socket") }
        #expect(
            Set(units.map { ($0 as NSString).lastPathComponent }) == [Self.service, Self.epmdSocket, Self.httpSocket]
        )
        // --man=no: the image has no man(1) (nor erlang-manpages for the epmd(1) the service names); the
        // gateway's own page is checked below.
        let verify = try await container.run(["systemd-analyze", "verify", "--man=no"] + units, timeout: 60)
        #expect(verify.status == 0, "\(verify)")
        #expect(verify.stdout.isEmpty && verify.stderr.isEmpty, "verify warns: \(verify)")

        #expect(try await sd.shippedFiles().contains { $0.hasPrefix("/usr/share/man/man8/epmd-gateway.8") })

        let security = try await container.run(
            ["systemd-analyze", "security", "--no-pager", Self.service],
            timeout: 60
        )
        // "→ Overall exposure level for epmd-gateway.service: 1.1 OK :-)"
        let prefix = "Overall exposure level for \(Self.service): "
        let level = security.stdout.split(separator: "\n").lazy.compactMap { line in
            line.range(of: prefix).flatMap { Double(line[$0.upperBound...].prefix { !$0.isWhitespace }) }
        }.first
        let exposure = try #require(level, "no exposure level: \(security)")
        print("RealSystemdTests: systemd-analyze security \(Self.service): \(exposure)")
        #expect(exposure <= 2.0, "\(security.stdout)")
    }

    // MARK: 7. An application's unit with the shipped drop-in

    @Test("7. a node's unit with the shipped drop-in requires the gateway socket and starts after it")
    func applicationDropIn() async throws {
        let sd = try Self.fixture()
        try await sd.ensureServing()
        let container = sd.container
        let shipped = try await sd.shippedDropIn(containing: [
            "Requires=\(Self.epmdSocket)", "After=\(Self.epmdSocket)",
        ])

        let name = NodeNames.unique("sd_app")
        try container.write(
            """
            [Unit]
            Description=An Erlang node of the test
            [Service]
            Environment=ERL_EPMD_PORT=\(sd.epmdPort) HOME=/root
            ExecStart=/usr/bin/erl -sname \(name) -noshell -start_epmd false -setcookie \(sd.cookie)

            """,
            to: "/etc/systemd/system/myapp.service"
        )
        try await Self.withCleanup {
            _ = try? await container.shell("systemctl stop myapp.service")
            container.remove("/etc/systemd/system/myapp.service")
            container.remove("/etc/systemd/system/myapp.service.d")
            _ = try? await container.shell("systemctl daemon-reload")
        } body: {
            try await container.check(
                "mkdir -p /etc/systemd/system/myapp.service.d && cp \(shipped) /etc/systemd/system/myapp.service.d/ "
                    + "&& systemctl daemon-reload"
            )
            let dependencies = try await container.show("myapp.service", ["After", "Requires"])
            #expect(Self.list(dependencies["After"], contains: Self.epmdSocket), "\(dependencies)")
            #expect(Self.list(dependencies["Requires"], contains: Self.epmdSocket), "\(dependencies)")
            let after = try await container.check(
                "systemctl list-dependencies --no-pager --plain --after myapp.service"
            )
            #expect(after.contains(Self.epmdSocket), "\(after)")

            // Started with the gateway's socket down: systemd starts the socket first.
            try await container.check("systemctl stop \(Self.service) \(Self.epmdSocket)")
            try await container.check("systemctl start myapp.service")
            let socket = try await container.show(Self.epmdSocket, ["ActiveState", "ActiveEnterTimestampMonotonic"])
            let app = try await container.show("myapp.service", ["ActiveState", "InactiveExitTimestampMonotonic"])
            #expect(socket["ActiveState"] == "active", "\(socket)")
            #expect(app["ActiveState"] == "active", "\(app)")
            let socketUp = UInt64(socket["ActiveEnterTimestampMonotonic"] ?? "") ?? 0
            let appStart = UInt64(app["InactiveExitTimestampMonotonic"] ?? "") ?? 0
            #expect(socketUp > 0 && socketUp <= appStart, "socket up at \(socketUp), app started at \(appStart)")

            // The node in the unit registers through the socket (which activates the gateway).
            var listed = ""
            let registered = try await Poll.until(timeout: .seconds(20), interval: .milliseconds(200)) {
                listed = (try? await WireClient.names(port: sd.epmdPort).text) ?? ""
                return NamesText.port(of: name, in: listed) != nil
            }
            let journal = await container.journal("myapp.service")
            #expect(registered != nil, "\(name) not registered: \(listed.debugDescription) \(journal.suffix(2000))")
        }
    }

    /// True when the space-separated `list` (a `systemctl show` value) holds `unit`.
    private static func list(_ list: String?, contains unit: String) -> Bool {
        (list ?? "").split(separator: " ").contains { $0 == unit }
    }

    /// Runs `body`, then `cleanup`, also when `body` throws.
    private static func withCleanup(
        _ cleanup: () async -> Void,
        body: () async throws -> Void
    ) async throws {
        do {
            try await body()
        } catch {
            await cleanup()
            throw error
        }
        await cleanup()
    }

    // MARK: 8. Removal

    @Test("8. dpkg -r, then dpkg --purge: no units, binary, wants links, state or listening sockets left")
    func removeAndPurge() async throws {
        let sd = try Self.fixture()
        try await sd.ensureServing()
        let container = sd.container
        let shipped = try await sd.shippedFiles()

        try await container.check("dpkg -r epmd-gateway", timeout: 120)
        for file in shipped where !file.hasPrefix("/etc/") {
            let exists = try await container.shell("test -e \(file) || test -L \(file)")
            #expect(exists.status != 0, "\(file) left after dpkg -r")
        }
        #expect(try await container.shell("test -e /usr/bin/epmd-gateway").status != 0)
        // Nothing listens on the ports any more (from the host).
        #expect(!WireClient.canConnect(port: sd.epmdPort), "\(sd.epmdPort) still listening after dpkg -r")
        #expect(!WireClient.canConnect(port: sd.httpPort), "\(sd.httpPort) still listening after dpkg -r")
        let units = try await container.shell(
            "systemctl is-active \(Self.service) \(Self.epmdSocket) \(Self.httpSocket)"
        )
        #expect(!units.stdout.split(separator: "\n").contains("active"), "\(units)")

        // dpkg -r keeps the configuration, the sockets' enablement with it (as every package whose scripts
        // are dh_installsystemd's): the links go with --purge.
        try await container.check("dpkg --purge epmd-gateway", timeout: 120)
        #expect(try await container.shell("dpkg -L epmd-gateway").status != 0)
        let status = try await container.shell("dpkg-query -W -f '${Status}' epmd-gateway").stdout
        #expect(status.isEmpty || status.hasSuffix(" not-installed"), "\(status)")
        // Anything named after the package, but the test's own drop-ins, its copy of the .deb and the
        // image's marker (scripts/systemd-container).
        let leftovers = try await container.check(
            """
            find / /run /var /tmp -xdev -name '*epmd-gateway*' \
              -not -path '/etc/systemd/system/epmd-gateway.socket.d*' \
              -not -path '/etc/systemd/system/epmd-gateway-http.socket.d*' \
              -not -path '/etc/systemd/system/epmd-gateway.service.d*' \
              -not -path '\(RealSystemd.debDirectory)/*' -not -path '/.epmd-gateway-image-*' | sort -u
            """
        )
        #expect(leftovers.isEmpty, "left after dpkg --purge: \(leftovers)")
        // No enablement left: no links in the .wants folders, no mask, no deb-systemd-helper state.
        let links = try await container.check("find /etc/systemd/system -lname '*epmd-gateway*'")
        #expect(links.isEmpty, "links left after dpkg --purge: \(links)")
        #expect(!WireClient.canConnect(port: sd.epmdPort))
        #expect(!WireClient.canConnect(port: sd.httpPort))

        // Installed again for the tests after this one.
        try await sd.ensureServing()
    }

    // MARK: 9. Debian's own epmd.socket

    @Test("9. Debian's epmd.socket (its port moved) runs the gateway with -systemd through epmd.service")
    func debianEPMDSocket() async throws {
        let sd = try Self.fixture()
        try await sd.ensureServing()
        let container = sd.container
        let port = try FreePort.next()
        let httpPort = try FreePort.next()
        try container.write(
            "[Socket]\nListenStream=\nListenStream=127.0.0.1:\(port)\n",
            to: "/etc/systemd/system/epmd.socket.d/50-test-port.conf"
        )
        try await Self.withCleanup {
            _ = try? await container.shell("systemctl stop epmd.service epmd.socket")
            container.remove("/etc/systemd/system/epmd.socket.d")
            container.remove("/etc/systemd/system/epmd.service.d")
            _ = try? await container.shell(
                "systemctl daemon-reload; systemctl enable \(Self.epmdSocket) \(Self.httpSocket)"
            )
        } body: {
            // While ours is enabled, Debian's epmd.socket steps aside (the package's drop-in for it), and a
            // start of it (erlang-base's postinst runs one on each upgrade) must leave ours listening.
            try await container.check("systemctl daemon-reload && systemctl start epmd.socket")
            let skipped = try await container.show("epmd.socket", ["ActiveState", "ConditionResult"])
            let ours = try await container.show(Self.epmdSocket, ["ActiveState"])
            #expect(skipped["ActiveState"] == "inactive" && skipped["ConditionResult"] == "no", "\(skipped)")
            #expect(ours["ActiveState"] == "active", "starting Debian's epmd.socket stopped \(Self.epmdSocket)")
            #expect(WireClient.canConnect(port: sd.epmdPort), "nothing on \(sd.epmdPort) after a start of epmd.socket")

            // The package's documented way back to Debian's units: its sockets disabled and stopped (they
            // conflict with epmd.socket/epmd.service, and the package's drop-in for those skips them while
            // epmd-gateway.socket is enabled). Enabled again at the end.
            try await container.check(
                "systemctl disable --now \(Self.epmdSocket) \(Self.httpSocket) && systemctl stop \(Self.service)"
            )
            // The shipped drop-in for Debian's epmd.service (ExecStart=epmd-gateway -systemd, Type=notify), where
            // its header says to put it. With one unnamed socket the gateway binds its HTTP front itself: a
            // free port (never 4370) by a drop-in of the test.
            let shipped = try await sd.shippedDropIn(containing: ["ExecStart=/usr/bin/epmd-gateway -systemd"])
            try await container.check(
                "mkdir -p /etc/systemd/system/epmd.service.d && cp \(shipped) /etc/systemd/system/epmd.service.d/epmd-gateway.conf"
            )
            try container.write(
                "[Service]\nEnvironment=EPMD_GATEWAY_HTTP_PORT=\(httpPort)\n",
                to: "/etc/systemd/system/epmd.service.d/60-test-http-port.conf"
            )
            try await container.check("systemctl daemon-reload && systemctl start epmd.socket")
            let socket = try await container.show("epmd.socket", ["ActiveState", "Listen", "ConditionResult"])
            #expect(socket["ActiveState"] == "active", "\(socket)")
            #expect(socket["Listen"] == "127.0.0.1:\(port) (Stream)", "\(socket)")
            let node = try await ErlangNode.start(
                name: NodeNames.unique("sd_debian"),
                cookie: sd.cookie,
                epmdPort: port
            )
            defer { node.kill() }
            try await node.waitUntilRegistered(epmdPort: port)
            let epmd = try ExternalTool.require("epmd")
            let names = try await Command.epmd(epmd, port: port, ["-names"])
            #expect(names.status == 0 && names.stdout.contains("name \(node.name) at port "), "\(names)")

            // Active under Type=notify: READY=1 came with Debian's one unnamed descriptor.
            let state = try await container.show("epmd.service", ["ActiveState", "SubState", "Type", "MainPID"])
            #expect(state["Type"] == "notify", "\(state)")
            #expect(state["ActiveState"] == "active" && state["SubState"] == "running", "\(state)")
            let pid = try #require(state["MainPID"].flatMap { Int32($0) }.flatMap { $0 > 0 ? $0 : nil }, "\(state)")
            let exe = try await container.check("readlink /proc/\(pid)/exe")
            #expect(exe.trimmingCharacters(in: .whitespacesAndNewlines) == "/usr/bin/epmd-gateway")
            let list = try await Curl.run(["http://127.0.0.1:\(httpPort)/v1/nodes"])
            #expect(list.status == 200 && list.body.contains("\"\(node.name)\""), "\(list)")
        }
        try await sd.ensureServing()
    }
}

// MARK: - The suite's container

/// What the suite's tests share: one container with the package installed on free ports, and two erl
/// nodes on the host registered through it (started by the first test that needs them).
final class RealSystemd: Sendable {
    @TaskLocal static var current: RealSystemd?

    let container: SystemdContainer
    let deb: URL
    /// The ports the drop-ins give `epmd-gateway.socket` and `epmd-gateway-http.socket` (on 127.0.0.1).
    let epmdPort: UInt16
    let httpPort: UInt16
    let cookie = NodeNames.cookie()
    private let state = Mutex<(installLog: String, nodes: [ErlangNode])>(("", []))

    /// Where the .deb is copied inside the container.
    static let debDirectory = "/root/deb"

    var installLog: String { self.state.withLock { $0.installLog } }

    private init(container: SystemdContainer, deb: URL, epmdPort: UInt16, httpPort: UInt16) {
        self.container = container
        self.deb = deb
        self.epmdPort = epmdPort
        self.httpPort = httpPort
    }

    /// Finds (or builds) the .deb, boots the container, writes the drop-ins and installs the package.
    /// The container is stopped again if any step fails.
    static func start() async throws -> RealSystemd {
        let clock = ContinuousClock()
        let started = clock.now
        let deb = try await GatewayPackage.path()
        let packaged = clock.now
        let container = try await SystemdContainer.boot()
        let booted = clock.now
        do {
            let fixture = RealSystemd(
                container: container,
                deb: deb,
                epmdPort: try FreePort.next(),
                httpPort: try FreePort.next()
            )
            try fixture.writeDropIns()
            try await fixture.ensureServing()
            print(
                "RealSystemdTests: .deb \(started.duration(to: packaged)), boot \(packaged.duration(to: booted)), "
                    + "install \(booted.duration(to: clock.now))"
            )
            return fixture
        } catch {
            container.stop()
            throw error
        }
    }

    /// Kills the nodes and stops the container.
    func stop() {
        let nodes = self.state.withLock { state in
            defer { state.nodes = [] }
            return state.nodes
        }
        for node in nodes { node.kill() }
        self.container.stop()
    }

    /// The drop-ins the package's units get in the test, written before the install: the two sockets on
    /// free loopback ports; the service with a shorter watchdog than the shipped one (a faster test of
    /// it, with room for a loaded machine: pings every 2.5 s) and a shorter shutdown grace.
    private func writeDropIns() throws {
        try self.container.write(
            "[Socket]\nListenStream=\nListenStream=127.0.0.1:\(self.epmdPort)\n",
            to: "/etc/systemd/system/epmd-gateway.socket.d/50-test-port.conf"
        )
        try self.container.write(
            "[Socket]\nListenStream=\nListenStream=127.0.0.1:\(self.httpPort)\n",
            to: "/etc/systemd/system/epmd-gateway-http.socket.d/50-test-port.conf"
        )
        try self.container.write(
            "[Service]\nWatchdogSec=5s\nEnvironment=EPMD_GATEWAY_SHUTDOWN_GRACE=2\n",
            to: "/etc/systemd/system/epmd-gateway.service.d/50-test.conf"
        )
    }

    /// Installed (again, after the removal test), both sockets listening, the service not failed.
    func ensureServing() async throws {
        let status = try await self.container.shell("dpkg-query -W -f '${Status}' epmd-gateway")
        if status.stdout != "install ok installed" {
            try self.container.copy(self.deb, to: "\(Self.debDirectory)/\(self.deb.lastPathComponent)")
            let log = try await self.container.check(
                "cd \(Self.debDirectory) && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ./epmd-gateway_*.deb 2>&1",
                timeout: 300
            )
            self.state.withLock { $0.installLog = log }
        }
        try await self.container.check(
            "systemctl reset-failed epmd-gateway.service 2>/dev/null; systemctl start epmd-gateway.socket epmd-gateway-http.socket"
        )
    }

    /// The two erl nodes, registered: started on the first call, afterwards waited for (they register
    /// again within about 2 s after a restart of the gateway).
    func nodes() async throws -> (ErlangNode, ErlangNode) {
        var nodes = self.state.withLock { $0.nodes }
        if nodes.isEmpty {
            for prefix in ["sd_first", "sd_second"] {
                nodes.append(
                    try await ErlangNode.start(
                        name: NodeNames.unique(prefix),
                        cookie: self.cookie,
                        epmdPort: self.epmdPort
                    )
                )
            }
            self.state.withLock { $0.nodes = nodes }
        }
        for node in nodes { try await node.waitUntilRegistered(epmdPort: self.epmdPort, timeout: .seconds(20)) }
        return (nodes[0], nodes[1])
    }

    /// The service's main PID (in the container's PID namespace), once it runs.
    func mainPID() async throws -> Int32 {
        var state: [String: String] = [:]
        _ = try await Poll.until(timeout: .seconds(10), interval: .milliseconds(100)) {
            state = try await self.container.show("epmd-gateway.service", ["MainPID", "ActiveState"])
            return (Int32(state["MainPID"] ?? "") ?? 0) > 0 && state["ActiveState"] == "active"
        }
        guard let pid = Int32(state["MainPID"] ?? ""), pid > 0 else {
            throw TestFailure("epmd-gateway.service not running: \(state)")
        }
        return pid
    }

    /// The one drop-in example the package ships (a `.conf` file of `dpkg -L`) with a line starting with
    /// each of `lines` (comments left out).
    func shippedDropIn(containing lines: [String]) async throws -> String {
        var found: [String] = []
        let files = try await self.shippedFiles().filter { $0.hasSuffix(".conf") }
        for file in files {
            let text = try await self.container.check("cat \(file)")
            let fileLines = text.split(separator: "\n").filter { !$0.hasPrefix("#") }
            if lines.allSatisfy({ line in fileLines.contains { $0.hasPrefix(line) } }) { found.append(file) }
        }
        guard found.count == 1 else {
            throw TestFailure("\(found.count) shipped drop-ins hold \(lines) (among \(files)): \(found)")
        }
        return found[0]
    }

    /// The package's files (`dpkg -L`), folders left out.
    func shippedFiles() async throws -> [String] {
        let listed = try await self.container.check(
            "dpkg -L epmd-gateway | while read -r f; do [ -d \"$f\" ] || echo \"$f\"; done"
        )
        return listed.split(separator: "\n").map(String.init)
    }
}

/// The suite's scope: one container for the whole run of the suite, stopped at its end (also when a test
/// or the setup fails). One such suite at a time in a test process (``ContainerTurn``): two booted
/// containers beside the other suites are too much for a 2-core machine.
struct RealSystemdScope: SuiteTrait, TestScoping {
    var isRecursive: Bool { false }

    func provideScope(
        for test: Test,
        testCase: Test.Case?,
        performing function: @Sendable () async throws -> Void
    ) async throws {
        await ContainerTurn.shared.take()
        do {
            let fixture = try await RealSystemd.start()
            do {
                try await RealSystemd.$current.withValue(fixture) { try await function() }
            } catch {
                fixture.stop()
                throw error
            }
            fixture.stop()
        } catch {
            await ContainerTurn.shared.give()
            throw error
        }
        await ContainerTurn.shared.give()
    }
}

/// Turns at the container, first come first served: the container suites run one after another.
actor ContainerTurn {
    static let shared = ContainerTurn()

    private var taken = false
    private var waiting: [CheckedContinuation<Void, Never>] = []

    func take() async {
        guard self.taken else {
            self.taken = true
            return
        }
        await withCheckedContinuation { self.waiting.append($0) }
    }

    func give() {
        if self.waiting.isEmpty {
            self.taken = false
        } else {
            self.waiting.removeFirst().resume()
        }
    }
}

extension Trait where Self == RealSystemdScope {
    /// Runs the suite in one container with the package installed (see ``RealSystemd``).
    static var realSystemd: Self { Self() }
}
