import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A crowd of hostile TCP clients on a thread of its own: idle, slow, half-closed, resetting or
/// never-reading connections, opened in a first wave and then driven tick by tick (a byte per tick for
/// dribblers, a new connection for a closed one when `reconnect` is set, a new wave of one-shot clients).
///
/// Everything is bounded: `count` connections at most at once, connects time out after 200 ms, and
/// ``stop()`` closes every descriptor. The crowd keeps statistics (``Statistics``) on what the server did
/// to it: refused at once, closed later (and how late), answered (and with which HTTP status).
public final class HostileClients: @unchecked Sendable {
    // @unchecked: the slots are only touched by the crowd's thread; the statistics and the stop flag are
    // behind a Mutex / an Atomic.

    /// What each client does.
    public enum Behaviour: Sendable {
        /// Connects and sends nothing.
        case idle
        /// Sends the request once, reads the answer (status kept) and stays connected.
        case requestThenIdle([UInt8])
        /// Sends one byte of these per tick (then nothing once they are all sent).
        case dribble([UInt8])
        /// Sends these bytes, then `shutdown(SHUT_WR)`, and waits for the server to close.
        case halfClose([UInt8])
        /// Connects and closes at once (a FIN before any byte). One-shot: a new wave every tick.
        case vanish
        /// Connects, sends these bytes and closes with a reset (SO_LINGER 0). One-shot: a new wave
        /// every tick.
        case reset([UInt8])
        /// Sends the request and never reads a byte of the answer.
        case neverRead([UInt8])

        var isOneShot: Bool {
            switch self {
            case .vanish, .reset: true
            default: false
            }
        }
    }

    /// What the server did to the crowd so far.
    public struct Statistics: Sendable, CustomStringConvertible {
        /// Connections made (first wave, reconnects and one-shot waves).
        public var connects = 0
        /// Connects that failed or did not complete within 200 ms (the last error kept).
        public var connectFailures = 0
        public var lastConnectError = ""
        /// Connections the server closed (EOF or reset) within 1 s of the connect: refused, or closed at
        /// their EOF (the crowd notices a close within a few hundred milliseconds even when busy).
        public var closedAtOnce = 0
        /// Connections the server closed 1 s or more after the connect (by a deadline, say).
        public var closedLater = 0
        /// The longest a connection lived before the server closed it.
        public var longestLifetime: Duration = .zero
        /// One-shot clients done (vanished, or reset).
        public var oneShots = 0
        /// Connections open now.
        public var open = 0
        /// Of those, the ones that received nothing yet.
        public var silent = 0
        /// The age of the oldest connection open now.
        public var oldestOpen: Duration = .zero
        /// HTTP status codes received (the first line of an answer), by code; 0 for bytes that are not
        /// an HTTP status line.
        public var statusCodes: [Int: Int] = [:]
        /// Ticks done.
        public var ticks = 0

        public var description: String {
            "connects \(connects) (failed \(connectFailures) \(lastConnectError)), closed at once \(closedAtOnce), "
                + "closed later \(closedLater) (longest \(longestLifetime)), one-shots \(oneShots), open \(open) "
                + "(silent \(silent), oldest \(oldestOpen)), status codes \(statusCodes.sorted { $0.key < $1.key }), "
                + "ticks \(ticks)"
        }
    }

    private struct Slot {
        var fd: Int32 = -1
        var source: String
        var openedAt: ContinuousClock.Instant
        var sent = 0
        var received = 0
        var head: [UInt8] = []
        /// Closed by us (vanish/reset) or by the server: reopened on the next tick if `reconnect`.
        var done = false
    }

    public let port: UInt16
    public let host: String
    public let sources: [String]
    public let count: Int
    public let behaviour: Behaviour
    public let reconnect: Bool
    public let tick: Duration

    private let clock = ContinuousClock()
    private let stopped = Atomic<Bool>(false)
    private let reconnectStopped = Atomic<Bool>(false)
    private let running = Atomic<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)
    private let firstWave = DispatchSemaphore(value: 0)
    private let stats = Mutex(Statistics())
    private var slots: [Slot] = []
    private var buffer = [UInt8](repeating: 0, count: 65536)

    /// - Parameters:
    ///   - port: the server's port on `host` (127.0.0.1 unless given).
    ///   - sources: the clients' source addresses, used in turn (127.0.0.2 ...: other client hosts on
    ///     loopback).
    ///   - count: clients at once (for one-shot behaviours: per wave).
    ///   - behaviour: what each does.
    ///   - reconnect: reopen a connection the server closed, on the next tick (an attacker that insists).
    ///   - tick: the pace of dribbling, reconnecting and one-shot waves.
    public init(
        port: UInt16,
        host: String = "127.0.0.1",
        sources: [String],
        count: Int,
        behaviour: Behaviour,
        reconnect: Bool = false,
        tick: Duration = .seconds(1)
    ) {
        self.port = port
        self.host = host
        self.sources = sources.isEmpty ? ["127.0.0.1"] : sources
        self.count = count
        self.behaviour = behaviour
        self.reconnect = reconnect
        self.tick = tick
    }

    /// Starts the crowd's thread and waits (blocking, at most 60 s) until its first wave is connected.
    /// From async code, call it inside `Blocking.run`.
    public func startBlocking() throws {
        guard !self.running.exchange(true, ordering: .acquiringAndReleasing) else { return }
        Thread { self.run() }.start()
        guard self.firstWave.wait(timeout: .now() + 60) == .success else {
            throw TestFailure("the hostile clients' first wave did not connect within 60 s: \(self.statistics)")
        }
    }

    /// `startBlocking` on a thread of its own.
    public func start() async throws {
        try await Blocking.run { try self.startBlocking() }
    }

    /// Stops the thread and closes every connection (waits at most 10 s for the thread).
    public func stop() {
        guard !self.stopped.exchange(true, ordering: .acquiringAndReleasing),
            self.running.load(ordering: .acquiring)
        else { return }
        _ = self.finished.wait(timeout: .now() + 10)
    }

    deinit {
        self.stop()
    }

    public var statistics: Statistics { self.stats.withLock { $0 } }

    /// Stops reopening closed connections, then waits (at most `within`) until the crowd holds at most
    /// `share` connections, and returns its statistics then.
    ///
    /// While the crowd reconnects, "open" includes the connections of the last tick that the server has
    /// not refused yet, or whose refusal the crowd has not read yet: a sample just after a tick on a
    /// loaded machine counts them all. Once reconnecting stops, what stays open is what the server holds.
    public func settled(share: Int, within: Duration = .seconds(10)) async throws -> Statistics {
        self.reconnectStopped.store(true, ordering: .releasing)
        _ = try await Poll.until(timeout: within) { self.statistics.open <= share }
        return self.statistics
    }

    // MARK: - The crowd's thread

    private func run() {
        let start = self.clock.now
        self.slots = (0..<self.count).map { Slot(source: self.sources[$0 % self.sources.count], openedAt: start) }
        for index in self.slots.indices { self.open(index) }
        self.publish()
        self.firstWave.signal()
        var nextTick = self.clock.now.advanced(by: self.tick)
        while !self.stopped.load(ordering: .acquiring) {
            self.pollOnce(until: nextTick)
            if self.clock.now >= nextTick {
                self.onTick()
                nextTick = self.clock.now.advanced(by: self.tick)
            }
            self.publish()
        }
        for index in self.slots.indices where self.slots[index].fd >= 0 {
            close(self.slots[index].fd)
            self.slots[index].fd = -1
        }
        self.publish()
        self.finished.signal()
    }

    private func onTick() {
        self.stats.withLock { $0.ticks += 1 }
        for index in self.slots.indices {
            if self.slots[index].fd < 0 {
                if self.behaviour.isOneShot
                    || (self.reconnect && !self.reconnectStopped.load(ordering: .acquiring) && self.slots[index].done)
                {
                    self.open(index)
                }
                continue
            }
            if case .dribble(let bytes) = self.behaviour, self.slots[index].sent < bytes.count {
                let fd = self.slots[index].fd
                let sent = bytes[self.slots[index].sent...].prefix(1).withUnsafeBytes {
                    Glibc.send(fd, $0.baseAddress, 1, Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
                }
                if sent == 1 {
                    self.slots[index].sent += 1
                } else if sent < 0 && errno != EAGAIN && errno != EWOULDBLOCK {
                    self.serverClosed(index)
                }
            }
        }
    }

    /// Polls the open connections until `deadline` (at most 100 ms), handling what arrives.
    private func pollOnce(until deadline: ContinuousClock.Instant) {
        var entries: [pollfd] = []
        var indexes: [Int] = []
        entries.reserveCapacity(self.slots.count)
        let neverRead: Bool
        if case .neverRead = self.behaviour { neverRead = true } else { neverRead = false }
        let events: Int16 = neverRead ? Self.pollReadHangUp : Int16(POLLIN) | Self.pollReadHangUp
        for (index, slot) in self.slots.enumerated() where slot.fd >= 0 {
            entries.append(pollfd(fd: slot.fd, events: events, revents: 0))
            indexes.append(index)
        }
        let left = self.clock.now.duration(to: deadline)
        let milliseconds = Int32(clamping: max(0, min(100, Int((left / .milliseconds(1)).rounded(.up)))))
        if entries.isEmpty {
            Poll.sleep(.milliseconds(Int64(milliseconds)))
            return
        }
        let ready = poll(&entries, nfds_t(entries.count), milliseconds)
        guard ready > 0 else { return }
        for (position, entry) in entries.enumerated() where entry.revents != 0 {
            let index = indexes[position]
            if neverRead {
                // A hang-up or an error, with the answer still unread: the server gave up on us.
                self.serverClosed(index)
            } else {
                self.drain(index)
            }
        }
    }

    /// Reads what is there; notes the status line; handles EOF and errors.
    private func drain(_ index: Int) {
        let fd = self.slots[index].fd
        while true {
            let n = self.buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n > 0 {
                if self.slots[index].head.count < 12 {
                    self.slots[index].head += self.buffer[0..<min(n, 12 - self.slots[index].head.count)]
                    if self.slots[index].head.count >= 12 || self.slots[index].received == 0 {
                        self.noteStatus(index)
                    }
                }
                self.slots[index].received += n
                continue
            }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { return }
            self.serverClosed(index)
            return
        }
    }

    private func noteStatus(_ index: Int) {
        let head = self.slots[index].head
        guard head.count >= 12 else { return }
        let code =
            head.starts(with: Array("HTTP/1.".utf8))
            ? Int(String(decoding: head[9..<12], as: UTF8.self)) ?? 0 : 0
        self.stats.withLock { $0.statusCodes[code, default: 0] += 1 }
    }

    private func serverClosed(_ index: Int) {
        let lifetime = self.slots[index].openedAt.duration(to: self.clock.now)
        close(self.slots[index].fd)
        self.slots[index].fd = -1
        self.slots[index].done = true
        self.stats.withLock {
            if lifetime < .seconds(1) {
                $0.closedAtOnce += 1
            } else {
                $0.closedLater += 1
            }
            $0.longestLifetime = max($0.longestLifetime, lifetime)
        }
    }

    /// Connects slot `index` and does its opening move.
    private func open(_ index: Int) {
        let source = self.slots[index].source
        let fd: Int32
        do {
            fd = try Self.connect(port: self.port, host: self.host, from: source, within: .milliseconds(200))
        } catch {
            self.stats.withLock {
                $0.connectFailures += 1
                $0.lastConnectError = "\(error)"
            }
            return
        }
        self.slots[index] = Slot(fd: fd, source: source, openedAt: self.clock.now)
        self.stats.withLock { $0.connects += 1 }
        switch self.behaviour {
        case .idle:
            break
        case .requestThenIdle(let bytes), .neverRead(let bytes):
            Self.sendAll(fd, bytes)
            self.slots[index].sent = bytes.count
        case .dribble:
            break
        case .halfClose(let bytes):
            Self.sendAll(fd, bytes)
            shutdown(fd, Int32(SHUT_WR))
        case .vanish:
            close(fd)
            self.oneShotDone(index)
        case .reset(let bytes):
            Self.sendAll(fd, bytes)
            WireClient.resetClose(fd)
            self.oneShotDone(index)
        }
    }

    private func oneShotDone(_ index: Int) {
        self.slots[index].fd = -1
        self.slots[index].done = true
        self.stats.withLock { $0.oneShots += 1 }
    }

    private func publish() {
        let now = self.clock.now
        var open = 0
        var silent = 0
        var oldest: Duration = .zero
        for slot in self.slots where slot.fd >= 0 {
            open += 1
            if slot.received == 0 { silent += 1 }
            oldest = max(oldest, slot.openedAt.duration(to: now))
        }
        self.stats.withLock {
            $0.open = open
            $0.silent = silent
            $0.oldestOpen = oldest
        }
    }

    // MARK: - Sockets

    /// POLLRDHUP (Linux, 0x2000): the peer closed its side. Glibc exports it only with _GNU_SOURCE.
    private static let pollReadHangUp: Int16 = 0x2000

    /// A non-blocking TCP connection from `source` to host:port, given up after `within`.
    public static func connect(port: UInt16, host: String, from source: String?, within: Duration) throws -> Int32 {
        let fd = socket(
            host.contains(":") ? AF_INET6 : AF_INET,
            Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue),
            0
        )
        guard fd >= 0 else { throw TestFailure("socket: errno \(errno)") }
        if let source {
            let bound = WireClient.withSocketAddress(host: source, port: 0) { bind(fd, $0, $1) }
            guard bound == 0 else {
                let err = errno
                close(fd)
                throw TestFailure("bind to \(source): errno \(err)")
            }
        }
        let rc = WireClient.withSocketAddress(host: host, port: port) { Glibc.connect(fd, $0, $1) }
        if rc != 0 && errno != EINPROGRESS {
            let err = errno
            close(fd)
            throw TestFailure("connect: errno \(err)")
        }
        if rc != 0 {
            var entry = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            let milliseconds = Int32(clamping: Int((within / .milliseconds(1)).rounded(.up)))
            var error: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            guard poll(&entry, 1, milliseconds) == 1,
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) == 0, error == 0
            else {
                close(fd)
                throw TestFailure(error != 0 ? "connect: errno \(error)" : "connect: no answer within \(within)")
            }
        }
        return fd
    }

    /// Sends everything on a non-blocking socket, waiting for room at most 2 s; false if the peer is gone
    /// or the time ran out.
    @discardableResult
    public static func sendAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var offset = 0
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: .seconds(2))
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes {
                Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
            }
            if n > 0 {
                offset += n
                continue
            }
            if n < 0 && errno == EINTR { continue }
            guard n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK), clock.now < deadline else { return false }
            var entry = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            _ = poll(&entry, 1, 50)
        }
        return true
    }
}
