import Foundation
import GatewayTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The process as an operator runs it: signals, `-address`, usage errors, and the two gateways-in-a-row
/// rule. Socket activation (`-systemd`) is in `SocketActivationTests`, under systemd's own tool.
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
