import EPMDPosix
import EPMDProtocol
import EPMDRegistry
import EPMDServer
import Foundation
import GatewayTestSupport
import InMemoryLogging
import Logging
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite(.timeLimit(.minutes(1))) struct EPMDServerTests {
    @Test("register, look up, list, and unregister on close")
    func lifecycle() throws {
        let harness = try ServerHarness()
        defer { harness.stop() }
        let (fd, reply) = try WireClient.register(port: harness.port, name: "foo", nodePort: 5555)
        #expect(reply.count == 6 && reply[0] == 0x76 && reply[1] == 0)
        #expect(try WireClient.names(port: harness.port).text == "name foo at port 5555\n")
        let found = try #require(try WireClient.request(port: harness.port, [122] + Array("foo".utf8)).untilClose)
        #expect(found == [0x77, 0, 0x15, 0xB3, 0x4D, 0, 0, 6, 0, 5, 0, 3, 0x66, 0x6F, 0x6F, 0, 0])
        close(fd)
        #expect(
            try Poll.blockingUntil(timeout: .seconds(2)) { try WireClient.names(port: harness.port).text.isEmpty }
                != nil
        )
        #expect(try WireClient.request(port: harness.port, [122] + Array("foo".utf8)).untilClose == [0x77, 1])
        #expect(harness.server.statistics.requests[.alive2] == 1)
    }

    @Test("a stray byte on a registration unregisters it and closes the connection")
    func strayByte() throws {
        let harness = try ServerHarness()
        defer { harness.stop() }
        let (fd, _) = try WireClient.register(port: harness.port, name: "stray", nodePort: 1)
        defer { close(fd) }
        WireClient.send(fd, [0])
        #expect(WireClient.readToEOF(fd) == [])
        #expect(try WireClient.names(port: harness.port).text.isEmpty)
        #expect(harness.server.statistics.malformed[.strayData] == 1)
    }

    @Test("a duplicate name gets result 1 and the first registration is untouched")
    func duplicate() throws {
        let harness = try ServerHarness()
        defer { harness.stop() }
        let (first, _) = try WireClient.register(port: harness.port, name: "dup", nodePort: 1)
        defer { close(first) }
        let (second, reply) = try WireClient.register(port: harness.port, name: "dup", nodePort: 2, high: 5)
        defer { close(second) }
        #expect(reply == [0x79, 1, 0, 0x63])
        #expect(try WireClient.names(port: harness.port).text == "name dup at port 1\n")
        #expect(harness.server.statistics.registrationFailures[.nameInUse] == 1)
    }

    @Test("malformed packets close only their own connection and are counted")
    func malformed() throws {
        let harness = try ServerHarness()
        defer { harness.stop() }
        let (fd, _) = try WireClient.register(port: harness.port, name: "keep", nodePort: 7)
        defer { close(fd) }
        for bytes in [[0, 0], [0xFF, 0xFF], [0, 1, 97], [0, 1, 110, 110], [0, 3, 120, 0, 0]] as [[UInt8]] {
            let conn = try WireClient.connect(port: harness.port)
            WireClient.send(conn, bytes)
            #expect(WireClient.readToEOF(conn) == [])
            close(conn)
        }
        #expect(try WireClient.names(port: harness.port).text == "name keep at port 7\n")
        let statistics = harness.server.statistics
        #expect(statistics.malformed[.protocolError(.invalidLength)] == 2)
        #expect(statistics.malformed[.protocolError(.unknownCode)] == 1)
        #expect(statistics.malformed[.protocolError(.overrun)] == 1)
        #expect(statistics.malformed[.protocolError(.alive2TooSmall)] == 1)
    }

    @Test("the packet timeout counts from connect: a client dribbling bytes is closed")
    func dribbler() throws {
        let harness = try ServerHarness(packetTimeout: 1)
        defer { harness.stop() }
        let fd = try WireClient.connect(port: harness.port)
        defer { close(fd) }
        let start = Date()
        // A 3057-byte request sent 1 byte every 200 ms would take ten minutes.
        WireClient.send(fd, [0x0B, 0xF1])
        var closed = false
        for _ in 0..<20 {
            usleep(200_000)
            if Glibc.send(fd, [110], 1, Int32(MSG_NOSIGNAL)) < 0 {
                closed = true
                break
            }
        }
        if !closed { closed = WireClient.readToEOF(fd) != nil }
        #expect(closed)
        #expect(Date().timeIntervalSince(start) < 3)
        #expect(harness.server.statistics.timeouts == 1)
    }

    @Test("registrations outlive the packet timeout, whether the request came with the connect or later")
    func registrationsAreNotTimed() throws {
        let harness = try ServerHarness(packetTimeout: 1)
        defer { harness.stop() }
        // Sent at once: usually served by the speculative read right after accept.
        let (quick, reply) = try WireClient.register(port: harness.port, name: "quick", nodePort: 1)
        defer { close(quick) }
        #expect(reply.prefix(2) == [0x76, 0])
        // Sent after a pause: served through epoll.
        let slow = try WireClient.connect(port: harness.port)
        defer { close(slow) }
        usleep(300_000)
        let body = Alive2Request(port: 2, name: Array("slow".utf8)).encode()
        WireClient.send(slow, [0, UInt8(body.count)] + body)
        #expect(try WireClient.read(slow, count: 6).prefix(2) == [0x76, 0])
        // A failed registration (duplicate) holds no name: it is closed by the timeout.
        let (duplicate, refused) = try WireClient.register(port: harness.port, name: "quick", nodePort: 3)
        defer { close(duplicate) }
        #expect(refused == [0x76, 1, 0, 0, 0, 0x63])
        usleep(2_500_000)
        #expect(try WireClient.names(port: harness.port).text == "name slow at port 2\nname quick at port 1\n")
        #expect(WireClient.readToEOF(duplicate) == [])
        #expect(harness.server.statistics.timeouts == 1)
    }

    @Test("KILL: refused with live nodes, accepted when empty, and the loop ends")
    func kill() throws {
        let harness = try ServerHarness()
        let (fd, _) = try WireClient.register(port: harness.port, name: "live", nodePort: 1)
        #expect(try WireClient.request(port: harness.port, [107]).untilClose == Array("NO".utf8))
        close(fd)
        #expect(
            try Poll.blockingUntil(timeout: .seconds(2)) { try WireClient.names(port: harness.port).text.isEmpty }
                != nil
        )
        #expect(try WireClient.request(port: harness.port, [107]).untilClose == Array("OK".utf8))
        #expect(harness.waitForExit() == .killed)
    }

    @Test("relaxed KILL closes live registrations")
    func relaxedKill() throws {
        let harness = try ServerHarness(relaxed: true)
        let (fd, _) = try WireClient.register(port: harness.port, name: "live", nodePort: 1)
        defer { close(fd) }
        #expect(try WireClient.request(port: harness.port, [107]).untilClose == Array("OK".utf8))
        #expect(harness.waitForExit() == .killed)
        #expect(WireClient.readToEOF(fd) == [])
    }

    @Test("STOP: relaxed only; closes the node's connection; NOEXISTSTOPPED for unknown names")
    func stop() throws {
        let strict = try ServerHarness()
        defer { strict.stop() }
        #expect(try WireClient.request(port: strict.port, [115] + Array("foo".utf8)).untilClose == [])

        let harness = try ServerHarness(relaxed: true)
        defer { harness.stop() }
        let (fd, _) = try WireClient.register(port: harness.port, name: "foo", nodePort: 1)
        defer { close(fd) }
        #expect(
            try WireClient.request(port: harness.port, [115] + Array("foo".utf8) + [0]).untilClose
                == Array("STOPPED".utf8)
        )
        #expect(WireClient.readToEOF(fd) == [])
        #expect(try WireClient.names(port: harness.port).text.isEmpty)
        #expect(
            try WireClient.request(port: harness.port, [115] + Array("xxx42".utf8)).untilClose
                == Array("NOEXISTSTOPPED".utf8)
        )
    }

    @Test("a reply write that fails (peer reset during -delay_write) leaves nothing registered")
    func resetBeforeReply() throws {
        let harness = try ServerHarness(delayWrite: 1)
        defer { harness.stop() }
        let fd = try WireClient.connect(port: harness.port)
        let body = Alive2Request(port: 1, name: Array("reset".utf8)).encode()
        WireClient.send(fd, [0, UInt8(body.count)] + body)
        usleep(200_000)
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        close(fd)
        usleep(1_500_000)
        #expect(try WireClient.names(port: harness.port).text.isEmpty)
        #expect(harness.server.registry.isEmpty)
    }

    @Test("DUMP lists active and old names")
    func dump() throws {
        let harness = try ServerHarness()
        defer { harness.stop() }
        let (old, _) = try WireClient.register(port: harness.port, name: "old", nodePort: 1)
        close(old)
        #expect(
            try Poll.blockingUntil(timeout: .seconds(2)) { try WireClient.names(port: harness.port).text.isEmpty }
                != nil
        )
        let (fd, _) = try WireClient.register(port: harness.port, name: "new", nodePort: 2)
        defer { close(fd) }
        let reply = try #require(try WireClient.request(port: harness.port, [100]).untilClose)
        let text = String(decoding: reply.dropFirst(4), as: UTF8.self)
        #expect(text.hasPrefix("active name     <new> at port 2, fd = "))
        #expect(text.contains("\n\0old/unused name <old>, port = 1, fd = "))
        #expect(text.hasSuffix(" \n\0"))
    }

    @Test("IPv6 loopback registrations and lookups", .enabled(if: ServerTestSupport.runIPv6))
    func ipv6() throws {
        let harness = try ServerHarness()
        defer { harness.stop() }
        let fd = try WireClient.connect(port: harness.port, host: "::1")
        defer { close(fd) }
        let body = Alive2Request(port: 4711, name: Array("six".utf8)).encode()
        WireClient.send(fd, [0, UInt8(body.count)] + body)
        #expect(try WireClient.read(fd, count: 6).prefix(2) == [0x76, 0])
        #expect(try WireClient.names(port: harness.port).text == "name six at port 4711\n")
    }
}

enum ServerTestSupport {
    /// In CI (`CI` set) the IPv6 test always runs, and fails if the machine has no ::1.
    static var runIPv6: Bool { CIRule.enabled(ifAvailable: self.hasIPv6Loopback) }

    static var hasIPv6Loopback: Bool {
        let fd = socket(AF_INET6, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        guard let address = SocketAddress(literal: "::1", port: 0) else { return false }
        return address.withSockaddrPublic { bind(fd, $0, $1) } == 0
    }
}

/// Over-long and overfull requests end as in C epmd: it reads at most 3059 bytes (its input buffer)
/// before it decides, so bytes beyond a request are left unread and its close is a reset (RST).
@Suite(.timeLimit(.minutes(1))) struct OverlongFrameTests {
    /// Reads until EOF or an error: the bytes, and whether the connection ended with a reset.
    static func outcome(_ fd: Int32) -> (bytes: [UInt8], reset: Bool) {
        var result: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count > 0 {
                result += buffer[0..<count]
                continue
            }
            return (result, count < 0 && errno == ECONNRESET)
        }
    }

    static func exchange(_ port: UInt16, _ bytes: [UInt8]) throws -> (bytes: [UInt8], reset: Bool) {
        let fd = try WireClient.connect(port: port)
        defer { close(fd) }
        WireClient.send(fd, bytes)
        usleep(100_000)
        return self.outcome(fd)
    }

    @Test("a frame longer than 3057 bytes, sent whole, is closed with a reset (C epmd: RST)")
    func overlongResets() throws {
        let harness = try ServerHarness()
        defer { harness.stop() }
        for (length, body) in [(3058, 3058), (3058, 4000), (65535, 65535)] {
            let result = try Self.exchange(
                harness.port,
                [UInt8(length >> 8), UInt8(length & 0xFF)] + [UInt8](repeating: 110, count: body)
            )
            #expect(result.bytes.isEmpty, "length \(length), body \(body)")
            #expect(result.reset, "length \(length), body \(body)")
        }
        #expect(harness.server.statistics.malformed[.protocolError(.invalidLength)] == 3)
    }

    @Test("an over-long length alone (nothing unread) is closed in order, as in C epmd (FIN)")
    func overlongHeaderOnly() throws {
        let harness = try ServerHarness()
        defer { harness.stop() }
        let result = try Self.exchange(harness.port, [0x0B, 0xF2])
        #expect(result.bytes.isEmpty && !result.reset)
        let padded = try Self.exchange(harness.port, [0x0B, 0xF2, 110, 110])
        #expect(padded.bytes.isEmpty && !padded.reset)
    }

    @Test("a 3057-byte request with one byte more: served from the first 3059 bytes, then reset (C epmd)")
    func fullBufferThenMore() throws {
        let harness = try ServerHarness()
        defer { harness.stop() }
        let request: [UInt8] = [0x0B, 0xF1, 110] + [UInt8](repeating: 0x58, count: 3056)
        let result = try Self.exchange(harness.port, request + [0x58])
        #expect(result.bytes == EPMDResponse.portPrefix(0))
        #expect(result.reset)
        // Overrun within the buffer is still refused without a reply.
        let overrun = try Self.exchange(harness.port, [0, 1, 110, 110])
        #expect(overrun.bytes.isEmpty && !overrun.reset)
    }
}

/// What the loop logs, captured with swift-log's `InMemoryLogHandler`: C epmd's texts, at the levels
/// that match its debug levels.
@Suite(.timeLimit(.minutes(1))) struct ServerLoggingTests {
    @Test("registration, unregistration and refusals are logged with C epmd's texts and mapped levels")
    func lines() throws {
        let harness = try ServerHarness()
        defer { harness.stop() }
        let (fd, reply) = try WireClient.register(port: harness.port, name: "logged", nodePort: 5555)
        #expect(reply.prefix(2) == [0x76, 0])
        let creation = UInt32(reply[2]) << 24 | UInt32(reply[3]) << 16 | UInt32(reply[4]) << 8 | UInt32(reply[5])
        close(fd)
        #expect(
            try Poll.blockingUntil(timeout: .seconds(2)) { try WireClient.names(port: harness.port).text.isEmpty }
                != nil
        )
        _ = try WireClient.request(port: harness.port, [97]).untilClose
        #expect(
            Poll.blockingUntil(timeout: .seconds(2)) {
                harness.logLines.contains { $0.hasPrefix("closed connection from 127.0.0.1:") }
            } != nil
        )
        let entries = harness.logs.entries
        let registering = try #require(entries.first { "\($0.message)".hasPrefix("registering") })
        #expect("\(registering.message)" == "registering 'logged:\(creation)', port 5555")
        #expect(registering.level == .info)
        let unregistering = try #require(entries.first { "\($0.message)".hasPrefix("unregistering") })
        #expect("\(unregistering.message)" == "unregistering 'logged:\(creation)', port 5555 (peer closed)")
        #expect(unregistering.level == .info)
        let garbage = try #require(entries.first { "\($0.message)".hasPrefix("closed connection") })
        #expect("\(garbage.message)".hasSuffix(": malformed (unknown_code)"))
        #expect(garbage.level == .warning)
        #expect(entries.contains { "\($0.message)" == "entering the main epoll loop" && $0.level == .debug })
    }
}
