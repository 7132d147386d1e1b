import CMicroHTTPD
import EPMDPosix
import Logging
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
/// a connection limit, a per-address share, a deadline for each request head and an inactivity
/// timeout (``ConnectionTable`` enforces the first three and counts what they refuse or close). Every request is copied into an
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
        /// Concurrent connections accepted; past it, a new connection is refused at accept (closed at
        /// once, counted, logged).
        public var connectionLimit: Int
        /// Seconds an idle connection is kept (libmicrohttpd's inactivity timeout).
        public var connectionTimeout: Int
        /// Connections at once from one peer address (loopback like any other); 0: no limit of its
        /// own. One client then cannot take every slot: probes from other addresses get through.
        public var connectionsPerAddress: Int
        /// Seconds a connection has to deliver a whole request head, from accept and, on a kept-alive
        /// connection, from the end of the previous response; then it is closed, however steadily the
        /// head trickles in (slowloris). 0: no deadline, only the inactivity timeout.
        public var headerTimeout: Int
        /// `/v1/events` streams at once; past it, 503 with `Retry-After`.
        public var maxWatchers: Int
        /// Seconds between heartbeat comments on an idle event stream (under `connectionTimeout`).
        public var heartbeatSeconds: Int
        /// HTTPS (and, with a client CA, mutual TLS); nil: plain HTTP. See `MicroHTTPDServer+TLS.swift`.
        public var tls: TLS?
        /// A socket that listens already (systemd's, named `http`): the daemon serves it instead of
        /// binding `address` and `port` (both are then ignored), and closes it when it stops.
        public var listenSocket: Int32?

        public init(
            address: String = "127.0.0.1",
            port: UInt16 = 0,
            threads: Int = 1,
            connectionLimit: Int = 1024,
            connectionTimeout: Int = 30,
            maxWatchers: Int = 256,
            heartbeatSeconds: Int = 15,
            connectionsPerAddress: Int = 128,
            headerTimeout: Int = 10,
            tls: TLS? = nil,
            listenSocket: Int32? = nil
        ) {
            self.address = address
            self.port = port
            self.threads = threads
            self.connectionLimit = connectionLimit
            self.connectionTimeout = connectionTimeout
            self.maxWatchers = maxWatchers
            self.heartbeatSeconds = heartbeatSeconds
            self.connectionsPerAddress = connectionsPerAddress
            self.headerTimeout = headerTimeout
            self.tls = tls
            self.listenSocket = listenSocket
        }
    }

    /// Where the daemon is in its life.
    private enum Phase {
        /// Configured, not listening yet.
        case configured
        /// Listening: the daemon handle as an address (OpaquePointer is not Sendable), the bound port
        /// and address.
        case running(daemon: UInt, port: UInt16, address: String)
        /// Stopped (or its start failed); it cannot start again.
        case stopped
    }

    private let configuration: Configuration
    private let logger: Logger
    private let context: CallbackContext
    private let phase = Mutex(Phase.configured)

    /// Configures the daemon; ``start()`` binds and starts its threads.
    /// - Parameters:
    ///   - configuration: address, port, threads and limits.
    ///   - logger: where the daemon's start, stop and refusals are logged.
    ///   - longPoll: whether a request should wait (suspended) before it is answered, and how long.
    ///   - events: the source of `/v1/events` streams (nil: no streaming).
    ///   - observer: told the route (the response's `routeIndex`: an index into the route labels the
    ///     observer knows, `HTTPRoute.allCases` for the gateway), status and seconds of every answered
    ///     request (for metrics); called on libmicrohttpd's threads, so it must be quick.
    ///   - connectionObserver: told each connection refused at accept and each one closed for a late
    ///     request head, with a count (for metrics); called on libmicrohttpd's threads and the
    ///     head-deadline thread (holding the connection table's lock, before the late heads are shut
    ///     down), so it must be quick and must not call the server.
    ///   - handler: turns a request into a response; called on libmicrohttpd's threads.
    public init(
        configuration: Configuration,
        logger: Logger,
        longPoll: @escaping @Sendable (HTTPRequest) -> (index: UInt64, seconds: Int)? = { _ in nil },
        events: (any EventStreamSource)? = nil,
        observer: (@Sendable (_ routeIndex: Int, _ status: Int, _ seconds: Double) -> Void)? = nil,
        connectionObserver: (@Sendable (HTTPConnectionEvent, _ count: Int) -> Void)? = nil,
        handler: @escaping @Sendable (HTTPRequest) -> HTTPResponse
    ) {
        self.configuration = configuration
        self.logger = logger
        self.context = CallbackContext(
            handler: handler,
            longPoll: longPoll,
            events: events,
            observer: observer,
            connectionObserver: connectionObserver,
            logger: logger,
            configuration: configuration
        )
    }

    /// Binds the address and starts libmicrohttpd's threads and the helper threads (long-poll timer,
    /// event-stream notifier).
    /// - Throws: `MicroHTTPDError` if the address does not parse, a thread cannot start, the daemon cannot
    ///   start (port in use), or the server was started before.
    public func start() throws(MicroHTTPDError) {
        let configuration = self.configuration
        let fresh = self.phase.withLock { phase -> Bool in
            guard case .configured = phase else { return false }
            phase = .stopped
            return true
        }
        guard fresh else { throw MicroHTTPDError(message: "the HTTP daemon was started before") }
        var storage = sockaddr_storage()
        // The socket's own address when one is given (its port is the one reported).
        let given: SocketAddress?
        if let fd = configuration.listenSocket {
            let local = try? System.localAddress(fd)
            guard let local, local.family != AF_UNSPEC, (try? System.setNonBlocking(fd)) != nil else {
                throw MicroHTTPDError(message: "the HTTP socket \(fd) is not a TCP socket")
            }
            given = local
        } else {
            given = nil
            guard Self.fill(&storage, address: configuration.address, port: configuration.port) else {
                throw MicroHTTPDError(message: "cannot parse HTTP address \"\(configuration.address)\"")
            }
        }
        do {
            for wakeup in self.context.wakeups { try wakeup.open() }
            try self.context.waiters.start()
            try self.context.streams.start()
            try self.context.connections.start()
        } catch {
            self.context.waiters.stop()
            self.context.streams.stop()
            self.context.connections.stop()
            throw MicroHTTPDError(message: "cannot start the HTTP front's threads: \(error)")
        }
        let isIPv6 = given.map { $0.family == AF_INET6 } ?? (Int32(truncatingIfNeeded: storage.ss_family) == AF_INET6)
        // Its messages go to `MicroHTTPDCallbacks.log`: the errors it answers itself are counted there.
        // MHD_USE_ITC: MHD_quiesce_daemon (a hand-over) needs it with an internal polling thread.
        var flags =
            MHD_USE_EPOLL_INTERNAL_THREAD.rawValue | MHD_ALLOW_SUSPEND_RESUME.rawValue | MHD_USE_ERROR_LOG.rawValue
            | MHD_USE_ITC.rawValue
        if isIPv6 { flags |= MHD_USE_IPv6.rawValue }
        if let tls = configuration.tls { flags |= tls.flags }
        // The context is retained for the daemon's life and released in `stop`.
        let context = Unmanaged.passRetained(self.context).toOpaque()
        let started = withUnsafeMutablePointer(to: &storage) { address in
            var options = MicroHTTPDOptions()
            // First, so that no message goes to stderr (libmicrohttpd's default) before it is set.
            options.add(.EXTERNAL_LOGGER, callback: MicroHTTPDCallbacks.log, context: context)
            // The accept policy enforces `connectionLimit` and the per-address share itself, so that
            // each refusal is counted: libmicrohttpd's own checks (its connection limit,
            // MHD_OPTION_PER_IP_CONNECTION_LIMIT, not set) run before the policy and refuse silently.
            // Its limit is set above ours, by one per thread: with a pool, a worker may admit one
            // connection while another is between a close notification and its own count going
            // down. At its own limit libmicrohttpd stops polling the listener (clients then wait in
            // the backlog, unanswered), which the policy's refusals keep from happening.
            options.add(
                .CONNECTION_LIMIT,
                value: max(configuration.connectionLimit, 1) + max(configuration.threads, 1)
            )
            options.add(.CONNECTION_TIMEOUT, value: max(configuration.connectionTimeout, 1))
            options.add(.NOTIFY_COMPLETED, callback: MicroHTTPDCallbacks.completed, context: context)
            options.add(.NOTIFY_CONNECTION, callback: MicroHTTPDCallbacks.connection, context: context)
            if configuration.threads > 1 {
                options.add(.THREAD_POOL_SIZE, value: configuration.threads)
            }
            if let fd = configuration.listenSocket {
                // libmicrohttpd neither binds nor listens then: it accepts on this socket.
                options.add(.LISTEN_SOCKET, value: Int(truncatingIfNeeded: fd))
            } else {
                options.add(.SOCK_ADDR, pointer: UnsafeMutableRawPointer(address))
            }
            configuration.tls?.add(to: &options)  // its texts live as long as `self.configuration`
            return options.withTerminated { items in
                cmhd_start(
                    flags,
                    given?.port ?? configuration.port,
                    MicroHTTPDCallbacks.acceptPolicy,
                    context,
                    MicroHTTPDCallbacks.access,
                    context,
                    items
                )
            }
        }
        guard let started else {
            let reason = String(cString: strerror(errno))
            self.context.waiters.stop()
            self.context.streams.stop()
            self.context.connections.stop()
            Unmanaged<CallbackContext>.fromOpaque(context).release()
            let host = given?.host ?? configuration.address
            let port = given?.port ?? configuration.port
            throw MicroHTTPDError(message: "cannot listen for HTTP on \(host) port \(port): \(reason)")
        }
        let port = given?.port ?? cmhd_bound_port(started)
        let host = given?.host ?? configuration.address
        let address = UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(started)))
        self.phase.withLock { $0 = .running(daemon: address, port: port, address: host) }
        self.logger.info(
            "HTTP daemon started",
            metadata: [
                "address": "\(host)", "port": "\(port)", "threads": "\(configuration.threads)",
                "socket": "\(configuration.listenSocket == nil ? "bound" : "passed")",
            ]
        )
    }

    /// The bound port while running (0 before ``start()`` and after ``stop()``).
    public var port: UInt16 {
        self.phase.withLock { phase in
            if case .running(_, let port, _) = phase { return port }
            return 0
        }
    }

    /// The address listened on while running (the configured one, or the passed socket's), nil
    /// before ``start()`` and after ``stop()``.
    public var address: String? {
        self.phase.withLock { phase in
            if case .running(_, _, let address) = phase { return address }
            return nil
        }
    }

    /// Tells waiting long-poll requests and event streams that the registry reached `generation`;
    /// safe from any thread.
    public func generationChanged(_ generation: UInt64) {
        self.context.waiters.generationChanged(generation)
        self.context.streams.changed()
    }

    /// `/v1/events` streams open now.
    public var eventWatchers: Int { self.context.streams.count }

    /// Connections suspended now (long-polls waiting, event streams open), counted until each completes.
    public var suspendedConnections: Int { self.context.suspended.current }

    /// Connections open now, and the refusals and late heads counted since the start.
    public var connectionStatistics: HTTPConnectionStatistics { self.context.connections.statistics }

    /// The linked libmicrohttpd's version, e.g. `0.9.75`.
    public static var libraryVersion: String {
        guard let text = MHD_get_version() else { return "unknown" }
        return String(cString: text)
    }

    /// The longest ``stop()`` waits for suspended connections to complete before it stops the daemon
    /// anyway (a safety net: each completes as soon as libmicrohttpd's thread takes it back).
    static let drainLimitMilliseconds = 5000

    /// The listening socket while running (nil before ``start()``, after ``stop()``, or when
    /// libmicrohttpd does not tell): a hand-over passes it to the successor.
    public var listenDescriptor: Int32? {
        self.phase.withLock { phase in
            guard case .running(let daemon, _, _) = phase, let pointer = OpaquePointer(bitPattern: daemon) else {
                return nil
            }
            let fd = cmhd_listen_fd(pointer)
            return fd >= 0 ? fd : nil
        }
    }

    /// The longest a hand-over stop waits for requests in flight (not streams or long-polls) to be
    /// answered after the listening socket is let go.
    static let handOverLimitMilliseconds = 1000

    /// Stops the daemon deterministically; idempotent. Refuses new long-polls and streams, resumes
    /// every suspended connection (long-polls are answered, streams end), waits until each one has
    /// completed (counted by the completion callbacks), then stops libmicrohttpd and joins its threads.
    /// Never call from inside a handler.
    /// - Parameter handingOver: a successor serves on the same listening socket: first stop
    ///   accepting (`MHD_quiesce_daemon`, so that libmicrohttpd neither closes nor shuts the socket
    ///   down), let the requests in flight be answered (at most ``handOverLimitMilliseconds``), and in
    ///   the end only close this process's copy of the socket.
    public func stop(handingOver: Bool = false) {
        var released: Int32 = -1
        if handingOver {
            let daemon = self.phase.withLock { phase -> OpaquePointer? in
                if case .running(let daemon, _, _) = phase { return OpaquePointer(bitPattern: daemon) }
                return nil
            }
            if let daemon {
                released = MHD_quiesce_daemon(daemon)
                let deadline =
                    System.monotonicNanoseconds() &+ UInt64(truncatingIfNeeded: Self.handOverLimitMilliseconds)
                    * 1_000_000
                while self.connectionStatistics.open > self.suspendedConnections,
                    System.monotonicNanoseconds() < deadline
                {
                    System.sleepMilliseconds(5)
                }
            }
        }
        self.stopDaemon()
        // After MHD_stop_daemon (its threads may use it until then); close, never shutdown().
        if released >= 0 { System.close(released) }
    }

    private func stopDaemon() {
        let running = self.phase.withLock { phase -> (daemon: UInt, port: UInt16)? in
            defer { phase = .stopped }
            if case .running(let daemon, let port, _) = phase { return (daemon, port) }
            return nil
        }
        guard let running, let daemon = OpaquePointer(bitPattern: running.daemon) else {
            // Never started (or started and failed): the helper threads, if any, end too.
            self.context.waiters.stop()
            self.context.streams.stop()
            self.context.connections.stop()
            return
        }
        self.context.stopping.store(true, ordering: .releasing)
        self.context.waiters.stop()
        self.context.streams.stop()
        let left = self.context.suspended.waitUntilDrained(milliseconds: Self.drainLimitMilliseconds)
        if left > 0 {
            self.logger.warning(
                "HTTP daemon stops with suspended connections not completed",
                metadata: ["connections": "\(left)"]
            )
        }
        MHD_stop_daemon(daemon)
        // After the daemon: it closed every connection (each removed from the table under its lock).
        self.context.connections.stop()
        Unmanaged.passUnretained(self.context).release()
        self.logger.info("HTTP daemon stopped", metadata: ["port": "\(running.port)"])
    }

    deinit { self.stop() }

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

/// What the C callbacks get as their context pointer: the closures, the helper objects, and the
/// shutdown flag.
final class CallbackContext: Sendable {
    let handler: @Sendable (HTTPRequest) -> HTTPResponse
    let longPoll: @Sendable (HTTPRequest) -> (index: UInt64, seconds: Int)?
    let events: (any EventStreamSource)?
    /// `events`' `eventStreamStart(for:)`, asked of every request: a closure call costs a retain, a
    /// copy of the existential several.
    let streamStart: (@Sendable (HTTPRequest) -> EventStreamStart?)?
    let observer: (@Sendable (Int, Int, Double) -> Void)?
    let logger: Logger
    let suspended: SuspendedConnections
    let waiters: LongPollWaiters
    let streams: EventStreams
    /// Every open connection: the accept policy's counts and the request heads' deadlines.
    let connections: ConnectionTable
    /// The eventfds the helpers sleep on, made by `start`.
    let wakeups: [Wakeup]
    /// Set by `stop`: no request is suspended any more.
    let stopping = Atomic<Bool>(false)
    /// Mutual TLS: every request's client certificate is checked before anything else.
    let verifiesClients: Bool

    init(
        handler: @escaping @Sendable (HTTPRequest) -> HTTPResponse,
        longPoll: @escaping @Sendable (HTTPRequest) -> (index: UInt64, seconds: Int)?,
        events: (any EventStreamSource)?,
        observer: (@Sendable (Int, Int, Double) -> Void)?,
        connectionObserver: (@Sendable (HTTPConnectionEvent, Int) -> Void)?,
        logger: Logger,
        configuration: MicroHTTPDServer.Configuration
    ) {
        self.handler = handler
        self.longPoll = longPoll
        self.events = events
        if let events {
            self.streamStart = { @Sendable request in events.eventStreamStart(for: request) }
        } else {
            self.streamStart = nil
        }
        self.observer = observer
        self.logger = logger
        self.verifiesClients = configuration.tls?.verifiesClients ?? false
        self.wakeups = [Wakeup(), Wakeup(), Wakeup(), Wakeup()]
        self.suspended = SuspendedConnections(changed: self.wakeups[0])
        self.waiters = LongPollWaiters(capacity: max(configuration.connectionLimit / 2, 1), wake: self.wakeups[1])
        self.streams = EventStreams(
            capacity: max(min(configuration.maxWatchers, configuration.connectionLimit - 1), 0),
            heartbeatSeconds: configuration.heartbeatSeconds,
            wake: self.wakeups[2],
            suspended: self.suspended
        )
        self.connections = ConnectionTable(
            limits: .init(
                connections: max(configuration.connectionLimit, 1),
                perAddress: max(configuration.connectionsPerAddress, 0),
                headerTimeout: UInt64(clamping: min(max(configuration.headerTimeout, 0), 86_400)) * 1_000_000_000
            ),
            wake: self.wakeups[3],
            logger: logger,
            observer: connectionObserver
        )
    }
}
