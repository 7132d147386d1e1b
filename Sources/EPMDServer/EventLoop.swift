import EPMDLogging
import EPMDPosix
import EPMDProtocol
import EPMDRegistry
import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The loop's state: lives on the loop thread only. Its parts are in `EventLoop+*.swift`: accepting
/// and adopting, reading and writing, requests, timers and signals, closing.
struct EventLoop {
    static let readInterest: EpollEvents = [.input, .readHangUp]
    static let writeInterest: EpollEvents = [.output]
    static let acceptBatch = 64

    let server: EPMDServer
    let logger: Logger
    /// Whether `debug` lines are printed (checked once: the lookup path must not ask the handler).
    let logsDebug: Bool
    let epoll: Epoll
    var signalFD: Int32 = -1
    /// Connections by descriptor number.
    var slots: [EPMDConnection?] = []
    /// Descriptors of registered connections by id (STOP finds its victim here).
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
    /// Once the grace is over: when the last call for the requests already accepted ends.
    var lastCallUntil: UInt64?
    var acceptResumeAt: UInt64 = 0
    var reserveFD: Int32 = -1
    /// Every read lands here; the state machine gets a slice of it (no copy, no allocation).
    var readBuffer: [UInt8]
    let packetTimeout: UInt64
    let delayWrite: UInt64
    let portPrefix: [UInt8]
    /// One log line per reason of eviction or refusal per interval (`AdmissionLogReason`).
    let refusalLog: LogRateLimiter
    /// The epmd connection cap in force (0: none): the configured one, lowered if EMFILE shows the
    /// descriptor limit to be smaller than the budget assumed (`shedOnExhaustion`).
    var capInForce: Int

    init(server: EPMDServer) throws(SystemError) {
        self.server = server
        self.logger = server.logger
        self.logsDebug = server.logger.logLevel <= .debug
        self.epoll = try Epoll(capacity: 256)
        self.readBuffer = [UInt8](repeating: 0, count: EPMDFrameAssembler.capacity)
        self.packetTimeout = UInt64(max(server.configuration.packetTimeout, 1)) * 1_000_000_000
        self.delayWrite = UInt64(max(server.configuration.delayWrite, 0)) * 1_000_000_000
        self.portPrefix = EPMDResponse.portPrefix(server.configuration.port)
        self.capInForce = server.configuration.maxConnections
        self.refusalLog = LogRateLimiter(
            reasons: AdmissionLogReason.allCases.count,
            intervalSeconds: server.configuration.refusalLogInterval
        )
        for (index, fd) in server.listeners.enumerated() {
            try self.epoll.add(fd, events: .input, data: LoopToken.listener(index: Int32(index)).packed)
        }
        try self.epoll.add(server.wakeDescriptor, events: .input, data: LoopToken.wake.packed)
        let handover = server.handover?.listenDescriptor
        if let handover {
            try self.epoll.add(handover, events: .input, data: LoopToken.handover.packed)
        }
        if server.configuration.handleSignals {
            // SIGUSR2 (start a successor) only with a hand-over socket for it to connect to.
            self.signalFD = try System.signalFD(handover == nil ? [SIGTERM, SIGINT] : [SIGTERM, SIGINT, SIGUSR2])
            try self.epoll.add(self.signalFD, events: .input, data: LoopToken.signal.packed)
        }
        self.reserveFD = System.openReserve() ?? -1
    }

    // MARK: - The loop

    mutating func run() -> EPMDServer.ExitReason {
        self.logger.debug("entering the main epoll loop")
        self.server.hooks?.loopStarted()
        while self.exitReason == nil {
            if self.server.isShutdownRequested {
                self.exitReason = .shutdown
                break
            }
            self.poll(timeoutMilliseconds: self.nextTimeoutMilliseconds())
        }
        self.teardown()
        return self.exitReason ?? .shutdown
    }

    /// One turn: waits for events (at most `timeoutMilliseconds`), handles them, then the timers.
    mutating func poll(timeoutMilliseconds: Int32) {
        let count: Int
        do {
            count = try self.epoll.wait(timeoutMilliseconds: timeoutMilliseconds)
        } catch {
            self.logger.error("error in epoll_wait: \(error.message)")
            return
        }
        if self.server.configuration.delayAccept > 0 {
            System.sleepSeconds(self.server.configuration.delayAccept)
        }
        for index in 0..<count {
            let (events, data) = self.epoll.event(at: index)
            switch LoopToken(packed: data) {
            case .connection(let fd, let serial):
                self.connectionEvent(fd: fd, serial: serial, events: events)
            case .listener(let index):
                self.acceptConnections(listenerIndex: Int(index))
            case .wake:
                System.drainEvent(self.server.wakeDescriptor)
                if self.server.takeDrainRequest() { self.beginDrain(because: "shutdown requested") }
                self.serveAdminRequests()
            case .signal:
                self.drainSignals()
            case .handover:
                self.handoverRequested()
            case nil:
                break
            }
            if self.exitReason != nil { break }
        }
        self.expireTimers()
    }

    /// Closes every connection and the loop's own descriptors. A registration ends with its connection,
    /// unless a shutdown leaves it to the next process (systemd's fd store: ``EPMDServer/keepAtExit(_:)``).
    /// After a hand-over no connection is left (all were exported) and the listeners live on in the
    /// successor: closing our copies does not touch them.
    mutating func teardown() {
        let leaving = self.exitReason == nil || self.exitReason == .shutdown
        var kept = 0
        for case let connection? in self.slots {
            if leaving, connection.registration != nil, self.server.keptAtExit(connection.id) {
                // Not unregistered: the socket lives on in the store, and the next process serves it.
                connection.registration = nil
                self.registeredByID.removeValue(forKey: connection.id)
                kept += 1
            }
            self.close(connection, reason: .shutdown)
        }
        if kept > 0 { self.logger.info("\(kept) registrations left to the next process (fd store)") }
        for fd in self.server.listeners { System.close(fd) }
        if self.signalFD >= 0 { System.close(self.signalFD) }
        if self.reserveFD >= 0 { System.close(self.reserveFD) }
        self.signalFD = -1
        self.reserveFD = -1
    }

    /// The live connection with this descriptor and serial, if any.
    func connection(fd: Int32, serial: UInt32) -> EPMDConnection? {
        guard fd >= 0, Int(fd) < self.slots.count, let connection = self.slots[Int(fd)],
            connection.serial == serial
        else { return nil }
        return connection
    }

    static func printable(_ name: [UInt8]) -> String { String(decoding: name, as: UTF8.self) }
}
