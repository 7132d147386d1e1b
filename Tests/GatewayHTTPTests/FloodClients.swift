import Foundation
import GatewayHTTP
import GatewayTestSupport
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The sockets one flooding client holds (from its own loopback address, 127.0.0.2 by default), and when
/// the server closed each: for the tests of the HTTP front under abuse. The sockets are looked at with
/// `poll(2)` without waiting; the tests sleep with `Task.sleep` in between, or block for short phases.
final class FloodClients {
    let clock = ContinuousClock()
    private(set) var fds: [Int32] = []
    /// When each socket connected.
    private(set) var opened: [ContinuousClock.Instant] = []
    /// When the server's close (EOF or reset) was seen on each socket; nil while open.
    private(set) var closedAt: [ContinuousClock.Instant?] = []
    /// Everything read on each socket.
    private(set) var received: [[UInt8]] = []

    /// Opens `count` connections to 127.0.0.1:`port` from `source`.
    init(_ count: Int, port: UInt16, from source: String = "127.0.0.2") throws {
        for _ in 0..<count {
            let fd = try WireClient.connect(port: port, from: source)
            self.fds.append(fd)
            self.opened.append(self.clock.now)
            self.closedAt.append(nil)
            self.received.append([])
        }
    }

    deinit {
        for fd in self.fds { close(fd) }
    }

    /// Indexes of the sockets still open (as last looked at).
    var stillOpen: [Int] { self.closedAt.indices.filter { self.closedAt[$0] == nil } }

    /// How many the server has closed (as last looked at).
    var closedCount: Int { self.closedAt.count { $0 != nil } }

    /// Reads what arrived on every open socket and notes the ones the server closed; never blocks.
    func look() {
        let open = self.stillOpen
        guard !open.isEmpty else { return }
        let readHangUp: Int16 = 0x2000  // POLLRDHUP
        var entries = open.map { pollfd(fd: self.fds[$0], events: Int16(POLLIN) | readHangUp, revents: 0) }
        let ready = entries.withUnsafeMutableBufferPointer { poll($0.baseAddress, nfds_t($0.count), 0) }
        guard ready > 0 else { return }
        let now = self.clock.now
        var buffer = [UInt8](repeating: 0, count: 4096)
        for (index, entry) in zip(open, entries) where entry.revents != 0 {
            while true {
                let count = buffer.withUnsafeMutableBytes {
                    recv(self.fds[index], $0.baseAddress, $0.count, Int32(MSG_DONTWAIT))
                }
                if count > 0 {
                    self.received[index] += buffer[0..<count]
                    continue
                }
                if count < 0 && errno == EINTR { continue }
                if count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { break }
                // 0: the server's FIN; another error (a reset): closed too.
                self.closedAt[index] = now
                break
            }
        }
    }

    /// Sends `bytes` on every open socket (a failed send is noticed by the next `look`).
    func send(_ bytes: [UInt8]) {
        for index in self.stillOpen { WireClient.send(self.fds[index], bytes) }
    }

    /// Sends `bytes` on the open sockets in `indexes`.
    func send(_ bytes: [UInt8], to indexes: [Int]) {
        for index in indexes where self.closedAt[index] == nil { WireClient.send(self.fds[index], bytes) }
    }

    /// Seconds from each closed socket's connect to its close.
    var lifetimes: [Double] {
        self.closedAt.indices.compactMap { index in
            self.closedAt[index].map { WireClient.seconds(self.opened[index].duration(to: $0)) }
        }
    }

    /// `waitUntil` blocking the calling thread: for the short phases whose timing a test asserts, which
    /// must not wait for the concurrency pool to resume them (on a loaded machine that takes seconds).
    func blockingWaitUntil(within limit: Duration, _ condition: (FloodClients) -> Bool) -> Bool {
        let deadline = self.clock.now.advanced(by: limit)
        while true {
            self.look()
            if condition(self) { return true }
            if self.clock.now >= deadline { return false }
            usleep(10_000)
        }
    }

    /// Looks every `interval` until `condition` holds or `limit` passes; true if it held.
    func waitUntil(
        within limit: Duration,
        interval: Duration = .milliseconds(20),
        _ condition: (FloodClients) -> Bool
    ) async throws -> Bool {
        let deadline = self.clock.now.advanced(by: limit)
        while true {
            self.look()
            if condition(self) { return true }
            if self.clock.now >= deadline { return false }
            try await Task.sleep(for: interval)
        }
    }
}

/// Probes from 127.0.0.1, as a kubelet or a load balancer would send them.
enum Probe {
    /// `GET path` on a new connection from 127.0.0.1: the status (-1: none within 5 s) and the time to it.
    static func get(_ path: String, port: UInt16) throws -> (status: Int, seconds: Double) {
        let clock = ContinuousClock()
        let started = clock.now
        let fd = try RawHTTP.send(port: port, path)
        defer { close(fd) }
        let status = RawHTTP.status(fd)
        return (status, WireClient.seconds(started.duration(to: clock.now)))
    }

    /// `GET path` on a new connection from `source` (another loopback address).
    static func get(_ path: String, port: UInt16, from source: String) throws -> (status: Int, seconds: Double) {
        let clock = ContinuousClock()
        let started = clock.now
        let fd = try WireClient.connect(port: port, from: source)
        defer { close(fd) }
        WireClient.send(fd, Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".utf8))
        let status = RawHTTP.status(fd)
        return (status, WireClient.seconds(started.duration(to: clock.now)))
    }

    /// How many times `pattern` occurs in `bytes`.
    static func occurrences(of pattern: String, in bytes: [UInt8]) -> Int {
        let needle = Array(pattern.utf8)
        guard !needle.isEmpty, bytes.count >= needle.count else { return 0 }
        return (0...(bytes.count - needle.count)).count { bytes[$0..<($0 + needle.count)].elementsEqual(needle) }
    }
}

/// When the server counted each refusal and late head (its own clock, on its own threads): the
/// deadlines are checked against these, not against when a test task got round to looking.
final class ServerEvents: Sendable {
    private let seen = Mutex<[(event: HTTPConnectionEvent, count: Int, at: ContinuousClock.Instant)]>([])

    func record(_ event: HTTPConnectionEvent, _ count: Int) {
        let now = ContinuousClock().now
        self.seen.withLock { $0.append((event, count, now)) }
    }

    /// The times of `event`, one per connection.
    func times(_ event: HTTPConnectionEvent) -> [ContinuousClock.Instant] {
        self.seen.withLock { seen in
            seen.filter { $0.event == event }.flatMap { Array(repeating: $0.at, count: $0.count) }
        }
    }
}
