import CMicroHTTPD
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Why the HTTP daemon did not start.
public struct MicroHTTPDError: Error, Equatable, Sendable, CustomStringConvertible {
    public var message: String

    public var description: String { self.message }
}

/// A libmicrohttpd daemon: epoll on internal threads (a pool of `threads`), suspend/resume allowed,
/// a connection limit and a connection timeout always set. Every request is copied into an
/// `HTTPRequest` value, handed to `handler` (which must not block), and its `HTTPResponse` copied back.
/// No Swift error or trap crosses into C: the handler is non-throwing and nothing here unwraps by force.
public final class MicroHTTPDServer: Sendable {
    /// How to run the daemon.
    public struct Configuration: Sendable {
        /// An IP literal to bind (`127.0.0.1`, `::1`, `0.0.0.0`, `::`).
        public var address: String
        /// The port; 0 picks a free one (see `port` after `start`).
        public var port: UInt16
        /// Worker threads, each with its own epoll set (1 = one internal thread).
        public var threads: Int
        /// Concurrent connections accepted.
        public var connectionLimit: Int
        /// Seconds an idle connection is kept.
        public var connectionTimeout: Int
        /// `/v1/events` streams at once; past it, 503 with `Retry-After`.
        public var maxWatchers: Int
        /// Seconds between heartbeat comments on an idle event stream (under `connectionTimeout`).
        public var heartbeatSeconds: Int

        public init(
            address: String = "127.0.0.1",
            port: UInt16 = 0,
            threads: Int = 1,
            connectionLimit: Int = 1024,
            connectionTimeout: Int = 30,
            maxWatchers: Int = 256,
            heartbeatSeconds: Int = 15
        ) {
            self.address = address
            self.port = port
            self.threads = threads
            self.connectionLimit = connectionLimit
            self.connectionTimeout = connectionTimeout
            self.maxWatchers = maxWatchers
            self.heartbeatSeconds = heartbeatSeconds
        }
    }

    let handler: @Sendable (HTTPRequest) -> HTTPResponse
    /// The daemon handle as an address (OpaquePointer is not Sendable); 0 once stopped.
    private let daemon = Mutex<UInt>(0)
    /// The bound port, once started.
    public let port: UInt16

    /// Starts the daemon.
    /// - Parameters:
    ///   - configuration: address, port, threads and limits.
    ///   - handler: turns a request into a response; called on libmicrohttpd's threads.
    ///   - observer: told the route, status and seconds of every answered request (for metrics);
    ///     called on libmicrohttpd's threads, so it must be quick.
    /// - Throws: `MicroHTTPDError` if the address does not parse or the daemon cannot start (port in use).
    public init(
        configuration: Configuration,
        longPoll: @escaping @Sendable (HTTPRequest) -> (index: UInt64, seconds: Int)? = { _ in nil },
        events: (any EventStreamSource)? = nil,
        observer: (@Sendable (_ route: String, _ status: Int, _ seconds: Double) -> Void)? = nil,
        handler: @escaping @Sendable (HTTPRequest) -> HTTPResponse
    ) throws(MicroHTTPDError) {
        self.handler = handler
        let waiters = LongPollWaiters(capacity: max(configuration.connectionLimit / 2, 1))
        let streams = EventStreams(
            capacity: max(min(configuration.maxWatchers, configuration.connectionLimit - 1), 0),
            heartbeatSeconds: configuration.heartbeatSeconds
        )
        var storage = sockaddr_storage()
        guard Self.fill(&storage, address: configuration.address, port: configuration.port) else {
            throw MicroHTTPDError(message: "cannot parse HTTP address \"\(configuration.address)\"")
        }
        let isIPv6 = Int32(truncatingIfNeeded: storage.ss_family) == AF_INET6
        var flags = MHD_USE_EPOLL_INTERNAL_THREAD.rawValue | MHD_ALLOW_SUSPEND_RESUME.rawValue
        if isIPv6 { flags |= MHD_USE_IPv6.rawValue }
        // The context is retained for the daemon's life and released in `stop`.
        let context = Unmanaged.passRetained(
            CallbackContext(
                handler: handler,
                longPoll: longPoll,
                events: events,
                observer: observer,
                waiters: waiters,
                streams: streams
            )
        )
        let started = withUnsafePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
                cmhd_start(
                    flags,
                    configuration.port,
                    address,
                    UInt32(clamping: max(configuration.threads, 1)),
                    UInt32(clamping: max(configuration.connectionLimit, 1)),
                    UInt32(clamping: max(configuration.connectionTimeout, 1)),
                    MicroHTTPDCallbacks.access,
                    context.toOpaque(),
                    MicroHTTPDCallbacks.completed,
                    nil
                )
            }
        }
        guard let started else {
            waiters.stop()
            streams.stop()
            context.release()
            let reason = String(cString: strerror(errno))
            throw MicroHTTPDError(
                message: "cannot listen for HTTP on \(configuration.address) port \(configuration.port): \(reason)"
            )
        }
        let address = UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(started)))
        self.daemon.withLock { $0 = address }
        self.port = cmhd_bound_port(started)
        self.context = context
        self.waiters = waiters
        self.streams = streams
    }

    private let context: Unmanaged<CallbackContext>
    private let waiters: LongPollWaiters
    private let streams: EventStreams

    /// Tells waiting long-poll requests and event streams that the registry reached `generation`;
    /// safe from any thread.
    public func generationChanged(_ generation: UInt64) {
        self.waiters.generationChanged(generation)
        self.streams.changed()
    }

    /// `/v1/events` streams open now.
    public var eventWatchers: Int { self.streams.count }

    /// The linked libmicrohttpd's version, e.g. `0.9.75`.
    public static var libraryVersion: String {
        guard let text = MHD_get_version() else { return "unknown" }
        return String(cString: text)
    }

    /// Stops the daemon and waits for its threads; idempotent. Never call from inside a handler.
    public func stop() {
        let address = self.daemon.withLock { value -> UInt in
            defer { value = 0 }
            return value
        }
        guard let daemon = OpaquePointer(bitPattern: address) else { return }
        // Suspended connections must be resumed before the daemon stops (libmicrohttpd's rule);
        // give its threads a moment to take them back.
        self.waiters.stop()
        self.streams.stop()
        usleep(50_000)
        MHD_stop_daemon(daemon)
        self.context.release()
    }

    deinit { self.stop() }

    /// CLOCK_MONOTONIC in nanoseconds.
    static func monotonicNanoseconds() -> UInt64 {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return UInt64(truncatingIfNeeded: spec.tv_sec) &* 1_000_000_000 &+ UInt64(truncatingIfNeeded: spec.tv_nsec)
    }

    private static func fill(_ storage: inout sockaddr_storage, address: String, port: UInt16) -> Bool {
        var v6 = in6_addr()
        if inet_pton(AF_INET6, address, &v6) == 1 {
            return withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { pointer in
                    pointer.pointee.sin6_family = sa_family_t(AF_INET6)
                    pointer.pointee.sin6_port = port.bigEndian
                    pointer.pointee.sin6_addr = v6
                    return true
                }
            }
        }
        var v4 = in_addr()
        if inet_pton(AF_INET, address, &v4) == 1 {
            return withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { pointer in
                    pointer.pointee.sin_family = sa_family_t(AF_INET)
                    pointer.pointee.sin_port = port.bigEndian
                    pointer.pointee.sin_addr = v4
                    return true
                }
            }
        }
        return false
    }
}

/// What the C callbacks get as their context pointer.
final class CallbackContext: Sendable {
    let handler: @Sendable (HTTPRequest) -> HTTPResponse
    let longPoll: @Sendable (HTTPRequest) -> (index: UInt64, seconds: Int)?
    let events: (any EventStreamSource)?
    let observer: (@Sendable (String, Int, Double) -> Void)?
    let waiters: LongPollWaiters
    let streams: EventStreams

    init(
        handler: @escaping @Sendable (HTTPRequest) -> HTTPResponse,
        longPoll: @escaping @Sendable (HTTPRequest) -> (index: UInt64, seconds: Int)?,
        events: (any EventStreamSource)?,
        observer: (@Sendable (String, Int, Double) -> Void)?,
        waiters: LongPollWaiters,
        streams: EventStreams
    ) {
        self.handler = handler
        self.longPoll = longPoll
        self.events = events
        self.observer = observer
        self.waiters = waiters
        self.streams = streams
    }
}
