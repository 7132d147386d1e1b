import CMicroHTTPD
import EPMDPosix
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The `/v1/events` watchers. Each stream is a libmicrohttpd callback response whose reader either
/// hands out pending bytes or, with nothing to send, suspends its connection and returns 0 (never a
/// busy loop). A registry change (through the notifier thread), the heartbeat or shutdown resumes
/// it. The suspend in the reader and the resume happen under the watcher's lock, so no wake-up is
/// lost: a change that lands between the reader's look and its suspend waits for the lock and then
/// finds the stream suspended.
final class EventStreams: Sendable {
    /// One stream; retained by its response (released by libmicrohttpd's free callback).
    final class Watcher: Sendable {
        struct State {
            /// The suspended-or-not `MHD_Connection`, as an address.
            var connection: UInt
            /// Its socket, polled for a hang-up while the connection is suspended.
            var fd: Int32
            var pending: [UInt8]
            var offset = 0
            /// The id the watcher has seen (nil: it still needs its first `reset`).
            var lastID: UInt64?
            var suspended = false
            var heartbeatDue = false
            var closing = false
        }

        let state: Mutex<State>
        let source: any EventStreamSource
        /// Strong: the hub's table and the watcher reference each other until the stream ends.
        let hub: EventStreams

        init(connection: OpaquePointer, start: EventStreamStart, source: any EventStreamSource, hub: EventStreams) {
            let lastID: UInt64?
            switch start {
            case .fresh: lastID = nil
            case .after(let id): lastID = id
            }
            self.state = Mutex(
                State(
                    connection: UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(connection))),
                    fd: cmhd_connection_fd(connection),
                    pending: source.streamPreamble,
                    lastID: lastID
                )
            )
            self.source = source
            self.hub = hub
        }

        /// Fills `buffer` (libmicrohttpd's reader contract): bytes written, 0 after suspending, or -1 at the end.
        func read(into buffer: UnsafeMutableRawBufferPointer) -> Int {
            self.state.withLock { state -> Int in
                if state.offset >= state.pending.count {
                    state.pending.removeAll(keepingCapacity: true)
                    state.offset = 0
                    if state.closing { return -1 }
                    let chunk = self.source.eventStreamChunk(after: state.lastID)
                    state.lastID = chunk.lastID
                    if !chunk.bytes.isEmpty {
                        state.pending = chunk.bytes
                        state.heartbeatDue = false
                    } else if state.heartbeatDue {
                        state.pending = self.source.heartbeat
                        state.heartbeatDue = false
                    } else {
                        state.suspended = true
                        if let connection = OpaquePointer(bitPattern: state.connection) {
                            MHD_suspend_connection(connection)
                        }
                        return 0
                    }
                }
                let count = min(buffer.count, state.pending.count - state.offset)
                state.pending.withUnsafeBytes { raw in
                    buffer.copyMemory(
                        from: UnsafeRawBufferPointer(rebasing: raw[state.offset..<(state.offset + count)])
                    )
                }
                state.offset += count
                return count
            }
        }

        /// The socket of a suspended stream (nil while libmicrohttpd owns the connection).
        var suspendedDescriptor: Int32? {
            self.state.withLock { $0.suspended && $0.fd >= 0 ? $0.fd : nil }
        }

        /// Wakes the stream if it sleeps; `heartbeat` asks for a ping, `close` ends it.
        func wake(heartbeat: Bool = false, close: Bool = false) {
            self.state.withLock { state in
                if heartbeat { state.heartbeatDue = true }
                if close { state.closing = true }
                guard state.suspended else { return }
                state.suspended = false
                if let connection = OpaquePointer(bitPattern: state.connection) {
                    MHD_resume_connection(connection)
                }
            }
        }
    }

    private struct State {
        var watchers: [ObjectIdentifier: Watcher] = [:]
        var changed = false
        var stopped = false
    }

    private let state = Mutex(State())
    private let wakeNotifier: Wakeup
    private let thread = Mutex<PosixThread?>(nil)
    /// Every open stream is a suspended-or-resumed connection until its response is released.
    private let suspended: SuspendedConnections
    /// The most streams at once; past it, `GET /v1/events` answers 503 with `Retry-After`.
    let capacity: Int
    /// Seconds between heartbeats on an idle stream.
    let heartbeatSeconds: Int

    init(capacity: Int, heartbeatSeconds: Int, wake: Wakeup, suspended: SuspendedConnections) {
        self.capacity = capacity
        self.heartbeatSeconds = max(heartbeatSeconds, 1)
        self.wakeNotifier = wake
        self.suspended = suspended
    }

    /// Starts the notifier thread.
    func start() throws(SystemError) {
        let thread = try PosixThread(name: "http-sse-notify") { [self] in self.notifierLoop() }
        self.thread.withLock { $0 = thread }
    }

    /// Streams open now.
    var count: Int { self.state.withLock { $0.watchers.count } }

    /// Adds a watcher for `connection`, or returns nil when full or stopping.
    func open(connection: OpaquePointer, start: EventStreamStart, source: any EventStreamSource) -> Watcher? {
        let watcher = Watcher(connection: connection, start: start, source: source, hub: self)
        let added = self.state.withLock { state -> Bool in
            guard !state.stopped, state.watchers.count < self.capacity else { return false }
            state.watchers[ObjectIdentifier(watcher)] = watcher
            return true
        }
        if added { self.suspended.enter() }
        return added ? watcher : nil
    }

    /// The stream's response was destroyed (the peer went away or the stream ended).
    func closed(_ watcher: Watcher) {
        let removed = self.state.withLock { $0.watchers.removeValue(forKey: ObjectIdentifier(watcher)) != nil }
        if removed { self.suspended.leave() }
    }

    /// The registry changed. Called on the epmd loop's thread, so it only flags the change and wakes
    /// the notifier thread, which resumes the sleeping streams: the loop's cost stays the same
    /// whatever the number of watchers.
    func changed() {
        // Without watchers there is no one to wake (a new stream reads the registry itself); while a
        // wake-up is pending, the notifier has not read the flag yet and this change rides along.
        let wake = self.state.withLock { state -> Bool in
            guard !state.watchers.isEmpty, !state.changed else { return false }
            state.changed = true
            return true
        }
        if wake { self.wakeNotifier.signal() }
    }

    /// Ends every stream and refuses new ones, and ends the notifier thread (before `MHD_stop_daemon`,
    /// which must not find suspended connections). Each stream is resumed with nothing left to send, so
    /// its reader ends it; the caller waits for their completions (`SuspendedConnections`). Idempotent.
    func stop() {
        let all = self.state.withLock { state -> [Watcher] in
            state.stopped = true
            return Array(state.watchers.values)
        }
        for watcher in all { watcher.wake(close: true) }
        self.wakeNotifier.signal()
        let thread = self.thread.withLock { thread -> PosixThread? in
            defer { thread = nil }
            return thread
        }
        thread?.join()
    }

    /// Wakes every stream after a change; sends heartbeats to every stream each `heartbeatSeconds`;
    /// and once a second looks for suspended streams whose peer hung up, which libmicrohttpd does not
    /// notice while a connection is suspended: those get a heartbeat at once, whose write fails and
    /// ends the stream, so a closed watcher frees its slot within about a second, not at the next
    /// heartbeat.
    private func notifierLoop() {
        let interval = UInt64(truncatingIfNeeded: self.heartbeatSeconds) * 1_000_000_000
        let second: UInt64 = 1_000_000_000
        var nextHeartbeat = System.monotonicNanoseconds() + interval
        var nextHangUpCheck = System.monotonicNanoseconds() + second
        while true {
            let now = System.monotonicNanoseconds()
            let next = min(nextHeartbeat, nextHangUpCheck)
            if now < next {
                self.wakeNotifier.wait(milliseconds: Int32(clamping: (next - now + 999_999) / 1_000_000))
            }
            let (watchers, changed, stopped) = self.state.withLock { state in
                defer { state.changed = false }
                return (Array(state.watchers.values), state.changed, state.stopped)
            }
            if stopped { break }
            let after = System.monotonicNanoseconds()
            let heartbeat = after >= nextHeartbeat
            if heartbeat { nextHeartbeat = after + interval }
            if changed || heartbeat {
                for watcher in watchers { watcher.wake(heartbeat: heartbeat) }
            } else if after >= nextHangUpCheck {
                for watcher in Self.hungUp(watchers) { watcher.wake(heartbeat: true) }
            }
            if after >= nextHangUpCheck { nextHangUpCheck = after + second }
        }
    }

    /// Linux's POLLRDHUP (the peer shut down its writing side), which Glibc exports only under
    /// `_GNU_SOURCE`.
    private static let pollReadHangUp: Int16 = 0x2000

    /// The suspended watchers whose peer closed or reset its end (one `poll`, no waiting). A socket
    /// read here may have been closed and reused since (the stream was resumed and ended meanwhile):
    /// then the wrong watcher gets a harmless extra heartbeat, or none.
    private static func hungUp(_ watchers: [Watcher]) -> [Watcher] {
        var polled: [(watcher: Watcher, fd: Int32)] = []
        for watcher in watchers {
            if let fd = watcher.suspendedDescriptor { polled.append((watcher, fd)) }
        }
        guard !polled.isEmpty else { return [] }
        let hangUp = Self.pollReadHangUp | Int16(truncatingIfNeeded: POLLHUP) | Int16(truncatingIfNeeded: POLLERR)
        var fds = polled.map { pollfd(fd: $0.fd, events: Self.pollReadHangUp, revents: 0) }
        let ready = fds.withUnsafeMutableBufferPointer { buffer in
            poll(buffer.baseAddress, nfds_t(buffer.count), 0)
        }
        guard ready > 0 else { return [] }
        return zip(polled, fds).compactMap { entry, result in result.revents & hangUp != 0 ? entry.watcher : nil }
    }

    /// libmicrohttpd's content reader for a stream.
    static let reader: MHD_ContentReaderCallback = { cls, _, buffer, max in
        guard let cls, let buffer, max > 0 else { return -1 }
        let watcher = Unmanaged<Watcher>.fromOpaque(cls).takeUnretainedValue()
        return watcher.read(into: UnsafeMutableRawBufferPointer(start: buffer, count: max))
    }

    /// libmicrohttpd's free callback: the response is gone, so is the watcher.
    static let release: MHD_ContentReaderFreeCallback = { cls in
        guard let cls else { return }
        let watcher = Unmanaged<Watcher>.fromOpaque(cls).takeRetainedValue()
        watcher.hub.closed(watcher)
    }
}
