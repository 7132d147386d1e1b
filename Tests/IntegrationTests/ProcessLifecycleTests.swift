import Foundation
import GatewayTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The process as an operator runs it: signals, socket activation (the closest substitute for systemd
/// here, where PID 1 is not systemd), `-address`, usage errors, and the two gateways-in-a-row rule.
@Suite(.timeLimit(.minutes(2))) struct ProcessLifecycleTests {
    @Test("SIGTERM stops the gateway with exit 0 and closes registrations", .enabled(if: !TestBinary.isCEPMD))
    func sigterm() async throws {
        let gateway = try await GatewayProcess.start()
        let (fd, reply) = try await WireClient.register(port: gateway.port, name: "term", nodePort: 1)
        defer { close(fd) }
        #expect(reply.prefix(2) == [0x76, 0])
        kill(gateway.process.processIdentifier, SIGTERM)
        try #require(await gateway.waitForExit(within: .seconds(30)) != nil, "still running 30 s after SIGTERM")
        #expect(gateway.process.terminationReason == .exit)
        #expect(gateway.process.terminationStatus == 0)
        let end = await WireClient.collect(fd, for: .seconds(5))
        #expect(end.bytes == [] && (end.ending == .eof || end.ending == .reset(ECONNRESET)), "\(end)")
    }

    @Test("-delay_accept and -delay_write slow the answers down but every request is still answered")
    func delays() async throws {
        let gateway = try await GatewayProcess.start(arguments: ["-delay_accept", "1", "-delay_write", "1"])
        defer { gateway.stop() }
        let clock = ContinuousClock()
        let start = clock.now
        let reply = try await WireClient.request(port: gateway.port, [110])
        let elapsed = start.duration(to: clock.now)
        #expect(reply.bytes == WireClient.be32(UInt32(gateway.port)), "\(reply)")
        #expect(reply.ending.closed)
        #expect(elapsed >= .milliseconds(900), "NAMES answered after \(elapsed), before the delays")
    }

    @Test("unknown options print epmd's usage on stderr and exit 1")
    func usage() throws {
        let result = try Command.run(TestBinary.url.path, ["-h"])
        #expect(result.status == 1)
        #expect(result.stderr.hasPrefix("usage: epmd [-d|-debug] [DbgExtra...] [-address List]"))
        #expect(result.stdout.isEmpty)
        let zero = try Command.run(TestBinary.url.path, ["-port", "0"])
        #expect(zero.status == 1)
    }

    @Test("-address: listens on the listed address plus 127.0.0.1, not elsewhere")
    func address() async throws {
        let gateway = try await GatewayProcess.start(arguments: ["-address", "127.0.0.2"])
        defer { gateway.stop() }
        #expect(WireClient.canConnect(port: gateway.port, host: "127.0.0.1"))
        #expect(WireClient.canConnect(port: gateway.port, host: "127.0.0.2"))
        #expect(!WireClient.canConnect(port: gateway.port, host: "127.0.0.3"))
        let names = try await WireClient.names(port: gateway.port, host: "127.0.0.2")
        #expect(names.prefix == UInt32(gateway.port))
    }

    @Test("-address with a hostname is refused with exit 1")
    func addressHostname() throws {
        let port = try FreePort.next()
        let result = try Command.run(TestBinary.url.path, ["-port", String(port), "-address", "localhost"])
        #expect(result.status == 1)
        #expect(result.stderr.contains("cannot parse IP address \"localhost\""))
    }

    @Test(
        "-systemd: serves the inherited socket, reports READY=1 on NOTIFY_SOCKET, and answers with the configured port",
        .enabled(if: !TestBinary.isCEPMD && ExternalTool.usable("python3"))
    )
    func systemdActivation() async throws {
        let python = try ExternalTool.require("python3")
        let port = try FreePort.next()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sd-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let notifyPath = directory.appendingPathComponent("notify").path
        // What systemd does for a .socket unit: bind and listen, hand the socket over as fd 3 with
        // LISTEN_FDS/LISTEN_PID, and listen for sd_notify datagrams on NOTIFY_SOCKET.
        let script = """
            import os, socket, sys
            port, notify, binary = int(sys.argv[1]), sys.argv[2], sys.argv[3]
            ready = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            ready.bind(notify)
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", port))
            listener.listen(128)
            pid = os.fork()
            if pid == 0:
                os.dup2(listener.fileno(), 3)
                os.set_inheritable(3, True)
                env = dict(os.environ, LISTEN_FDS="1", LISTEN_PID=str(os.getpid()), NOTIFY_SOCKET=notify)
                env["ERL_EPMD_PORT"] = "4369"
                os.execve(binary, [binary, "-systemd"], env)
            listener.close()
            ready.settimeout(10)
            print(ready.recv(4096).decode().replace("\\n", "|"), flush=True)
            print(pid, flush=True)
            sys.stdin.read()
            os.kill(pid, 15)
            os.waitpid(pid, 0)
            print(ready.recv(4096).decode().replace("\\n", "|"), flush=True)
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = ["-c", script, String(port), notifyPath, TestBinary.url.path]
        let input = Pipe()
        let output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        try process.runUnmasked()
        defer {
            if process.isRunning { process.terminate() }
        }
        let reader = output.fileHandleForReading
        var text = ""
        let deadline = Date().addingTimeInterval(10)
        while !text.contains("MAINPID") && Date() < deadline {
            let chunk = reader.availableData
            if chunk.isEmpty { break }
            text += String(decoding: chunk, as: UTF8.self)
        }
        #expect(text.contains("READY=1"))
        #expect(text.contains("STATUS=Processing port mapping requests..."))
        // The inherited socket answers; NAMES reports the configured port (4369), not the socket's.
        let names = try await WireClient.names(port: port)
        #expect(names.prefix == 4369)
        let (fd, reply) = try await WireClient.register(port: port, name: "socketactivated", nodePort: 9)
        #expect(reply.prefix(2) == [0x76, 0])
        #expect(try await WireClient.names(port: port).text == "name socketactivated at port 9\n")
        close(fd)
        try input.fileHandleForWriting.close()
        process.waitUntilExit()
        let rest = String(decoding: reader.readDataToEndOfFile(), as: UTF8.self)
        #expect(rest.contains("STATUS=Exited.|ERRNO=0"))
    }

    /// One line of C epmd's `dbg_printf` on stderr: `epmd: <ctime>: <message>\r\n`.
    static var debugLine: Regex<(Substring, Substring)> {
        #/epmd: [A-Z][a-z]{2} [A-Z][a-z]{2} [ 0-9][0-9] [0-9]{2}:[0-9]{2}:[0-9]{2} [0-9]{4}: (.*)\r/#
    }

    @Test("-d: stderr holds only C epmd's lines, 'epmd: <ctime>: <message>\\r\\n', at -d's level")
    func debugLines() async throws {
        let gateway = try await GatewayProcess.start(arguments: ["-d"])
        #expect(try await WireClient.names(port: gateway.port).prefix == UInt32(gateway.port))
        await gateway.stop()
        // By scalars: "\r\n" is one Character, so splitting the String at "\n" would not split there.
        let lines = gateway.log.unicodeScalars.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        #expect(lines.last == "", "the log does not end with a line end: \(gateway.log)")
        var messages: [String] = []
        for line in lines.dropLast() {
            let match = try #require(try Self.debugLine.wholeMatch(in: line), "not epmd's format: \(line)")
            messages.append(String(match.1))
        }
        #expect(messages.contains("epmd running - daemon = 0"), "\(messages)")
        if !TestBinary.isCEPMD {
            // Level 2 and below (`-d -d`) are not printed at `-d`.
            #expect(
                !messages.contains { $0.hasPrefix("Local peer connected") || $0.hasPrefix("gateway ") },
                "\(messages)"
            )
            #expect(messages.contains("got signal 15, shutting down"), "\(messages)")
        }
    }

    @Test(
        "stderr that is the journal (JOURNAL_STREAM names its device:inode): '<N>epmd: <message>' lines, no time stamp",
        .enabled(if: !TestBinary.isCEPMD)
    )
    func journalLines() async throws {
        // systemd sets JOURNAL_STREAM to the st_dev:st_ino of the stream it connects to stderr; here stderr
        // is the test's log file, and the shell computes the same pair before it execs the gateway.
        let gateway = try await GatewayProcess.start(
            arguments: ["-d", "-d"],
            shellPrefix: "JOURNAL_STREAM=$(stat -L -c %d:%i /proc/self/fd/2); export JOURNAL_STREAM;"
        )
        #expect(try await WireClient.names(port: gateway.port).prefix == UInt32(gateway.port))
        await gateway.stop()
        let lines = gateway.log.split(separator: "\n").map(String.init)
        #expect(lines.contains("<6>epmd: epmd running - daemon = 0"), "\(lines)")
        #expect(lines.contains("<7>epmd: gateway starting -> running"), "\(lines)")
        // The default HTTP port may be taken by another gateway: then a warning, at priority 4.
        #expect(
            lines.contains { $0.hasPrefix("<6>epmd: HTTP front on 127.0.0.1 port ") }
                || lines.contains { $0.hasPrefix("<4>epmd: HTTP front disabled, the epmd port runs on: ") },
            "\(lines)"
        )
        #expect(lines.contains("<7>epmd: gateway draining -> stopped"), "\(lines)")
        // None of the gateway's lines in the stderr format. (The epoll loop still takes C epmd's numeric
        // levels and writes its own lines until it takes a `Logger` too.)
        #expect(
            !lines.contains { $0.hasPrefix("epmd: ") && ($0.contains(": epmd running") || $0.contains(": gateway ")) }
        )
    }
}
