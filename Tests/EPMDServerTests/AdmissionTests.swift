import EPMDPosix
import EPMDProtocol
import EPMDRegistry
import GatewayTestSupport
import InMemoryLogging
import Logging
import Testing

@testable import EPMDServer

#if canImport(Glibc)
import Glibc
#endif

/// The connection caps with tiny values: at `maxConnections` the oldest connection without a
/// registration makes room; past `connectionsPerAddress` that address's oldest does; registrations
/// are never dropped; with nothing to evict the new connection is closed at once. Peers on
/// 127.0.0.2 and 127.0.0.3 are other addresses (loopback counts like any other).
@Suite(.timeLimit(.minutes(1))) struct AdmissionTests {
    typealias W = WireClient

    /// Waits until the server has `count` connections open (accepted and not closed).
    static func waitForOpen(_ harness: ServerHarness, _ count: Int) -> Bool {
        Poll.blockingUntil(timeout: .seconds(5), interval: .milliseconds(5)) {
            harness.server.statistics.openConnections == count
        } != nil
    }

    /// An idle connection (nothing sent), once the server holds it: `open` is the count expected then.
    static func idle(_ harness: ServerHarness, from source: String = "127.0.0.1", open: Int) throws -> Int32 {
        let fd = try W.connect(port: harness.port, from: source)
        guard Self.waitForOpen(harness, open) else {
            close(fd)
            throw TestFailure("the server holds \(harness.server.statistics.openConnections), not \(open)")
        }
        return fd
    }

    static func isClosed(_ fd: Int32, within limit: Duration = .milliseconds(500)) -> Bool {
        W.collect(fd, for: limit).ending.closed
    }

    static func isOpen(_ fd: Int32) -> Bool {
        let outcome = W.collect(fd, for: .milliseconds(20))
        return outcome.ending == .open && outcome.bytes.isEmpty
    }

    @Test("at the cap the oldest connection without a registration is closed, in accept order; registrations stay")
    func evictionOrder() throws {
        let harness = try ServerHarness(maxConnections: 4, connectionsPerAddress: 0)
        defer { harness.stop() }
        let node = try W.register(port: harness.port, name: "kept", nodePort: 4711)
        defer { close(node.fd) }
        #expect(node.reply.prefix(2) == [0x76, 0])
        var idle: [Int32] = []
        defer { for fd in idle { close(fd) } }
        for open in 2...4 { idle.append(try Self.idle(harness, open: open)) }

        // Full (1 registration + 3 idle): the next one evicts the oldest idle, then the next.
        idle.append(try W.connect(port: harness.port, from: "127.0.0.2"))
        #expect(Self.isClosed(idle[0]), "the oldest idle connection was not evicted")
        #expect(Self.isOpen(idle[1]) && Self.isOpen(idle[2]) && Self.isOpen(idle[3]))
        idle.append(try W.connect(port: harness.port))
        #expect(Self.isClosed(idle[1]), "the second oldest was not evicted next")
        #expect(Self.isOpen(idle[2]) && Self.isOpen(idle[3]) && Self.isOpen(idle[4]))
        #expect(Self.waitForOpen(harness, 4))

        // A lookup from a new client is answered (it evicts one more idle connection first).
        let lookup = try W.request(port: harness.port, [122] + Array("kept".utf8))
        #expect(lookup.bytes == W.port2Found(name: Array("kept".utf8), nodePort: 4711))
        #expect(Self.isClosed(idle[2]))
        #expect(Self.isOpen(node.fd), "the registration was disturbed")
        #expect(harness.server.registry.lookup(Array("kept".utf8)) != nil)
        let statistics = harness.server.statistics
        #expect(statistics.evicted == [.maxConnections: 3])
        #expect(statistics.rejected[.maxConnections] == nil)
        #expect(statistics.peakConnections == 4)
        #expect(statistics.connectionLimit == 4)
    }

    @Test("at the cap with every connection registered, a new one is accepted and closed at once, and counted")
    func refusalWhenAllRegistered() throws {
        let harness = try ServerHarness(maxConnections: 3, connectionsPerAddress: 1)
        defer { harness.stop() }
        // Three registrations from one address: registrations do not count against the per-address cap.
        var nodes: [Int32] = []
        defer { for fd in nodes { close(fd) } }
        for index in 0..<3 {
            let node = try W.register(port: harness.port, name: "node\(index)", nodePort: UInt16(5000 + index))
            nodes.append(node.fd)
            #expect(node.reply.prefix(2) == [0x76, 0])
        }
        #expect(Self.waitForOpen(harness, 3))

        let refused = try W.connect(port: harness.port, from: "127.0.0.2")
        defer { close(refused) }
        let outcome = W.collect(refused, for: .seconds(2))
        #expect(outcome.ending.closed && outcome.bytes.isEmpty, "refused connection: \(outcome)")
        let lookup = try W.request(port: harness.port, [122] + Array("node1".utf8))
        #expect(lookup.ending.closed && lookup.bytes.isEmpty, "a lookup at a full cap: \(lookup)")
        #expect(harness.server.statistics.rejected[.maxConnections] == 2)
        #expect(harness.server.statistics.evicted.isEmpty)
        for fd in nodes { #expect(Self.isOpen(fd), "a registration was dropped") }
        #expect(harness.server.registry.snapshot().count == 3)

        // One registration ends: room again, lookups are answered.
        close(nodes.removeLast())
        #expect(Self.waitForOpen(harness, 2))
        let answered = try W.request(port: harness.port, [122] + Array("node0".utf8))
        #expect(answered.bytes == W.port2Found(name: Array("node0".utf8), nodePort: 5000))
    }

    @Test("past the per-address cap that address's oldest idle connection makes room; other addresses keep theirs")
    func perAddressEviction() throws {
        let harness = try ServerHarness(connectionsPerAddress: 2)
        defer { harness.stop() }
        var nodes: [Int32] = []
        defer { for fd in nodes { close(fd) } }
        for index in 0..<3 {
            let node = try W.register(port: harness.port, name: "local\(index)", nodePort: UInt16(6000 + index))
            nodes.append(node.fd)
        }
        let flood1 = try Self.idle(harness, from: "127.0.0.2", open: 4)
        let flood2 = try Self.idle(harness, from: "127.0.0.2", open: 5)
        let other1 = try Self.idle(harness, from: "127.0.0.3", open: 6)
        let other2 = try Self.idle(harness, from: "127.0.0.3", open: 7)
        let local = try Self.idle(harness, open: 8)
        let flood3 = try W.connect(port: harness.port, from: "127.0.0.2")
        let flood4 = try W.connect(port: harness.port, from: "127.0.0.2")
        defer { for fd in [flood1, flood2, flood3, flood4, other1, other2, local] { close(fd) } }

        #expect(Self.isClosed(flood1) && Self.isClosed(flood2), "127.0.0.2's oldest were not evicted")
        #expect(Self.isOpen(flood3) && Self.isOpen(flood4))
        #expect(Self.isOpen(other1) && Self.isOpen(other2) && Self.isOpen(local), "another address lost one")
        for fd in nodes { #expect(Self.isOpen(fd), "a registration was dropped") }
        // Lookups from another client are answered while 127.0.0.2 holds its share.
        let lookup = try W.request(port: harness.port, [122] + Array("local2".utf8))
        #expect(lookup.bytes == W.port2Found(name: Array("local2".utf8), nodePort: 6002))
        #expect(harness.server.statistics.evicted == [.perAddress: 2])
        #expect(harness.server.registry.snapshot().count == 3)
    }

    @Test("evictions are logged once per reason per interval, the next line with the count")
    func rateLimitedLog() throws {
        let interval = 2
        let harness = try ServerHarness(connectionsPerAddress: 1, refusalLogInterval: interval)
        defer { harness.stop() }
        func evictionLines() -> [String] {
            harness.logs.entries.filter { $0.level == .warning }.map { "\($0.message)" }.filter {
                $0.hasPrefix("closed the oldest connection without a registration")
            }
        }
        let clock = ContinuousClock()
        let start = clock.now
        var fds: [Int32] = [try Self.idle(harness, from: "127.0.0.2", open: 1)]
        defer { for fd in fds { close(fd) } }
        for _ in 0..<5 {
            fds.append(try W.connect(port: harness.port, from: "127.0.0.2"))
            #expect(Self.isClosed(fds[fds.count - 2]))
        }
        let burst = start.duration(to: clock.now)
        #expect(harness.server.statistics.evicted == [.perAddress: 5])
        if burst < .seconds(interval) {
            #expect(evictionLines().count == 1, "\(evictionLines())")
        }
        #expect(
            evictionLines().first?.hasSuffix("at most 1 connections without a registration from one address") == true
        )

        // After the interval, the next eviction logs one line that counts the ones in between.
        Poll.sleep(.seconds(interval) + .milliseconds(100))
        fds.append(try W.connect(port: harness.port, from: "127.0.0.2"))
        #expect(Self.isClosed(fds[fds.count - 2]))
        #expect(Poll.blockingUntil(timeout: .seconds(2)) { evictionLines().count >= 2 } != nil)
        let last = evictionLines().last ?? ""
        #expect(last.contains("times since the last such line"), "\(last)")
        #expect(evictionLines().count <= 3, "one line per interval: \(evictionLines())")
    }

    @Test("the timed list keeps each address's connections in accept order, with counts, through removals")
    func peerChains() {
        var list = TimedList()
        func connection(_ id: UInt64, _ peer: SocketAddress) -> EPMDConnection {
            let connection = EPMDConnection(
                id: ConnectionID(id),
                fd: Int32(id),
                serial: 0,
                peer: peer,
                machine: EPMDConnectionStateMachine(isLocalPeer: true, relaxedCommandCheck: false),
                acceptedAt: id * 10
            )
            connection.deadline = id * 10
            return connection
        }
        let a = SocketAddress.v4(address: 0x0100_007F, port: 1000)  // 127.0.0.1, memory order
        let b = SocketAddress.v4(address: 0x0200_007F, port: 1000)  // 127.0.0.2
        let all = (1...6).map { connection(UInt64($0), $0 % 2 == 0 ? b : a) }
        for item in all { list.append(item) }
        #expect(list.count == 6)
        #expect(list.count(from: PeerKey(a)) == 3 && list.count(from: PeerKey(b)) == 3)
        #expect(list.oldest(from: PeerKey(a)) === all[0] && list.oldest(from: PeerKey(b)) === all[1])
        list.remove(all[0])
        list.remove(all[3])
        #expect(list.head === all[1])
        #expect(list.oldest(from: PeerKey(a)) === all[2])
        #expect(list.count(from: PeerKey(a)) == 2 && list.count(from: PeerKey(b)) == 2)
        // An adopted connection with an older deadline goes to its place in both orders.
        let adopted = connection(0, b)
        list.insert(adopted)
        #expect(list.head === adopted && list.oldest(from: PeerKey(b)) === adopted)
        #expect(list.count(from: PeerKey(b)) == 3)
        for item in all + [adopted] { list.remove(item) }
        #expect(list.isEmpty && list.count == 0)
        #expect(list.count(from: PeerKey(a)) == 0 && list.oldest(from: PeerKey(b)) == nil)
    }

    @Test("peer keys: the port and scope do not count; an IPv4-mapped IPv6 peer is its IPv4 address")
    func peerKeys() throws {
        let v4 = try #require(SocketAddress(literal: "127.0.0.2", port: 1))
        let mapped = try #require(SocketAddress(literal: "::ffff:127.0.0.2", port: 2))
        let other = try #require(SocketAddress(literal: "127.0.0.3", port: 1))
        let v6 = try #require(SocketAddress(literal: "::1", port: 3))
        #expect(PeerKey(v4) == PeerKey(mapped))
        #expect(PeerKey(v4) == PeerKey(v4.withPort(9)))
        #expect(PeerKey(v4) != PeerKey(other))
        #expect(PeerKey(v6) != PeerKey(v4) && PeerKey(v6) == PeerKey(v6.withPort(7)))
        #expect(PeerKey(v4) == .v4(0x0200_007F))
    }
}
