import EPMDPosix
import EPMDProtocol
import EPMDRegistry
import EPMDServer
import Foundation
import GatewayTestSupport
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
        #expect(harness.server.statistics.requests["alive2"] == 1)
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
        #expect(harness.server.statistics.malformed["stray_data"] == 1)
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
        #expect(harness.server.statistics.registrationFailures["name_in_use"] == 1)
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
        #expect(statistics.malformed["invalid_length"] == 2)
        #expect(statistics.malformed["unknown_code"] == 1)
        #expect(statistics.malformed["overrun"] == 1)
        #expect(statistics.malformed["alive2_too_small"] == 1)
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
