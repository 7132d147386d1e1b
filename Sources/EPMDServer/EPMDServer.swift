import CEPMDSystem
import EPMDPosix
import EPMDProtocol
import EPMDRegistry
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The epmd port: a small event loop over epoll on one dedicated thread.
///
/// The loop only does I/O. Each connection's `EPMDConnectionStateMachine` decides what a request
/// means; the `NodeRegistry` holds the names. Writes never block: a reply that does not fit in the
/// socket buffer waits in the connection's outbound buffer. Every connection that is not a kept
/// registration must finish within the packet timeout, counted from connect.
public final class EPMDServer: Sendable {
    /// Why `run()` returned.
    public enum ExitReason: Equatable, Sendable {
        /// A KILL_REQ was accepted: exit 0, as C epmd.
        case killed
        /// SIGTERM/SIGINT or `shutdown()`.
        case shutdown
    }

    public let configuration: EPMDServerConfiguration
    public let registry: NodeRegistry
    let logger: EPMDLogger
    private let listenFDs: [Int32]
    private let wakeFD: Int32
    private let shutdownRequested = Atomic<Bool>(false)
    private let draining = Atomic<Bool>(false)
    let counters: EPMDServerCounters

    /// The port the listeners are bound to (equal to the configured port except for port 0 in tests).
    public let boundPort: UInt16

    /// Opens (or adopts) the listening sockets. Nothing is accepted until `run()`.
    /// - Parameter instruments: receives every count for metrics (called on the loop thread).
    /// - Throws: `ListenerError` or `SystemError`.
    public init(
        configuration: EPMDServerConfiguration,
        registry: NodeRegistry,
        logger: EPMDLogger,
        instruments: (any EPMDServerInstruments)? = nil
    ) throws {
        self.configuration = configuration
        self.counters = EPMDServerCounters(instruments: instruments)
        self.registry = registry
        self.logger = logger
        switch configuration.listeners {
        case .bind(let plan):
            let (fds, port) = try Listener.bind(plan) { message in logger.log(1, message) }
            self.listenFDs = fds
            self.boundPort = port
        case .inherited(let fds):
            for fd in fds { try System.setNonBlocking(fd) }
            self.listenFDs = fds
            self.boundPort = fds.first.flatMap { try? System.localAddress($0) }?.port ?? configuration.port
        }
        self.wakeFD = try System.eventFD()
    }

    deinit {
        System.close(self.wakeFD)
    }

    /// True from the first SIGTERM/SIGINT until the exit (the shutdown grace period).
    public var isDraining: Bool { self.draining.load(ordering: .acquiring) }

    func startDraining() { self.draining.store(true, ordering: .releasing) }

    /// A copy of the counters.
    public var statistics: EPMDServerStatistics { self.counters.snapshot }

    /// Asks the loop to stop; safe from any thread.
    public func shutdown() {
        self.shutdownRequested.store(true, ordering: .releasing)
        System.signalEvent(self.wakeFD)
    }

    /// Runs the loop on the calling thread until KILL, a signal or `shutdown()`.
    /// - Returns: why it stopped. Every connection and listener is closed by then.
    /// - Throws: `SystemError` if epoll itself cannot be set up.
    public func run() throws(SystemError) -> ExitReason {
        var loop = try EventLoop(server: self)
        return loop.run()
    }

    var isShutdownRequested: Bool { self.shutdownRequested.load(ordering: .acquiring) }
    var listeners: [Int32] { self.listenFDs }
    var wakeDescriptor: Int32 { self.wakeFD }
}

/// One accepted connection, owned by the loop thread.
private final class Connection {
    let id: ConnectionID
    let fd: Int32
    let serial: UInt32
    let peer: SocketAddress
    var machine: EPMDConnectionStateMachine
    var outbound: [UInt8] = []
    var outboundOffset = 0
    var interest: UInt32
    var registered = false
    var writeAt: UInt64 = 0
    /// Whether the descriptor is in the epoll set yet (it is not during the speculative first read).
    var watched = false
    /// When the packet timeout closes it (monotonic nanoseconds), while it is in the timed list.
    var deadline: UInt64 = 0
    /// Monotonic accept time (request latency runs from here).
    var acceptedAt: UInt64 = 0
    /// Links of the loop's `TimedList`.
    var timedNext: Connection?
    unowned var timedPrevious: Connection?
    var isTimed = false

    init(id: ConnectionID, fd: Int32, serial: UInt32, peer: SocketAddress, machine: EPMDConnectionStateMachine) {
        self.id = id
        self.fd = fd
        self.serial = serial
        self.peer = peer
        self.machine = machine
        self.interest = EventLoop.readInterest
    }
}

/// An intrusive doubly linked list of connections in deadline order: O(1) append, removal and
/// earliest lookup, and no entry outlives its connection.
private struct TimedList {
    private(set) var head: Connection?
    private var tail: Connection?

    var isEmpty: Bool { self.head == nil }

    mutating func append(_ connection: Connection) {
        guard !connection.isTimed else { return }
        connection.isTimed = true
        connection.timedPrevious = self.tail
        connection.timedNext = nil
        if let tail = self.tail { tail.timedNext = connection } else { self.head = connection }
        self.tail = connection
    }

    mutating func remove(_ connection: Connection) {
        guard connection.isTimed else { return }
        connection.isTimed = false
        let previous = connection.timedPrevious
        let next = connection.timedNext
        if let previous { previous.timedNext = next } else { self.head = next }
        if let next { next.timedPrevious = previous } else { self.tail = previous }
        connection.timedNext = nil
        connection.timedPrevious = nil
    }
}

/// The loop's state: lives on the loop thread only.
private struct EventLoop {
    static let readInterest = UInt32(EPOLLIN.rawValue) | UInt32(EPOLLRDHUP.rawValue)
    static let writeInterest = UInt32(EPOLLOUT.rawValue)
    static let acceptBatch = 64

    private enum Tag: UInt64 {
        case connection = 0
        case listener = 1
        case wake = 2
        case signal = 3
    }

    let server: EPMDServer
    let epfd: Int32
    var signalFD: Int32 = -1
    var slots: [Connection?] = []
    var registeredByID: [ConnectionID: Int32] = [:]
    var nextID: UInt64 = 0
    var nextSerial: UInt32 = 0
    var openCount = 0
    /// Connections under the packet timeout, in accept order: deadlines only grow, so the head is
    /// the earliest. Closed and registered connections leave the list at once (O(1)).
    var timed = TimedList()
    /// (time, fd, serial) of replies held back by `-delay_write`, also in order.
    var delayedWrites: [(at: UInt64, fd: Int32, serial: UInt32)] = []
    var exitReason: EPMDServer.ExitReason?
    var acceptPaused = false
    /// When the shutdown grace period ends (monotonic nanoseconds), once a signal started it.
    var drainUntil: UInt64?
    var acceptResumeAt: UInt64 = 0
    var reserveFD: Int32 = -1
    let readBuffer: UnsafeMutableRawBufferPointer
    let eventBits: UnsafeMutablePointer<UInt32>
    let eventData: UnsafeMutablePointer<UInt64>
    let eventCapacity = 256
    let packetTimeout: UInt64
    let delayWrite: UInt64
    let prefix: [UInt8]

    init(server: EPMDServer) throws(SystemError) {
        self.server = server
        self.epfd = try System.epollCreate()
        self.readBuffer = .allocate(byteCount: 4096, alignment: 16)
        self.eventBits = .allocate(capacity: 256)
        self.eventData = .allocate(capacity: 256)
        self.packetTimeout = UInt64(max(server.configuration.packetTimeout, 1)) * 1_000_000_000
        self.delayWrite = UInt64(max(server.configuration.delayWrite, 0)) * 1_000_000_000
        self.prefix = EPMDResponse.portPrefix(server.configuration.port)
        for (index, fd) in server.listeners.enumerated() {
            try self.watchForInput(fd, data: Self.data(.listener, fd: Int32(index)))
        }
        try self.watchForInput(server.wakeDescriptor, data: Self.data(.wake, fd: 0))
        if server.configuration.handleSignals {
            self.signalFD = try System.signalFD([SIGTERM, SIGINT])
            try self.watchForInput(self.signalFD, data: Self.data(.signal, fd: 0))
        }
        self.reserveFD = System.openReserve() ?? -1
    }

    private func watchForInput(_ fd: Int32, data: UInt64) throws(SystemError) {
        try System.epollControl(self.epfd, EPOLL_CTL_ADD, fd, events: UInt32(EPOLLIN.rawValue), data: data)
    }

    private static func data(_ tag: Tag, fd: Int32, serial: UInt32 = 0) -> UInt64 {
        tag.rawValue << 56 | UInt64(serial & 0x00FF_FFFF) << 32 | UInt64(UInt32(bitPattern: fd))
    }

    // MARK: - The loop

    mutating func run() -> EPMDServer.ExitReason {
        let log = self.server.logger
        log.log(2, "entering the main epoll loop")
        while self.exitReason == nil {
            if self.server.isShutdownRequested {
                self.exitReason = .shutdown
                break
            }
            let count: Int
            do {
                count = try System.epollWait(
                    self.epfd,
                    events: self.eventBits,
                    data: self.eventData,
                    capacity: Int32(self.eventCapacity),
                    timeoutMilliseconds: self.nextTimeoutMilliseconds()
                )
            } catch {
                log.log(0, "error in epoll_wait: \(error.message)")
                continue
            }
            if self.server.configuration.delayAccept > 0 {
                System.sleepSeconds(self.server.configuration.delayAccept)
            }
            for index in 0..<count {
                let data = self.eventData[index]
                let bits = self.eventBits[index]
                let fd = Int32(bitPattern: UInt32(truncatingIfNeeded: data))
                switch Tag(rawValue: data >> 56) {
                case .connection:
                    self.connectionEvent(fd: fd, serial: UInt32(data >> 32 & 0x00FF_FFFF), bits: bits)
                case .listener:
                    self.acceptConnections(listenerIndex: Int(fd))
                case .wake:
                    System.drainEvent(self.server.wakeDescriptor)
                case .signal:
                    self.drainSignals()
                case .none:
                    break
                }
                if self.exitReason != nil { break }
            }
            self.expireTimers()
        }
        self.teardown()
        return self.exitReason ?? .shutdown
    }

    private func nextTimeoutMilliseconds() -> Int32 {
        var next = UInt64.max
        if let head = self.timed.head { next = min(next, head.deadline) }
        if let head = self.delayedWrites.first { next = min(next, head.at) }
        if self.acceptPaused { next = min(next, self.acceptResumeAt) }
        if let drainUntil = self.drainUntil { next = min(next, drainUntil) }
        guard next != .max else { return -1 }
        let now = System.monotonicNanoseconds()
        guard next > now else { return 0 }
        return Int32(min((next - now + 999_999) / 1_000_000, 60_000))
    }

    private mutating func drainSignals() {
        while let signal = System.readSignal(self.signalFD) {
            let grace = self.server.configuration.shutdownGrace
            if grace > 0 && self.drainUntil == nil {
                self.server.logger.log(1, "got signal \(signal), draining for \(grace) s")
                self.server.startDraining()
                self.drainUntil = System.monotonicNanoseconds() + UInt64(grace) * 1_000_000_000
            } else {
                self.server.logger.log(1, "got signal \(signal), shutting down")
                self.server.startDraining()
                self.exitReason = .shutdown
            }
        }
    }

    // MARK: - Accepting

    private mutating func acceptConnections(listenerIndex: Int) {
        guard listenerIndex < self.server.listeners.count, !self.acceptPaused else { return }
        let listenFD = self.server.listeners[listenerIndex]
        // Accept in a batch only while nobody else waits: a connection whose request was not there at
        // accept waits in epoll, and an accept batch would make it wait behind the whole batch (measured:
        // 16 accepts per wake-up doubled the p999 of lookups). So once any connection is in flight, hand
        // back to epoll after each accept, as C epmd does; while every request comes with its connect
        // and is answered at once, keep accepting (fewer epoll_wait calls).
        for _ in 0..<Self.acceptBatch {
            do {
                guard let (fd, peer) = try System.accept(listenFD) else { return }
                self.adopt(fd: fd, peer: peer)
                if !self.timed.isEmpty || self.exitReason != nil { return }
            } catch {
                if error.isResourceExhaustion {
                    self.outOfDescriptors(error, listenFD: listenFD)
                    return
                }
                // ECONNABORTED, EPROTO, EPERM and friends concern one peer only: never fatal.
                self.server.counters.rejected("accept_error")
                self.server.logger.log(1, "error in accept: \(error.message)")
                return
            }
        }
    }

    /// EMFILE/ENFILE: keep every registration, count the refusal, and serve one waiting client with
    /// the reserve descriptor; then stop polling the listeners until a descriptor frees (or 100 ms).
    private mutating func outOfDescriptors(_ error: SystemError, listenFD: Int32) {
        let reason = error.errno == EMFILE ? "emfile" : error.errno == ENFILE ? "enfile" : "no_memory"
        self.server.counters.rejected(reason)
        self.server.logger.log(0, "error in accept: \(error.message) (registrations kept, accepting paused)")
        if self.reserveFD >= 0 {
            System.close(self.reserveFD)
            self.reserveFD = -1
            if let (fd, peer) = try? System.accept(listenFD) {
                self.adopt(fd: fd, peer: peer)
            }
        }
        self.pauseAccepting()
    }

    private mutating func pauseAccepting() {
        guard !self.acceptPaused else { return }
        self.acceptPaused = true
        self.acceptResumeAt = System.monotonicNanoseconds() + 100_000_000
        for fd in self.server.listeners {
            try? System.epollControl(self.epfd, EPOLL_CTL_MOD, fd, events: 0, data: 0)
        }
    }

    private mutating func resumeAccepting() {
        if self.reserveFD < 0 { self.reserveFD = System.openReserve() ?? -1 }
        guard self.acceptPaused else { return }
        self.acceptPaused = false
        for (index, fd) in self.server.listeners.enumerated() {
            try? System.epollControl(
                self.epfd,
                EPOLL_CTL_MOD,
                fd,
                events: UInt32(EPOLLIN.rawValue),
                data: Self.data(.listener, fd: Int32(index))
            )
        }
    }

    private mutating func adopt(fd: Int32, peer: SocketAddress) {
        let isLocal = PeerLocality.isLocal(peer: peer) { try? System.localAddress(fd) }
        self.nextID += 1
        self.nextSerial = (self.nextSerial + 1) & 0x00FF_FFFF
        let machine = EPMDConnectionStateMachine(
            isLocalPeer: isLocal,
            relaxedCommandCheck: self.server.configuration.relaxedCommandCheck
        )
        let connection = Connection(
            id: ConnectionID(self.nextID),
            fd: fd,
            serial: self.nextSerial,
            peer: peer,
            machine: machine
        )
        let acceptedAt = System.monotonicNanoseconds()
        let deadline = acceptedAt + self.packetTimeout
        let index = Int(fd)
        if index >= self.slots.count {
            self.slots.append(contentsOf: repeatElement(nil, count: max(index + 1 - self.slots.count, 64)))
        }
        self.slots[index] = connection
        connection.deadline = deadline
        connection.acceptedAt = acceptedAt
        self.timed.append(connection)
        self.openCount += 1
        self.server.counters.connectionOpened(open: self.openCount)
        self.server.logger.log(2, "\(isLocal ? "Local" : "Non-local") peer connected (\(peer))")
        // Clients send their request right behind the handshake, so it is usually here already:
        // read it now. A lookup is then answered and closed without ever touching epoll.
        self.readable(connection)
        guard self.slots[index] === connection else { return }
        do {
            try System.epollControl(
                self.epfd,
                EPOLL_CTL_ADD,
                fd,
                events: connection.interest,
                data: Self.data(.connection, fd: fd, serial: connection.serial)
            )
            connection.watched = true
        } catch {
            self.server.logger.log(0, "cannot watch connection: \(error.message)")
            self.close(connection, reason: .ioError)
            return
        }
    }

    // MARK: - Connection events

    private func connection(fd: Int32, serial: UInt32) -> Connection? {
        guard fd >= 0, Int(fd) < self.slots.count, let connection = self.slots[Int(fd)],
            connection.serial == serial
        else { return nil }
        return connection
    }

    private mutating func connectionEvent(fd: Int32, serial: UInt32, bits: UInt32) {
        guard let connection = self.connection(fd: fd, serial: serial) else { return }
        if bits & UInt32(EPOLLOUT.rawValue) != 0 {
            self.flush(connection)
            guard self.connection(fd: fd, serial: serial) != nil else { return }
        }
        let readable = UInt32(EPOLLIN.rawValue) | UInt32(EPOLLRDHUP.rawValue)
        let failed = UInt32(EPOLLHUP.rawValue) | UInt32(EPOLLERR.rawValue)
        switch connection.machine.state {
        case .receiving, .kept:
            if bits & (readable | failed) != 0 { self.readable(connection) }
        case .replying:
            // Not reading while a reply is pending; a reset shows up as EPOLLERR/EPOLLHUP.
            if bits & failed != 0, connection.outboundOffset < connection.outbound.count {
                self.close(connection, reason: .ioError)
            }
        case .closed:
            break
        }
    }

    private mutating func readable(_ connection: Connection) {
        let result: Int?
        do {
            result = try System.read(connection.fd, into: self.readBuffer)
        } catch {
            self.close(connection, reason: .ioError)
            return
        }
        guard let count = result else { return }
        if count == 0 {
            if case .receiving = connection.machine.state, connection.machine.isTimed {
                self.server.logger.log(1, "got partial packet only on connection \(connection.id)")
            }
            self.close(connection, reason: .peerClosed)
            return
        }
        let bytes = UnsafeRawBufferPointer(rebasing: self.readBuffer[0..<count])
        switch connection.machine.received(bytes) {
        case .awaitMore:
            return
        case .close(let reason):
            self.close(connection, reason: reason)
        case .serve(let request):
            self.serve(request, on: connection)
        }
    }

    // MARK: - Requests

    private mutating func serve(_ request: EPMDRequest, on connection: Connection) {
        let log = self.server.logger
        let kind: EPMDRequestKind
        var result = EPMDRequestResult.ok
        switch request {
        case .alive2(let alive):
            kind = .alive2
            let extended = alive.wantsExtendedReply
            let reply: [UInt8]
            switch self.server.registry.register(
                alive,
                connection: connection.id,
                fd: connection.fd,
                peer: connection.peer.host
            ) {
            case .success(let node):
                connection.registered = true
                self.registeredByID[connection.id] = connection.fd
                self.timed.remove(connection)  // a registration lives as long as its connection
                let creation = RegisteredNode.wireCreation(node.creation, extended: extended)
                reply = EPMDResponse.alive2(success: true, creation: creation, extended: extended)
                log.log(1, "registering '\(Self.printable(alive.name)):\(creation)', port \(alive.port)")
            case .failure(let error):
                result = .refused
                self.server.counters.registrationFailed(error.reason)
                reply = EPMDResponse.alive2(success: false, creation: 0, extended: extended)
                log.log(0, "ALIVE2_REQ refused for '\(Self.printable(alive.name))': \(error)")
            }
            self.reply(reply, on: connection, keep: true)
        case .portPlease2(let name):
            kind = .portPlease2
            if let node = self.server.registry.lookup(name) {
                self.reply(EPMDResponse.port2Found(node.request), on: connection, keep: false)
            } else {
                result = .notFound
                self.reply(EPMDResponse.port2NotFound, on: connection, keep: false)
            }
        case .names:
            kind = .names
            self.reply(self.prefix + self.server.registry.namesText(), on: connection, keep: false)
        case .dump:
            kind = .dump
            self.reply(self.prefix + self.server.registry.dumpText(), on: connection, keep: false)
        case .kill:
            kind = .kill
            if !self.server.configuration.relaxedCommandCheck && !self.server.registry.isEmpty {
                log.log(0, "Disallowed KILL_REQ, live nodes")
                result = .refused
                self.reply(EPMDResponse.killRefused, on: connection, keep: false)
            } else {
                log.log(0, "got KILL_REQ - terminates normal")
                // Written at once (two bytes always fit), then the loop ends and exits 0.
                EPMDResponse.killAccepted.withUnsafeBytes { _ = try? System.send(connection.fd, $0) }
                self.close(connection, reason: .answered)
                self.exitReason = .killed
            }
        case .stop(let name):
            kind = .stop
            if let node = self.server.registry.unregister(name: name) {
                log.log(1, "epmd connection stopped: '\(Self.printable(name))'")
                if let fd = self.registeredByID.removeValue(forKey: node.connection),
                    Int(fd) < self.slots.count, let victim = self.slots[Int(fd)], victim.id == node.connection
                {
                    victim.registered = false
                    self.close(victim, reason: .stopped)
                }
                self.reply(EPMDResponse.stopStopped, on: connection, keep: false)
            } else {
                result = .notFound
                self.reply(EPMDResponse.stopNotFound, on: connection, keep: false)
            }
        }
        self.server.counters.served(kind, result, acceptedAt: connection.acceptedAt)
    }

    private static func printable(_ name: [UInt8]) -> String { String(decoding: name, as: UTF8.self) }

    // MARK: - Writing

    private mutating func reply(_ bytes: [UInt8], on connection: Connection, keep: Bool) {
        connection.machine.replyStarted(keep: keep)
        connection.outbound = bytes
        connection.outboundOffset = 0
        if self.delayWrite > 0 {
            connection.writeAt = System.monotonicNanoseconds() + self.delayWrite
            self.delayedWrites.append((connection.writeAt, connection.fd, connection.serial))
            self.setInterest(connection, 0)
            return
        }
        self.flush(connection)
    }

    private mutating func flush(_ connection: Connection) {
        while connection.outboundOffset < connection.outbound.count {
            let offset = connection.outboundOffset
            let attempt = connection.outbound.withUnsafeBytes { raw in
                Result { () throws(SystemError) in
                    try System.send(connection.fd, UnsafeRawBufferPointer(rebasing: raw[offset...]))
                }
            }
            let result: Int?
            switch attempt {
            case .success(let value):
                result = value
            case .failure(let error):
                // A failed reply write: a registration made on this connection must not stay.
                self.server.logger.log(1, "failed to send reply on \(connection.id): \(error.message)")
                self.close(connection, reason: .ioError)
                return
            }
            guard let written = result else {
                self.setInterest(connection, Self.writeInterest)
                return
            }
            connection.outboundOffset += written
        }
        connection.outbound = []
        connection.outboundOffset = 0
        if connection.machine.replyWritten() {
            self.setInterest(connection, Self.readInterest)
        } else {
            self.close(connection, reason: .answered)
        }
    }

    private func setInterest(_ connection: Connection, _ interest: UInt32) {
        guard connection.interest != interest else { return }
        connection.interest = interest
        guard connection.watched else { return }  // `adopt` adds it with this interest
        try? System.epollControl(
            self.epfd,
            EPOLL_CTL_MOD,
            connection.fd,
            events: interest,
            data: Self.data(.connection, fd: connection.fd, serial: connection.serial)
        )
    }

    // MARK: - Timers

    private mutating func expireTimers() {
        let now = System.monotonicNanoseconds()
        while let connection = self.timed.head, connection.deadline <= now {
            self.timed.remove(connection)
            self.server.logger.log(1, "closing because timed out on receive (\(connection.id))")
            self.server.counters.timedOut()
            self.close(connection, reason: .timeout)
        }
        while let head = self.delayedWrites.first, head.at <= now {
            self.delayedWrites.removeFirst()  // a short list: only `-delay_write` (a test aid) fills it
            guard let connection = self.connection(fd: head.fd, serial: head.serial) else { continue }
            self.flush(connection)
        }
        if self.acceptPaused, now >= self.acceptResumeAt { self.resumeAccepting() }
        if let drainUntil = self.drainUntil, now >= drainUntil { self.exitReason = .shutdown }
    }

    // MARK: - Closing

    private mutating func close(_ connection: Connection, reason: CloseReason) {
        connection.machine.terminated()
        self.timed.remove(connection)
        if connection.registered {
            connection.registered = false
            self.registeredByID.removeValue(forKey: connection.id)
            if let node = self.server.registry.unregister(connection: connection.id, reason: reason.unregisterReason) {
                let creation = RegisteredNode.wireCreation(node.creation, extended: node.request.wantsExtendedReply)
                self.server.logger.log(
                    1,
                    "unregistering '\(Self.printable(node.name)):\(creation)', port \(node.port) (\(reason))"
                )
            }
        }
        switch reason {
        case .malformed(let error):
            self.server.counters.malformed(error.reason)
            self.server.logger.log(0, "closed connection from \(connection.peer): \(reason)")
        case .notLocal(let code):
            self.server.counters.malformed("not_local")
            self.server.logger.log(0, "\(Self.requestName(code)) from non local address")
        case .stopNotAllowed:
            self.server.counters.malformed("stop_not_allowed")
            self.server.logger.log(0, "Disallowed STOP_REQ, no relaxed_command_check")
        case .strayData:
            self.server.counters.malformed("stray_data")
            self.server.logger.log(1, "got more than expected on ALIVE socket (\(connection.id))")
        default:
            break
        }
        let index = Int(connection.fd)
        if index < self.slots.count, self.slots[index] === connection { self.slots[index] = nil }
        System.close(connection.fd)
        self.openCount -= 1
        self.server.counters.open.store(self.openCount, ordering: .relaxed)
        if self.acceptPaused || self.reserveFD < 0 { self.resumeAccepting() }
    }

    private static func requestName(_ code: EPMDMessageCode) -> String {
        switch code {
        case .alive2Request: "ALIVE2_REQ"
        case .dumpRequest: "DUMP_REQ"
        case .killRequest: "KILL_REQ"
        case .stopRequest: "STOP_REQ"
        default: "request \(code.rawValue)"
        }
    }

    private mutating func teardown() {
        for case let connection? in self.slots {
            self.close(connection, reason: .shutdown)
        }
        for fd in self.server.listeners { System.close(fd) }
        if self.signalFD >= 0 { System.close(self.signalFD) }
        if self.reserveFD >= 0 { System.close(self.reserveFD) }
        System.close(self.epfd)
        self.readBuffer.deallocate()
        self.eventBits.deallocate()
        self.eventData.deallocate()
    }
}
