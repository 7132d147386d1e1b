import EPMDLogging
import EPMDPosix
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// What the HTTP front did to a connection because of a limit: the causes counted in
/// `epmd_gateway_http_connections_rejected_total{reason}`, `epmd_gateway_http_header_timeouts_total`
/// and `epmd_gateway_http_requests_rejected_total{reason}`.
public enum HTTPConnectionEvent: Int, Sendable, CaseIterable {
    /// Refused at accept: its peer address already held `connectionsPerAddress` connections.
    case refusedPerAddress
    /// Refused at accept: the front already held `connectionLimit` connections.
    case refusedAtLimit
    /// Closed: its request head was not complete by its deadline (`headerTimeout`).
    case headerTimeout
    /// Answered 431 by libmicrohttpd itself and closed: the request head did not fit its memory pool
    /// (a huge header, thousands of headers). The access handler never sees such a request.
    case headTooLarge
    /// Answered 414 by libmicrohttpd itself and closed: the request line did not fit (a huge URL).
    case uriTooLong
    /// Answered with another error status by libmicrohttpd itself (400, 413, 505, ...) and closed.
    case rejectedByLibrary

    /// The event for an error status libmicrohttpd answered itself.
    public init(libraryStatus status: Int) {
        switch status {
        case 431: self = .headTooLarge
        case 414: self = .uriTooLong
        default: self = .rejectedByLibrary
        }
    }
}

/// The HTTP front's connections now, and what its limits did since it started.
public struct HTTPConnectionStatistics: Sendable, Equatable {
    /// Connections open now (accepted and not yet closed).
    public var open: Int
    /// Connections refused at accept because their address held its share.
    public var refusedPerAddress: Int
    /// Connections refused at accept because the front was full.
    public var refusedAtLimit: Int
    /// Connections closed because their request head missed its deadline.
    public var headerTimeouts: Int
    /// Requests libmicrohttpd answered itself with an error (431, 414, ...) and closed.
    public var rejectedByLibrary = 0
}

/// Every connection libmicrohttpd holds, with its peer address and the deadline of its request head;
/// the accept policy that enforces the front's limits; and the thread that closes the connections
/// whose head is late.
///
/// - Accept: libmicrohttpd asks ``admit(_:thread:)`` (its accept-policy callback) before it sets a
///   connection up. A connection past its address's share or past the front's limit is refused there
///   (libmicrohttpd closes it at once), counted and logged with rate limiting. An admitted connection
///   holds a reservation that its `STARTED` notification (same thread, same call of libmicrohttpd's
///   accept) turns into an entry. When libmicrohttpd fails between the two (out of memory), nothing
///   tells us; the thread's next accept finds the stale reservation and releases it.
/// - Request heads: an entry gets a deadline when it starts (``started(connection:fd:thread:)``) and
///   again when a request completes on a kept-alive connection (``requestCompleted(connection:)``);
///   the access handler's first call for a request (the head is complete) clears it
///   (``headComplete(connection:)``). A suspended connection (long-poll, event stream) is past its
///   head, so it has none. The deadline thread `shutdown(2)`s an entry past its deadline; libmicrohttpd
///   then sees the end of the stream and closes the connection itself.
///
/// Why the descriptor shut down is the connection's and not a reuse of its number: libmicrohttpd
/// 0.9.75 closes a connection's socket only in `MHD_cleanup_connections` and on the failure path of
/// `new_connection_process_`, both after its `MHD_CONNECTION_NOTIFY_CLOSED` notification returns
/// (`daemon.c`), and nowhere sets `socket_fd` again. ``closed(connection:)`` removes the entry under
/// the same lock the deadline thread holds across its look-up and its `shutdown`. So either the
/// shutdown comes first, while the socket is still open, or the entry is gone and nothing is shut
/// down. (libmicrohttpd itself shuts connections down from another thread this way in
/// `MHD_stop_daemon`.)
final class ConnectionTable: Sendable {
    /// The front's limits.
    struct Limits: Sendable {
        /// Connections at once.
        var connections: Int
        /// Connections at once from one address; 0: no share.
        var perAddress: Int
        /// Nanoseconds a request head has, from accept or from the end of the previous response; 0: no deadline.
        var headerTimeout: UInt64
    }

    private struct Entry {
        var fd: Int32
        var peer: PeerAddress?
        /// When the request head must be complete (monotonic nanoseconds); nil while a request is handled.
        var deadline: UInt64?
        /// Shut down for a late head: it gets no new deadline.
        var shut = false
    }

    /// A place the accept policy gave a connection libmicrohttpd has not started yet.
    private struct Reservation {
        /// Its peer address (nil: not IP).
        var peer: PeerAddress?
    }

    private struct State {
        /// By `MHD_Connection` address.
        var entries: [UInt: Entry] = [:]
        var perAddress: [PeerAddress: Int] = [:]
        /// Admitted by the accept policy, not started yet: by accepting thread.
        var reservations: [UInt: Reservation] = [:]
        /// Entries plus reservations.
        var count = 0
        /// When the deadline thread wakes next; nil: it sleeps until signalled.
        var plannedWake: UInt64?
        var stopped = false

        mutating func release(_ peer: PeerAddress?) {
            self.count = max(self.count - 1, 0)
            guard let peer, let held = self.perAddress[peer] else { return }
            self.perAddress[peer] = held > 1 ? held - 1 : nil
        }

        /// Plans a wake-up for `deadline`; true when the thread must be signalled (it sleeps longer).
        mutating func schedule(_ deadline: UInt64) -> Bool {
            if let planned = self.plannedWake, planned <= deadline { return false }
            self.plannedWake = deadline
            return true
        }
    }

    /// How late the deadline thread may look, to close the heads due within this window in one pass:
    /// at most 20 passes a second, whatever the number of connections.
    static let coalescingNanoseconds: UInt64 = 50_000_000

    let limits: Limits
    private let state = Mutex(State())
    /// By `HTTPConnectionEvent.rawValue`.
    private let counters = Mutex([Int](repeating: 0, count: HTTPConnectionEvent.allCases.count))
    private let wake: Wakeup
    private let thread = Mutex<PosixThread?>(nil)
    private let logger: Logger
    private let logLimiter = LogRateLimiter(reasons: HTTPConnectionEvent.allCases.count)
    private let observer: (@Sendable (HTTPConnectionEvent, Int) -> Void)?

    /// - Parameters:
    ///   - limits: the front's limits.
    ///   - wake: the eventfd the deadline thread sleeps on.
    ///   - logger: where refusals and late heads are logged (one line per cause per 10 s, with a count).
    ///   - observer: told each refusal and late head (for metrics), on libmicrohttpd's threads and
    ///     the deadline thread.
    init(
        limits: Limits,
        wake: Wakeup,
        logger: Logger,
        observer: (@Sendable (HTTPConnectionEvent, Int) -> Void)?
    ) {
        self.limits = limits
        self.wake = wake
        self.logger = logger
        self.observer = observer
    }

    // MARK: - Accept and close

    /// The accept policy: nil admits the connection (and reserves its place), otherwise why it is refused
    /// (counted and logged here).
    /// - Parameters:
    ///   - peer: its address (nil if not IP: then only the front's limit applies).
    ///   - thread: the accepting thread (``currentThread``).
    func admit(_ peer: PeerAddress?, thread: UInt) -> HTTPConnectionEvent? {
        let refusal = self.state.withLock { state -> HTTPConnectionEvent? in
            if let stale = state.reservations.removeValue(forKey: thread) { state.release(stale.peer) }
            if self.limits.perAddress > 0, let peer, state.perAddress[peer, default: 0] >= self.limits.perAddress {
                return .refusedPerAddress
            }
            if state.count >= self.limits.connections { return .refusedAtLimit }
            state.count += 1
            if let peer { state.perAddress[peer, default: 0] += 1 }
            state.reservations[thread] = Reservation(peer: peer)
            return nil
        }
        if let refusal { self.record(refusal, count: 1, peer: peer) }
        return refusal
    }

    /// libmicrohttpd set up an admitted connection (`MHD_CONNECTION_NOTIFY_STARTED`): its head's
    /// deadline starts now.
    func started(connection: UInt, fd: Int32, thread: UInt) {
        let deadline = self.deadline(after: System.monotonicNanoseconds())
        let signal = self.state.withLock { state -> Bool in
            let peer: PeerAddress?
            if let reserved = state.reservations.removeValue(forKey: thread) {
                peer = reserved.peer
            } else {
                // Not seen by the accept policy (libmicrohttpd calls it for every accepted socket).
                state.count += 1
                peer = nil
            }
            state.entries[connection] = Entry(fd: fd, peer: peer, deadline: deadline)
            guard let deadline else { return false }
            return state.schedule(deadline)
        }
        if signal { self.wake.signal() }
    }

    /// libmicrohttpd closes the connection (`MHD_CONNECTION_NOTIFY_CLOSED`, before its socket is closed).
    func closed(connection: UInt) {
        self.state.withLock { state in
            if let entry = state.entries.removeValue(forKey: connection) { state.release(entry.peer) }
        }
    }

    // MARK: - Request heads

    /// The access handler's first call for a request: its head is complete, no deadline until it completes.
    func headComplete(connection: UInt) {
        guard self.limits.headerTimeout > 0 else { return }
        self.state.withLock { state in
            state.entries[connection]?.deadline = nil
        }
    }

    /// A request completed (`MHD_OPTION_NOTIFY_COMPLETED`): on a kept-alive connection, the next head's
    /// deadline starts now.
    func requestCompleted(connection: UInt) {
        guard let deadline = self.deadline(after: System.monotonicNanoseconds()) else { return }
        let signal = self.state.withLock { state -> Bool in
            guard let entry = state.entries[connection], !entry.shut else { return false }
            state.entries[connection]?.deadline = deadline
            return state.schedule(deadline)
        }
        if signal { self.wake.signal() }
    }

    /// Shuts down every connection whose head is past its deadline at `now`, counted (and told to the
    /// observer) before the first shutdown: a client that sees its connection end sees it counted.
    /// - Returns: how many were shut down, and the next deadline (nil: none).
    func expire(now: UInt64) -> (expired: Int, next: UInt64?) {
        self.state.withLock { state in
            var due: [Int32] = []
            var next: UInt64?
            var index = state.entries.values.startIndex
            while index != state.entries.values.endIndex {
                if let deadline = state.entries.values[index].deadline {
                    if deadline <= now {
                        due.append(state.entries.values[index].fd)
                        state.entries.values[index].deadline = nil
                        state.entries.values[index].shut = true
                    } else {
                        next = min(next ?? deadline, deadline)
                    }
                }
                state.entries.values.formIndex(after: &index)
            }
            state.plannedWake = next.map { $0 + Self.coalescingNanoseconds }
            if !due.isEmpty { self.count(.headerTimeout, count: due.count) }
            // Under the lock `closed` takes: each socket is still open (see the type's comment).
            for fd in due { _ = shutdown(fd, Int32(truncatingIfNeeded: SHUT_RDWR)) }
            return (due.count, next)
        }
    }

    // MARK: - Figures

    /// Connections open now and the counts so far.
    var statistics: HTTPConnectionStatistics {
        let counts = self.counters.withLock { $0 }
        return HTTPConnectionStatistics(
            open: self.state.withLock { $0.entries.count },
            refusedPerAddress: counts[HTTPConnectionEvent.refusedPerAddress.rawValue],
            refusedAtLimit: counts[HTTPConnectionEvent.refusedAtLimit.rawValue],
            headerTimeouts: counts[HTTPConnectionEvent.headerTimeout.rawValue],
            rejectedByLibrary: counts[HTTPConnectionEvent.headTooLarge.rawValue]
                + counts[HTTPConnectionEvent.uriTooLong.rawValue]
                + counts[HTTPConnectionEvent.rejectedByLibrary.rawValue]
        )
    }

    /// How many `event`s were counted so far (the counters alone: callable from the observer).
    func counted(_ event: HTTPConnectionEvent) -> Int {
        self.counters.withLock { $0[event.rawValue] }
    }

    /// The calling thread's id (a `pthread_t`), the key of its reservation.
    static var currentThread: UInt { UInt(truncatingIfNeeded: pthread_self()) }

    // MARK: - The deadline thread

    /// Starts the deadline thread (none without a header timeout).
    func start() throws(SystemError) {
        guard self.limits.headerTimeout > 0 else { return }
        let thread = try PosixThread(name: "http-head-timer") { [self] in self.deadlineLoop() }
        self.thread.withLock { $0 = thread }
    }

    /// Ends the deadline thread. Idempotent.
    func stop() {
        self.state.withLock { $0.stopped = true }
        self.wake.signal()
        let thread = self.thread.withLock { thread -> PosixThread? in
            defer { thread = nil }
            return thread
        }
        thread?.join()
    }

    private func deadlineLoop() {
        while true {
            let now = System.monotonicNanoseconds()
            let (expired, next) = self.expire(now: now)
            if expired > 0 { self.log(.headerTimeout, count: expired, peer: nil) }
            if self.state.withLock({ $0.stopped }) { return }
            if let next {
                let nanoseconds = (next > now ? next - now : 0) + Self.coalescingNanoseconds
                self.wake.wait(milliseconds: Int32(clamping: (nanoseconds + 999_999) / 1_000_000))
            } else {
                self.wake.wait(milliseconds: -1)
            }
        }
    }

    private func deadline(after now: UInt64) -> UInt64? {
        self.limits.headerTimeout > 0 ? now &+ self.limits.headerTimeout : nil
    }

    /// libmicrohttpd answered a request with the error `status` itself (its log line says so) and
    /// closes the connection: counted and logged like the front's own refusals.
    func answeredByLibrary(status: Int) {
        self.record(HTTPConnectionEvent(libraryStatus: status), count: 1, peer: nil, status: status)
    }

    /// Counts `count` events, tells the observer, and logs one line per cause per interval.
    private func record(_ event: HTTPConnectionEvent, count: Int, peer: PeerAddress?, status: Int = 0) {
        self.count(event, count: count)
        self.log(event, count: count, peer: peer, status: status)
    }

    /// Counts `count` events and tells the observer.
    private func count(_ event: HTTPConnectionEvent, count: Int) {
        self.counters.withLock { $0[event.rawValue] += count }
        self.observer?(event, count)
    }

    /// Logs one line per cause per interval, with the count since the last one.
    private func log(_ event: HTTPConnectionEvent, count: Int, peer: PeerAddress?, status: Int = 0) {
        let now = System.monotonicNanoseconds()
        var due = 0
        for _ in 0..<count {
            if let line = self.logLimiter.occurred(event.rawValue, now: now) { due += line }
        }
        guard due > 0 else { return }
        // The count and the address go in the text too: the epmd-style log handler prints no metadata.
        let text: String
        let metadata: Logger.Metadata
        switch event {
        case .refusedPerAddress:
            let address = peer.map(String.init(describing:)) ?? "?"
            text =
                "HTTP connection refused: too many connections from one address (\(address), share "
                + "\(self.limits.perAddress)); \(due) refused since the last line"
            metadata = ["address": "\(address)", "limit": "\(self.limits.perAddress)", "refused": "\(due)"]
        case .refusedAtLimit:
            text =
                "HTTP connection refused: connection limit reached (\(self.limits.connections)); \(due) refused "
                + "since the last line"
            metadata = ["limit": "\(self.limits.connections)", "refused": "\(due)"]
        case .headerTimeout:
            let seconds = self.limits.headerTimeout / 1_000_000_000
            text =
                "HTTP connection closed: request head not complete in time (\(seconds) s); \(due) closed since "
                + "the last line"
            metadata = ["seconds": "\(seconds)", "closed": "\(due)"]
        case .headTooLarge, .uriTooLong, .rejectedByLibrary:
            let what =
                switch event {
                case .headTooLarge: "request head too large"
                case .uriTooLong: "request line too long"
                default: "malformed request"
                }
            text = "HTTP request answered \(status) by libmicrohttpd (\(what)); \(due) since the last line"
            metadata = ["status": "\(status)", "answered": "\(due)"]
        }
        self.logger.warning("\(text)", metadata: metadata)
    }
}
