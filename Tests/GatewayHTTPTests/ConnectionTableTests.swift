import InMemoryLogging
import Logging
import Synchronization
import Testing

@testable import GatewayHTTP

#if canImport(Glibc)
import Glibc
#endif

/// The accept policy's counts and the request heads' deadlines, without libmicrohttpd: the calls its
/// callbacks make, in the orders it makes them.
@Suite struct ConnectionTableTests {
    static let first = PeerAddress(ipv4: (127, 0, 0, 2))
    static let second = PeerAddress(ipv4: (127, 0, 0, 1))

    final class Events: Sendable {
        let seen = Mutex<[HTTPConnectionEvent: Int]>([:])
        func record(_ event: HTTPConnectionEvent, _ count: Int) {
            self.seen.withLock { $0[event, default: 0] += count }
        }
        subscript(_ event: HTTPConnectionEvent) -> Int { self.seen.withLock { $0[event, default: 0] } }
    }

    static func table(
        connections: Int = 4,
        perAddress: Int = 2,
        headerTimeout: UInt64 = 0,
        events: Events = Events(),
        logs: InMemoryLogHandler = InMemoryLogHandler()
    ) -> ConnectionTable {
        ConnectionTable(
            limits: .init(connections: connections, perAddress: perAddress, headerTimeout: headerTimeout),
            wake: Wakeup(),
            logger: Logger(label: "test") { _ in logs },
            observer: { events.record($0, $1) }
        )
    }

    /// Admits and starts one connection on `thread`, as libmicrohttpd's accept does.
    static func accept(_ table: ConnectionTable, _ peer: PeerAddress, connection: UInt, thread: UInt = 1) -> Bool {
        guard table.admit(peer, thread: thread) == nil else { return false }
        table.started(connection: connection, fd: -1, thread: thread)
        return true
    }

    @Test("the share holds per address, loopback included; the limit holds in total; closes give places back")
    func shareAndLimit() {
        let events = Events()
        let logs = InMemoryLogHandler()
        let table = Self.table(events: events, logs: logs)
        #expect(Self.accept(table, Self.first, connection: 1))
        #expect(Self.accept(table, Self.first, connection: 2))
        #expect(table.admit(Self.first, thread: 1) == .refusedPerAddress)
        #expect(Self.accept(table, Self.second, connection: 3))
        #expect(Self.accept(table, Self.second, connection: 4))
        #expect(table.admit(PeerAddress(ipv4: (10, 0, 0, 1)), thread: 1) == .refusedAtLimit)
        // An address at its share is refused for its share, whatever the total.
        #expect(table.admit(Self.second, thread: 1) == .refusedPerAddress)
        #expect(table.statistics == .init(open: 4, refusedPerAddress: 2, refusedAtLimit: 1, headerTimeouts: 0))
        #expect(events[.refusedPerAddress] == 2 && events[.refusedAtLimit] == 1)

        table.closed(connection: 1)
        table.closed(connection: 1)  // a second notification changes nothing
        #expect(table.statistics.open == 3)
        #expect(table.admit(Self.second, thread: 1) == .refusedPerAddress)
        #expect(Self.accept(table, Self.first, connection: 5))
        #expect(table.admit(Self.first, thread: 1) == .refusedPerAddress)
        #expect(table.admit(PeerAddress(ipv4: (10, 0, 0, 1)), thread: 1) == .refusedAtLimit)
        // One line per cause within the interval: the first refusal of each.
        let warnings = logs.entries.filter { $0.level == .warning }.map { "\($0.message)" }
        #expect(warnings.count { $0.contains("too many connections from one address") } == 1)
        #expect(warnings.count { $0.contains("connection limit reached") } == 1)
    }

    @Test(
        "a reservation libmicrohttpd never started (it failed after the policy) is released at the thread's next accept"
    )
    func staleReservation() {
        let table = Self.table(connections: 2, perAddress: 1)
        #expect(table.admit(Self.first, thread: 7) == nil)
        // No STARTED: libmicrohttpd ran out of memory. Another thread sees the place taken...
        #expect(table.admit(Self.first, thread: 8) == .refusedPerAddress)
        // ... until thread 7 accepts again.
        #expect(table.admit(Self.first, thread: 7) == nil)
        table.started(connection: 1, fd: -1, thread: 7)
        #expect(table.statistics.open == 1)
        table.closed(connection: 1)
        #expect(Self.accept(table, Self.first, connection: 2, thread: 8))
        #expect(Self.accept(table, Self.second, connection: 3, thread: 8))
        #expect(table.admit(PeerAddress(ipv4: (10, 0, 0, 9)), thread: 9) == .refusedAtLimit)
    }

    @Test("heads: a deadline from the start, none while a request runs, a new one when it completes")
    func deadlines() throws {
        var pair: [Int32] = [-1, -1]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0)
        defer { for fd in pair { close(fd) } }
        let events = Events()
        let second: UInt64 = 1_000_000_000
        let table = Self.table(headerTimeout: 2 * second, events: events)
        #expect(table.admit(Self.first, thread: 1) == nil)
        table.started(connection: 1, fd: pair[0], thread: 1)
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        let now = UInt64(time.tv_sec) * second + UInt64(time.tv_nsec)
        var pass = table.expire(now: now)
        #expect(pass.expired == 0)
        let next = try #require(pass.next)
        #expect(next > now + second && next <= now + 3 * second)

        table.headComplete(connection: 1)
        pass = table.expire(now: now + 10 * second)
        #expect(pass.expired == 0 && pass.next == nil, "a running request has no head deadline")
        table.requestCompleted(connection: 1)
        pass = table.expire(now: now + second / 2)
        #expect(pass.expired == 0 && pass.next != nil)
        pass = table.expire(now: now + 10 * second)
        #expect(pass.expired == 1 && pass.next == nil)
        // The socket was shut down (the peer sees the end of the stream) and is not shut down again.
        var byte: UInt8 = 0
        #expect(recv(pair[1], &byte, 1, Int32(MSG_DONTWAIT)) == 0)
        table.requestCompleted(connection: 1)
        #expect(table.expire(now: now + 20 * second).expired == 0)
        table.closed(connection: 1)
        #expect(table.statistics.open == 0)
    }

    @Test("a late head is counted, and told to the observer, before its socket is shut down")
    func countedBeforeShutdown() throws {
        var pair: [Int32] = [-1, -1]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0)
        defer { for fd in pair { close(fd) } }
        let peer = pair[1]
        // What a client (or the observer) sees when the table tells the observer: nil if not told yet.
        let seen = Mutex<(peerOpen: Bool, counted: Int)?>(nil)
        let box = Mutex<ConnectionTable?>(nil)
        let table = ConnectionTable(
            limits: .init(connections: 4, perAddress: 2, headerTimeout: 1_000_000_000),
            wake: Wakeup(),
            logger: Logger(label: "test") { _ in InMemoryLogHandler() },
            observer: { event, _ in
                guard event == .headerTimeout else { return }
                var byte: UInt8 = 0
                let open = recv(peer, &byte, 1, Int32(MSG_DONTWAIT)) == -1 && errno == EAGAIN
                // The counters are their own lock: readable from here, as from another thread.
                let counted = box.withLock { $0 }.map { $0.counted(.headerTimeout) } ?? -1
                seen.withLock { $0 = (open, counted) }
            }
        )
        box.withLock { $0 = table }
        #expect(table.admit(Self.first, thread: 1) == nil)
        table.started(connection: 1, fd: pair[0], thread: 1)
        #expect(table.expire(now: UInt64.max / 2).expired == 1)
        let told = try #require(seen.withLock { $0 }, "the observer was not told")
        #expect(told.peerOpen, "the socket was shut down before the late head was counted")
        #expect(told.counted == 1)
        var byte: UInt8 = 0
        #expect(recv(peer, &byte, 1, Int32(MSG_DONTWAIT)) == 0, "shut down after the count")
        #expect(table.statistics.headerTimeouts == 1)
        box.withLock { $0 = nil }
        table.closed(connection: 1)
    }

    @Test("peer addresses: IPv4, IPv4-mapped IPv6 as the same key, IPv6; text for the log")
    func peerAddresses() {
        func parse(_ text: String) -> PeerAddress? {
            if text.contains(":") {
                var address = sockaddr_in6()
                address.sin6_family = sa_family_t(AF_INET6)
                guard inet_pton(AF_INET6, text, &address.sin6_addr) == 1 else { return nil }
                return withUnsafePointer(to: &address) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        PeerAddress($0, length: socklen_t(MemoryLayout<sockaddr_in6>.size))
                    }
                }
            }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            guard inet_pton(AF_INET, text, &address.sin_addr) == 1 else { return nil }
            return withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    PeerAddress($0, length: socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        }
        #expect(parse("127.0.0.2") == Self.first)
        #expect(parse("::ffff:127.0.0.2") == Self.first)
        #expect(parse("127.0.0.2")?.description == "127.0.0.2")
        #expect(parse("::1")?.description == "::1")
        #expect(parse("2001:db8::7")?.description == "2001:db8::7")
        #expect(parse("::1") != parse("127.0.0.1"))
        #expect(parse("10.1.2.3")?.isIPv4 == true && parse("fe80::1")?.isIPv4 == false)
        // A length too short for its family is no address.
        var short = sockaddr_in()
        short.sin_family = sa_family_t(AF_INET)
        let parsed = withUnsafePointer(to: &short) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { PeerAddress($0, length: 4) }
        }
        #expect(parsed == nil)
    }
}
