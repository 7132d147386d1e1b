import Foundation
import GatewayTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The status page at `GET /` in a real headless Chromium, live over the `/v1/events` stream: a real
/// `erl` node appears in the table, and after a SIGKILL it disappears without the page reloading.
@Suite(.timeLimit(.minutes(2)))
struct StatusPageTests {
    /// The JavaScript for "the row of `name`", by attribute comparison (names are untrusted, so not
    /// spliced into a CSS selector).
    static func row(_ name: String) throws -> String {
        "[...document.querySelectorAll('#nodes [data-node]')].find(r => r.getAttribute('data-node') === "
            + (try CDPDriver.jsString(name)) + ")"
    }

    @Test(
        "a real erl node appears on the page and disappears after SIGKILL, without a reload",
        .enabled(
            if: !TestBinary.isCEPMD && ExternalTool.usable("chromium") && ExternalTool.usable("erl")
                && ExternalTool.usable("python3")
        )
    )
    func liveNodeTable() async throws {
        let httpPort = try FreePort.next()
        let gateway = try await GatewayProcess.start(arguments: ["--http-port", String(httpPort)])
        defer { gateway.stop() }
        let browser = try await CDPDriver.start(url: "http://127.0.0.1:\(httpPort)/")
        defer { browser.stop() }

        let connected = try await browser.send("wait 20 document.getElementById('state').textContent === 'connected'")
        #expect(connected.ok, "\(connected.line)")

        let node = try await ErlangNode.start(
            name: NodeNames.unique("page"),
            cookie: NodeNames.cookie(),
            epmdPort: gateway.port
        )
        defer { node.kill() }
        let nodePort = try await node.waitUntilRegistered(epmdPort: gateway.port)
        let row = try Self.row(node.name)

        let shown = try await browser.send("wait 20 \(row) !== undefined")
        try #require(shown.ok, "the node never appeared: \(shown.line)")
        let cells = try await browser.send("eval [...\(row).cells].map(c => c.textContent).join('|')")
        let text = try #require(cells.string, "\(cells.line)")
        #expect(text.hasPrefix("\(node.name)|\(nodePort)|normal|"), "row: \(text)")
        #expect(text.hasSuffix("|127.0.0.1"), "row: \(text)")
        #expect(try await browser.send("eval window.__noReload = 1").number == 1)

        #expect(node.kill(), "erl did not exit after SIGKILL")
        let gone = try await browser.send("wait 20 \(row) === undefined")
        #expect(gone.ok, "the node stayed on the page: \(gone.line)")
        let same = try await browser.send("eval window.__noReload === 1")
        #expect(same.bool == true, "the page reloaded: \(same.line)")
        let state = try await browser.send("eval document.getElementById('state').textContent")
        #expect(state.string == "connected", "\(state.line)")
        let events = try await browser.send(
            "wait 5 [...document.querySelectorAll('#events li')].map(li => li.textContent).join('\\n')"
        )
        let log = events.string ?? ""
        #expect(log.contains("unregistered\(node.name)"), "events: \(events.line)")
        #expect(log.contains("registered\(node.name)port \(nodePort)"), "events: \(events.line)")
        #expect(try await browser.send("quit").ok)
    }

    @Test(
        "a node name with markup is shown as text and never parsed as HTML",
        .enabled(if: !TestBinary.isCEPMD && ExternalTool.usable("chromium") && ExternalTool.usable("python3"))
    )
    func namesAreText() async throws {
        let httpPort = try FreePort.next()
        let gateway = try await GatewayProcess.start(arguments: ["--http-port", String(httpPort)])
        defer { gateway.stop() }
        let name = "<img src=x onerror=\"window.__injected=1\">"
        let (fd, reply) = try await WireClient.register(port: gateway.port, name: name, nodePort: 12345)
        var registered = true
        defer { if registered { close(fd) } }
        #expect(reply.prefix(2) == [0x76, 0])

        // Registered before the page opens: it arrives in the `reset` frame.
        let browser = try await CDPDriver.start(url: "http://127.0.0.1:\(httpPort)/")
        defer { browser.stop() }
        let row = try Self.row(name)
        let shown = try await browser.send("wait 20 \(row) !== undefined")
        try #require(shown.ok, "the node never appeared: \(shown.line)")
        let first = try await browser.send("eval \(row).cells[0].textContent")
        #expect(first.string == name, "\(first.line)")
        let images = try await browser.send("eval document.images.length + ':' + (window.__injected === undefined)")
        #expect(images.string == "0:true", "\(images.line)")

        // Gone when the registration closes, through an `unregistered` frame.
        close(fd)
        registered = false
        let gone = try await browser.send("wait 20 \(row) === undefined")
        #expect(gone.ok, "\(gone.line)")
        let events = try await browser.send("eval document.getElementById('events').textContent")
        #expect(events.string?.contains("unregistered\(name)closed") == true, "\(events.line)")
        #expect(try await browser.send("quit").ok)
    }
}

/// `Support/chromium_cdp.py` as a child process: headless Chromium driven over the DevTools pipe. It
/// takes one command per line on stdin (`eval JS`, `wait SECONDS JS`, `screenshot PATH`, `quit`) and
/// answers each with one JSON line. Its stdin and stdout are socket pairs, so writes never raise
/// SIGPIPE and reads never block a thread. Every wait is bounded three times: by the command, by the
/// driver's own deadline, and here.
final class CDPDriver: @unchecked Sendable {
    // @unchecked: the process and descriptors are only touched from the test that owns this object.
    let process: Process
    let stderrURL: URL
    private let input: Int32
    private let output: Int32
    private var buffer: [UInt8] = []
    private var quitting = false

    static let script = RepositoryRoot.appending("Tests/IntegrationTests/Support/chromium_cdp.py")

    /// One answer of the driver.
    struct Answer: Sendable {
        /// The JSON line as received (for messages).
        var line: String
        var ok: Bool
        var bool: Bool?
        var number: Double?
        var string: String?
    }

    /// Starts the driver (and Chromium) on `url`; returns once the page has loaded.
    static func start(url: String, deadline: Int = 100) async throws -> CDPDriver {
        let python = try ExternalTool.require("python3")
        let chromium = try ExternalTool.require("chromium")
        let stdin = try Self.socketPair()
        let stdout = try Self.socketPair()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [
            Self.script.path, "--chromium", chromium, "--deadline", String(deadline), url,
        ]
        let stderrURL = FileManager.default.temporaryDirectory
            .appendingPathComponent("epmd-gateway-cdp-\(UUID().uuidString).log")
        _ = FileManager.default.createFile(atPath: stderrURL.path, contents: nil)
        let childIn = FileHandle(fileDescriptor: stdin.child, closeOnDealloc: true)
        let childOut = FileHandle(fileDescriptor: stdout.child, closeOnDealloc: true)
        process.standardInput = childIn
        process.standardOutput = childOut
        process.standardError = try FileHandle(forWritingTo: stderrURL)
        let driver = CDPDriver(process: process, stderrURL: stderrURL, input: stdin.parent, output: stdout.parent)
        do {
            try process.runUnmasked()
        } catch {
            try? childIn.close()
            try? childOut.close()
            throw error
        }
        // The child has its copies: without closing ours, its exit would never read as EOF here.
        try? childIn.close()
        try? childOut.close()
        let ready = try await driver.nextAnswer(within: .seconds(60))
        guard ready.ok else { throw TestFailure("the page did not open: \(ready.line)\n\(driver.log)") }
        return driver
    }

    private init(process: Process, stderrURL: URL, input: Int32, output: Int32) {
        self.process = process
        self.stderrURL = stderrURL
        self.input = input
        self.output = output
    }

    var log: String { (try? String(contentsOf: self.stderrURL, encoding: .utf8)) ?? "" }

    /// A JavaScript string literal for `text` (a JSON string is one).
    static func jsString(_ text: String) throws -> String {
        let data = try JSONSerialization.data(withJSONObject: [text], options: [.fragmentsAllowed])
        return String(decoding: data.dropFirst().dropLast(), as: UTF8.self)
    }

    /// Sends one command (one line: no newlines inside) and waits for its answer: the command's own
    /// time (`wait SECONDS ...`) plus 15 s.
    func send(_ command: String) async throws -> Answer {
        precondition(!command.contains("\n"), "one command per line")
        let words = command.split(separator: " ", maxSplits: 2)
        let waits = words.first == "wait" ? words.dropFirst().first.flatMap { Double($0) } ?? 0 : 0
        self.quitting = self.quitting || command == "quit"
        guard WireClient.send(self.input, Array((command + "\n").utf8)) else {
            throw TestFailure("the driver is gone (sending \(command)): \(self.log)")
        }
        return try await self.nextAnswer(within: .seconds(waits + 15))
    }

    /// The next JSON line from the driver, parsed.
    private func nextAnswer(within limit: Duration) async throws -> Answer {
        var line: String?
        var ended = false
        _ = try await Poll.until(timeout: limit, interval: .milliseconds(20)) {
            ended = self.readAvailable()
            line = self.takeLine()
            return line != nil || ended
        }
        guard let line else {
            let why = ended ? "closed its output" : "gave no answer within \(limit)"
            throw TestFailure(
                "the Chromium driver \(why): \(String(decoding: self.buffer, as: UTF8.self))\n\(self.log)"
            )
        }
        let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
        let value = object?["value"]
        return Answer(
            line: line,
            ok: object?["ok"] as? Bool ?? false,
            bool: value as? Bool,
            number: (value as? NSNumber)?.doubleValue,
            string: value as? String
        )
    }

    /// Reads what is there without blocking; returns true at EOF.
    private func readAvailable() -> Bool {
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = chunk.withUnsafeMutableBytes {
                recv(self.output, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT))
            }
            if count > 0 {
                self.buffer += chunk[0..<count]
                continue
            }
            if count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) { return false }
            return true
        }
    }

    private func takeLine() -> String? {
        guard let end = self.buffer.firstIndex(of: UInt8(ascii: "\n")) else { return nil }
        let line = String(decoding: self.buffer[..<end], as: UTF8.self)
        self.buffer.removeSubrange(...end)
        return line
    }

    /// Ends the driver: after `quit` it gets 5 s to close Chromium and exit by itself; then SIGTERM
    /// (it closes Chromium too), and SIGKILL 10 s later if it still runs. Chromium dies with it in
    /// any case (the driver sets PR_SET_PDEATHSIG for it).
    func stop() {
        let steps: [(signal: Int32?, grace: Duration)] = [
            (nil, .seconds(self.quitting ? 5 : 0)), (SIGTERM, .seconds(10)), (SIGKILL, .seconds(5)),
        ]
        for (signal, grace) in steps {
            guard self.process.isRunning else { return }
            if let signal { kill(self.process.processIdentifier, signal) }
            let process = self.process
            _ = Poll.blockingUntil(timeout: grace, interval: .milliseconds(10)) { !process.isRunning }
        }
    }

    /// A Unix stream socket pair, both ends close-on-exec (the child gets its end through dup2).
    private static func socketPair() throws -> (parent: Int32, child: Int32) {
        var fds: [Int32] = [-1, -1]
        let type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        guard socketpair(AF_UNIX, type, 0, &fds) == 0 else { throw TestFailure("socketpair: errno \(errno)") }
        return (fds[0], fds[1])
    }

    deinit {
        self.stop()
        close(self.input)
        close(self.output)
        try? FileManager.default.removeItem(at: self.stderrURL)
    }
}
