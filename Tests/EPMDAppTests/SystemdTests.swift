import EPMDApp
import Foundation
import Logging
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite struct SystemdTests {
    @Test("LISTEN_FDS: count from 3, LISTEN_PID must be ours, malformed values are errors")
    func listenDescriptors() {
        #expect(Systemd.listenDescriptors(environment: [:]) == [])
        #expect(Systemd.listenDescriptors(environment: ["LISTEN_FDS": "2"]) == [3, 4])
        #expect(Systemd.listenDescriptors(environment: ["LISTEN_FDS": "2", "LISTEN_PID": "\(getpid())"]) == [3, 4])
        #expect(Systemd.listenDescriptors(environment: ["LISTEN_FDS": "2", "LISTEN_PID": "1"]) == [])
        #expect(Systemd.listenDescriptors(environment: ["LISTEN_FDS": "x"]) == nil)
    }

    @Test("notify sends one datagram to NOTIFY_SOCKET")
    func notify() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("notify-\(getpid()).sock").path
        let notify = try NotifySocket(path: path)
        defer { notify.close() }
        #expect(Systemd.notify("READY=1", environment: ["NOTIFY_SOCKET": path]))
        #expect(notify.received() == ["READY=1"])
        #expect(!Systemd.notify("READY=1", environment: [:]))
    }

    @Test("notify reaches an abstract socket ('@name', no NUL terminator); a path too long sends nothing")
    func notifyAbstract() throws {
        let name = "epmd-gateway-notify-\(getpid())"
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        try #require(fd >= 0)
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let pathBytes = [0] + Array(name.utf8)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: pathBytes) }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + pathBytes.count)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        try #require(bound == 0)
        #expect(Systemd.notify("STATUS=x\nREADY=1", environment: ["NOTIFY_SOCKET": "@\(name)"]))
        var buffer = [UInt8](repeating: 0, count: 64)
        let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        #expect(count == 16)
        #expect(Array(buffer.prefix(max(count, 0))) == Array("STATUS=x\nREADY=1".utf8))
        let tooLong = "/tmp/" + String(repeating: "n", count: 200)
        #expect(!Systemd.notify("READY=1", environment: ["NOTIFY_SOCKET": tooLong]))
        #expect(!Systemd.notify("READY=1", environment: ["NOTIFY_SOCKET": "/nonexistent/notify"]))
    }

    @Test("LISTEN_FDNAMES: one name per descriptor; missing, or a count that differs, leaves all unnamed")
    func descriptorNames() {
        #expect(Systemd.descriptorNames(environment: [:], count: 2) == [nil, nil])
        #expect(Systemd.descriptorNames(environment: ["LISTEN_FDNAMES": "epmd:http"], count: 2) == ["epmd", "http"])
        #expect(Systemd.descriptorNames(environment: ["LISTEN_FDNAMES": "epmd.socket"], count: 1) == ["epmd.socket"])
        #expect(Systemd.descriptorNames(environment: ["LISTEN_FDNAMES": "epmd:http"], count: 3) == [nil, nil, nil])
        #expect(Systemd.descriptorNames(environment: ["LISTEN_FDNAMES": "epmd:http:x"], count: 2) == [nil, nil])
        #expect(Systemd.descriptorNames(environment: ["LISTEN_FDNAMES": ":http"], count: 2) == [nil, "http"])
        #expect(Systemd.descriptorNames(environment: ["LISTEN_FDNAMES": ""], count: 1) == [nil])
        #expect(Systemd.descriptorNames(environment: ["LISTEN_FDNAMES": ""], count: 0) == [])
        #expect(Systemd.descriptorNames(environment: ["LISTEN_FDNAMES": "a"], count: 0) == [])
    }

    @Test("a descriptor named http is the HTTP front's; every other name (or none) is an epmd listener")
    func roles() {
        #expect(Systemd.Role(name: "http") == .http)
        for name in ["epmd", "epmd.socket", "unknown", "stored", "HTTP", "http.socket", nil] {
            #expect(Systemd.Role(name: name) == .epmd, "\(name ?? "nil")")
        }
    }

    static let tcp = Systemd.SocketKind(family: AF_INET, type: Int32(SOCK_STREAM.rawValue), listening: true)

    @Test("classify: epmd and http sockets sorted by name; anything but one listening TCP socket each is refused")
    func classify() throws {
        let tcp = Self.tcp
        let v6 = Systemd.SocketKind(family: AF_INET6, type: Int32(SOCK_STREAM.rawValue), listening: true)
        let all: (Int32) -> Systemd.SocketKind? = { $0 == 4 ? v6 : tcp }
        #expect(
            try Systemd.classify(descriptors: [3, 4, 5], names: ["epmd", "http", nil], kind: all)
                == .init(epmd: [3, 5], http: 4)
        )
        // Debian's epmd.socket: one unnamed-for-us dual-stack socket, no HTTP socket.
        #expect(
            try Systemd.classify(descriptors: [3], names: ["epmd.socket"], kind: { _ in v6 })
                == .init(epmd: [3], http: nil)
        )
        #expect(
            try Systemd.classify(descriptors: [3, 4], names: [nil, nil], kind: all) == .init(epmd: [3, 4], http: nil)
        )

        let datagram = Systemd.SocketKind(family: AF_INET, type: Int32(SOCK_DGRAM.rawValue), listening: false)
        let unix = Systemd.SocketKind(family: AF_UNIX, type: Int32(SOCK_STREAM.rawValue), listening: true)
        let connected = Systemd.SocketKind(family: AF_INET, type: Int32(SOCK_STREAM.rawValue), listening: false)
        #expect(!datagram.isListeningTCP && !unix.isListeningTCP && !connected.isListeningTCP && tcp.isListeningTCP)
        for (bad, expected) in [(datagram, "named \"http\""), (unix, "named \"http\""), (connected, "named \"http\"")] {
            #expect(throws: Systemd.ActivationError.notListening(fd: 4, name: "http")) {
                try Systemd.classify(descriptors: [3, 4], names: ["epmd", "http"], kind: { $0 == 4 ? bad : tcp })
            }
            #expect(
                Systemd.ActivationError.notListening(fd: 4, name: "http").description
                    == "systemd socket 4 (\(expected)) is not a listening TCP socket"
            )
        }
        #expect(throws: Systemd.ActivationError.notListening(fd: 3, name: nil)) {
            try Systemd.classify(descriptors: [3], names: [nil], kind: { _ in nil })
        }
        #expect(
            Systemd.ActivationError.notListening(fd: 3, name: nil).description
                == "systemd socket 3 (unnamed) is not a listening TCP socket"
        )
        #expect(throws: Systemd.ActivationError.noSockets) {
            try Systemd.classify(descriptors: [], names: [], kind: all)
        }
        #expect(throws: Systemd.ActivationError.noEPMDSocket) {
            try Systemd.classify(descriptors: [3], names: ["http"], kind: all)
        }
        #expect(throws: Systemd.ActivationError.severalHTTPSockets) {
            try Systemd.classify(descriptors: [3, 4, 5], names: ["epmd", "http", "http"], kind: all)
        }
        let seventeen = (0..<17).map { Int32(3 + $0) }
        #expect(throws: Systemd.ActivationError.tooMany(16)) {
            try Systemd.classify(descriptors: seventeen, names: seventeen.map { _ in nil }, kind: all)
        }
        #expect(
            try Systemd.classify(
                descriptors: Array(seventeen.prefix(16)) + [40],
                names: Array(repeating: nil, count: 16) + ["http"],
                kind: all
            ).epmd.count == 16
        )
    }

    @Test("SocketKind.of asks the kernel: a listening TCP socket passes; a bound one, a datagram socket, a pipe do not")
    func socketKind() throws {
        let listening = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        let idle = socket(AF_INET6, Int32(SOCK_STREAM.rawValue), 0)
        let datagram = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        var pipeEnds: [Int32] = [-1, -1]
        try #require(pipe(&pipeEnds) == 0)
        defer { for fd in [listening, idle, datagram] + pipeEnds { close(fd) } }
        try #require(listening >= 0 && idle >= 0 && datagram >= 0)
        try #require(listen(listening, 4) == 0)  // an unbound socket listens on a free port of 0.0.0.0
        #expect(Systemd.SocketKind.of(listening) == Self.tcp)
        #expect(Systemd.SocketKind.of(idle)?.isListeningTCP == false)
        #expect(Systemd.SocketKind.of(idle)?.family == AF_INET6)
        #expect(Systemd.SocketKind.of(datagram)?.isListeningTCP == false)
        #expect(Systemd.SocketKind.of(pipeEnds[0]) == nil)
    }

    @Test("the watchdog interval is half of WATCHDOG_USEC, only for our pid when WATCHDOG_PID is set")
    func watchdogInterval() {
        let pid: Int32 = 4242
        #expect(Systemd.watchdogInterval(environment: [:], processID: pid) == nil)
        #expect(Systemd.watchdogInterval(environment: ["WATCHDOG_USEC": "2000000"], processID: pid) == 1_000_000_000)
        #expect(Systemd.watchdogInterval(environment: ["WATCHDOG_USEC": "30000000"], processID: pid) == 15_000_000_000)
        #expect(
            Systemd.watchdogInterval(environment: ["WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "4242"], processID: pid)
                == 1_000_000_000
        )
        #expect(
            Systemd.watchdogInterval(environment: ["WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"], processID: pid)
                == nil
        )
        #expect(
            Systemd.watchdogInterval(environment: ["WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "x"], processID: pid)
                == nil
        )
        #expect(Systemd.watchdogInterval(environment: ["WATCHDOG_USEC": "0"], processID: pid) == nil)
        #expect(Systemd.watchdogInterval(environment: ["WATCHDOG_USEC": "-5"], processID: pid) == nil)
        #expect(Systemd.watchdogInterval(environment: ["WATCHDOG_USEC": "abc"], processID: pid) == nil)
        #expect(Systemd.watchdogInterval(environment: ["WATCHDOG_USEC": "1"], processID: pid) == 500)
        #expect(
            Systemd.watchdogInterval(environment: ["WATCHDOG_USEC": "\(UInt64.max)"], processID: pid) == UInt64.max / 2
        )
    }

    @Test("STATUS texts: the node count (singular for one), the epmd port, the HTTP port or that HTTP is off")
    func statusText() {
        #expect(
            Systemd.statusText(nodes: 3, epmdPort: 4369, httpPort: 4370)
                == "Serving 3 nodes (epmd port 4369, HTTP port 4370)"
        )
        #expect(
            Systemd.statusText(nodes: 1, epmdPort: 4369, httpPort: 4370)
                == "Serving 1 node (epmd port 4369, HTTP port 4370)"
        )
        #expect(
            Systemd.statusText(nodes: 0, epmdPort: 4369, httpPort: nil) == "Serving 0 nodes (epmd port 4369, HTTP off)"
        )
        #expect(Systemd.drainingStatusText(nodes: 2, graceSeconds: 10) == "Draining for 10 s, 2 nodes registered")
        #expect(Systemd.drainingStatusText(nodes: 1, graceSeconds: 0) == "Stopping, 1 node registered")
    }

    @Test("notifications without -systemd only when systemd started this very process (SYSTEMD_EXEC_PID)")
    func notifies() {
        let socket = ["NOTIFY_SOCKET": "/run/systemd/notify"]
        #expect(Systemd.notifies(systemdOption: true, environment: socket, processID: 7))
        #expect(!Systemd.notifies(systemdOption: true, environment: [:], processID: 7))
        #expect(!Systemd.notifies(systemdOption: true, environment: ["NOTIFY_SOCKET": ""], processID: 7))
        #expect(!Systemd.notifies(systemdOption: false, environment: socket, processID: 7))
        #expect(
            Systemd.notifies(
                systemdOption: false,
                environment: socket.merging(["SYSTEMD_EXEC_PID": "7"]) { $1 },
                processID: 7
            )
        )
        #expect(
            !Systemd.notifies(
                systemdOption: false,
                environment: socket.merging(["SYSTEMD_EXEC_PID": "8"]) { $1 },
                processID: 7
            )
        )
        #expect(!Systemd.notifies(systemdOption: false, environment: ["SYSTEMD_EXEC_PID": "7"], processID: 7))
    }

    /// What a test notifier reads and writes: its clock, the node count, and the messages it sent.
    final class Mailbox: Sendable {
        let now = Atomic<UInt64>(1_000_000_000)
        let nodes = Atomic<Int>(0)
        let accepts = Atomic<Bool>(true)
        let sent = Mutex<[(message: String, waits: Bool)]>([])
    }

    /// A notifier with a clock and a mailbox of its own.
    struct NotifierHarness {
        let mailbox = Mailbox()
        let notifier: SystemdNotifier

        init(watchdog: UInt64?) {
            let mailbox = self.mailbox
            self.notifier = SystemdNotifier(
                watchdogInterval: watchdog,
                nodeCount: { mailbox.nodes.load(ordering: .relaxed) },
                logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() },
                processID: 99,
                clock: { mailbox.now.load(ordering: .relaxed) },
                send: { message, waits in
                    mailbox.sent.withLock { $0.append((message, waits)) }
                    return mailbox.accepts.load(ordering: .relaxed)
                }
            )
        }

        var nodes: Int {
            get { self.mailbox.nodes.load(ordering: .relaxed) }
            nonmutating set { self.mailbox.nodes.store(newValue, ordering: .relaxed) }
        }

        /// The messages sent since the last call.
        func take() -> [String] {
            self.mailbox.sent.withLock { sent in
                defer { sent = [] }
                return sent.map(\.message)
            }
        }

        /// Whether each message sent since the last `take()` could wait.
        func waits() -> [Bool] { self.mailbox.sent.withLock { $0.map(\.waits) } }

        /// Advances the clock to `seconds` (since the harness's start) and fires the timer if it is due.
        func advance(to seconds: Double) {
            let at = 1_000_000_000 + UInt64(seconds * 1e9)
            self.mailbox.now.store(at, ordering: .relaxed)
            if let deadline = self.notifier.nextDeadline(), deadline <= at { self.notifier.timerFired(now: at) }
        }
    }

    @Test(
        "notifier: READY with STATUS and MAINPID at the loop's start, then WATCHDOG=1 every interval, without blocking"
    )
    func notifierReadyAndWatchdog() {
        let harness = NotifierHarness(watchdog: 500_000_000)
        harness.notifier.setPorts(epmd: 4369, http: 4370)
        #expect(harness.notifier.nextDeadline() == nil, "a timer before the loop started")
        harness.notifier.loopStarted()
        #expect(
            harness.take() == [
                "READY=1\nSTATUS=Serving 0 nodes (epmd port 4369, HTTP port 4370)\nMAINPID=99", "WATCHDOG=1",
            ]
        )
        #expect(harness.take() == [])
        harness.notifier.loopStarted()
        #expect(harness.take() == [], "READY twice")
        #expect(harness.notifier.nextDeadline() == 1_500_000_000)
        harness.advance(to: 0.4)
        #expect(harness.take() == [])
        harness.advance(to: 0.5)
        #expect(harness.take() == ["WATCHDOG=1"])
        harness.advance(to: 1.0)
        harness.advance(to: 1.5)
        #expect(harness.take() == ["WATCHDOG=1", "WATCHDOG=1"])
        // Pings go on through the drain, never waiting on systemd's queue.
        harness.notifier.drainBegan(graceSeconds: 5)
        #expect(harness.take() == ["STOPPING=1\nSTATUS=Draining for 5 s, 0 nodes registered"])
        harness.notifier.drainBegan(graceSeconds: 5)
        #expect(harness.take() == [], "STOPPING twice")
        harness.advance(to: 2.0)
        #expect(harness.waits() == [false])
        #expect(harness.take() == ["WATCHDOG=1"])
        harness.notifier.exited(status: 0)
        #expect(harness.take() == ["STATUS=Exited.\nERRNO=0"])
    }

    @Test("notifier: the node count's STATUS follows registry changes, at most one per second; none without a change")
    func notifierStatus() {
        let harness = NotifierHarness(watchdog: nil)
        harness.notifier.setPorts(epmd: 4369, http: nil)
        harness.notifier.loopStarted()
        #expect(harness.take() == ["READY=1\nSTATUS=Serving 0 nodes (epmd port 4369, HTTP off)\nMAINPID=99"])
        #expect(harness.notifier.nextDeadline() == nil, "a timer with no watchdog and no change")
        harness.nodes = 1
        harness.notifier.registryChanged()
        #expect(harness.notifier.nextDeadline() == 2_000_000_000, "not one second after the last status")
        harness.advance(to: 0.5)
        #expect(harness.take() == [])
        harness.advance(to: 1.0)
        #expect(harness.take() == ["STATUS=Serving 1 node (epmd port 4369, HTTP off)"])
        #expect(harness.notifier.nextDeadline() == nil)
        // Three changes within the second: one STATUS with the count at its end.
        for count in [2, 3, 4] {
            harness.nodes = count
            harness.notifier.registryChanged()
            harness.advance(to: 1.2 + Double(count) / 10)
        }
        #expect(harness.take() == [])
        harness.advance(to: 2.0)
        #expect(harness.take() == ["STATUS=Serving 4 nodes (epmd port 4369, HTTP off)"])
        // A register-then-unregister within the second: the count is as before, nothing is sent.
        harness.notifier.registryChanged()
        harness.advance(to: 3.5)
        #expect(harness.take() == [])
        #expect(harness.notifier.nextDeadline() == nil)
        // Draining: no count updates any more.
        harness.notifier.drainBegan(graceSeconds: 0)
        #expect(harness.take() == ["STOPPING=1\nSTATUS=Stopping, 4 nodes registered"])
        harness.nodes = 0
        harness.notifier.registryChanged()
        #expect(harness.notifier.nextDeadline() == nil)
    }

    @Test("notifier: failed sends are counted and change nothing else")
    func notifierFailures() {
        let harness = NotifierHarness(watchdog: 1_000_000_000)
        harness.mailbox.accepts.store(false, ordering: .relaxed)
        harness.notifier.loopStarted()
        harness.advance(to: 1.0)
        harness.advance(to: 2.0)
        #expect(harness.take().count == 4)
        #expect(harness.notifier.failures == 4)
        #expect(harness.notifier.nextDeadline() == 4_000_000_000)
    }

    @Test("the environment is read from environ: the same values getenv finds")
    func environment() throws {
        let environment = ProcessInfoEnvironment.current
        let path = try #require(getenv("PATH"))
        #expect(environment["PATH"] == String(cString: path))
        #expect(environment.count == ProcessInfo.processInfo.environment.count)
        for (name, value) in ProcessInfo.processInfo.environment {
            #expect(environment[name] == value, "\(name)")
        }
    }
}
