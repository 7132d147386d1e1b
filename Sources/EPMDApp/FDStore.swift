import EPMDLogging
import EPMDPosix
import EPMDRegistry
import GatewayMetrics
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Keeps every registration in systemd's fd store, so that `systemctl restart` and a crash with
/// `Restart=` lose none (issue 11, part 2):
///
/// - each registration's socket goes to the store with its own message, `FDSTORE=1`, `FDNAME=n<id>`
///   (the connection id), after its journal record;
/// - the registry state is an ``FDStoreJournal`` in a memory file stored once as `FDNAME=state`,
///   current after every change;
/// - an unregistration is journaled and sent as `FDSTOREREMOVE=1` (systemd keeps a socket whose peer
///   only sent FIN); at our own shutdown what the store holds is not unregistered at all (``keeps(_:)``,
///   `EPMDServer.keepAtExit`: no `unregistered` event that the next process's `restarted` would
///   contradict), and what it does not hold (a full store) is journaled as ended, without a removal;
/// - a store that is disabled or full fails silently, so it is probed: one end of a socketpair is
///   stored, and if systemd dropped it the other end sees POLLHUP once a `BARRIER=1` came back. The
///   probe runs at start and whenever the stored count passes the known limit (`$FDSTORE` from systemd
///   254, `EPMD_GATEWAY_FDSTORE_MAX` in the shipped unit for 252).
///
/// At start, ``restore(sockets:options:environment:logger:send:)`` reads the journal and matches each
/// record to its socket by name. Every method that touches a registration's descriptor runs on the epmd
/// loop's thread (as a registry change observer), where the descriptor is open.
public final class FDStore: Sendable {
    /// What the store is doing.
    public enum Condition: String, Sendable, Equatable {
        /// The start probe has not answered yet.
        case probing
        /// systemd keeps what is sent.
        case enabled
        /// systemd dropped the probe: `FileDescriptorStoreMax=0` (or the messages are not accepted).
        case disabled
        /// More registrations than the store's limit: the newest are not kept.
        case full
    }

    /// The store as `/readyz?verbose` and the logs show it.
    public struct Status: Equatable, Sendable {
        public var condition: Condition
        /// Descriptors believed stored: the registrations and the journal.
        public var stored: Int
        /// The store's limit, when known.
        public var limit: Int?
        /// Registrations that could not be kept, since start.
        public var failures: Int
        /// Registrations restored at start.
        public var restored: Int
    }

    /// The environment variable with the store's limit for systemd 252 (which does not pass `$FDSTORE`):
    /// the shipped unit sets it equal to `FileDescriptorStoreMax=`; 0 turns the store off.
    public static let limitVariable = "EPMD_GATEWAY_FDSTORE_MAX"
    /// The most registrations kept in the store, whatever its limit: systemd passes every name back in
    /// `LISTEN_FDNAMES`, one environment string, which execve caps at 128 KiB (E2BIG fails the restart
    /// itself). 24,575 names of at most 4 bytes and a colon, with `state` and the sockets' names, fit.
    public static let maximumStored = 24_575
    /// How long the probe waits for systemd's barrier, milliseconds.
    static let probeTimeout: Int32 = 5000
    /// The most copies of registration sockets held for the sender at once. systemd 252 takes a stored
    /// descriptor in time that grows with what it holds (O(n) each), so a burst of registrations
    /// outruns it: unbounded, every one held a second descriptor until sent, and a burst of 19,000
    /// under a 20,000-descriptor limit ran out at 10,702. The rest wait (no descriptor) and are queued as
    /// room frees. `DescriptorBudget` keeps this many for it.
    public static let sendingLimit = 128
    /// How often the loop queues waiting registrations while some wait, nanoseconds.
    static let refillInterval: UInt64 = 5_000_000

    private struct Inner {
        var journal: FDStoreJournal?
        var meta: [ConnectionID: FDStoreJournal.Meta] = [:]
        var stored: Set<ConnectionID> = []
        var journalStored = false
        var condition = Condition.probing
        var limit: Int?
        /// The limit is our own (``maximumStored``, a ceiling), below systemd's: reaching it is not probed.
        var limitIsOurs = false
        var failures = 0
        var restored = 0
        var probing = false
        /// The probe running was started because the count reached the limit (not the start's).
        var probingFull = false
        /// Store names are slots (``Systemd/storeName(slot:)``): freed ones are reused, so names stay short.
        var freeSlots: [Int] = []
        var nextSlot = 0
        /// Copies of registration sockets in the sender's queue (at most ``FDStore/sendingLimit``, but for
        /// a hand-over or the exit, which queue every waiting one).
        var sending = 0
        /// Registrations counted in `stored` whose socket is not queued yet: no room among the copies.
        /// Their descriptors are the loop's own; only the loop's thread queues them (then they are open).
        var waiting: [ConnectionID: (fd: Int32, name: String)] = [:]
        /// `waiting`'s order (ids no longer waiting are skipped).
        var waitingOrder: [ConnectionID] = []
        var waitingHead = 0

        /// Takes the oldest waiting registration, counting its copy as sending.
        mutating func takeWaiting() -> (id: ConnectionID, fd: Int32, name: String)? {
            while self.waitingHead < self.waitingOrder.count {
                let id = self.waitingOrder[self.waitingHead]
                self.waitingHead += 1
                if let entry = self.waiting.removeValue(forKey: id) {
                    self.sending += 1
                    return (id, entry.fd, entry.name)
                }
            }
            self.waitingOrder.removeAll(keepingCapacity: true)
            self.waitingHead = 0
            return nil
        }

        mutating func takeSlot() -> Int {
            if let slot = self.freeSlots.popLast() { return slot }
            self.nextSlot += 1
            return self.nextSlot - 1
        }

        mutating func useSlots(of meta: [ConnectionID: FDStoreJournal.Meta]) {
            let used = Set(meta.values.compactMap { Systemd.slot(storeName: $0.fdName) })
            self.nextSlot = (used.max() ?? -1) + 1
            self.freeSlots = (0..<self.nextSlot).filter { !used.contains($0) }.reversed()
        }

        /// Descriptors believed in the store.
        var storedTotal: Int { self.stored.count + (self.journalStored ? 1 : 0) }
    }

    private let inner: Mutex<Inner>
    private let logger: Logger
    private let metrics: FDStoreMetrics?
    private let send: @Sendable (_ message: String, _ descriptors: [Int32]) -> Bool
    /// Registrations and removals, in order, off the epmd loop's thread.
    private let sender: FDStoreSender
    private let warnings = LogRateLimiter(reasons: 4, intervalSeconds: 60)
    /// The last probe's thread (joined before the next one starts: it has ended by then).
    private let probeThread = Mutex<PosixThread?>(nil)
    /// ``sendingLimit``, or a test's.
    private let sendingLimit: Int
    /// When the loop last queued waiting registrations (``timerFired(now:)``).
    private let lastRefill = Atomic<UInt64>(0)

    /// - Parameters:
    ///   - limit: the store's limit if known (`$FDSTORE`, ``limitVariable``).
    ///   - logger: where the store logs.
    ///   - metrics: the `epmd_fdstore_*` series, if exported.
    ///   - send: sends one message with descriptors to systemd (`NOTIFY_SOCKET`, blocking at most a
    ///     few seconds); false when it failed.
    ///   - sendingLimit: the most socket copies queued at once (``sendingLimit``).
    ///   - ceiling: the most descriptors stored whatever systemd's limit (``restartableLimit(descriptorLimit:)``).
    /// - Throws: `SystemError` when the sender's thread cannot be started.
    public init(
        limit: Int?,
        logger: Logger,
        metrics: FDStoreMetrics?,
        sendingLimit: Int = FDStore.sendingLimit,
        ceiling: Int? = nil,
        send: @escaping @Sendable (_ message: String, _ descriptors: [Int32]) -> Bool
    ) throws(SystemError) {
        self.sendingLimit = max(sendingLimit, 1)
        self.sender = try FDStoreSender(send: send)
        var inner = Inner()
        let told = limit ?? .max
        let ours = min(Self.maximumStored + 1, ceiling ?? .max)
        inner.limit = min(told, ours)
        inner.limitIsOurs = ours < told
        self.inner = Mutex(inner)
        self.logger = logger
        self.metrics = metrics
        self.send = send
    }

    /// Whether the store is to be used and its limit: on with ``limitVariable`` above 0, or with
    /// systemd's `$FDSTORE` (254 and later set it when `FileDescriptorStoreMax=` is above 0); off
    /// otherwise, and with ``limitVariable`` set to 0.
    public static func configuration(environment: [String: String]) -> (enabled: Bool, limit: Int?) {
        if let text = environment[self.limitVariable] {
            guard let limit = Int(text), limit > 0 else { return (false, nil) }
            return (true, limit)
        }
        if let text = environment["FDSTORE"], let limit = Int(text), limit > 0 { return (true, limit) }
        return (false, nil)
    }

    /// Sends to `NOTIFY_SOCKET` of `environment`, waiting at most 2 s behind a full queue.
    public static func notifySender(environment: [String: String]) -> @Sendable (String, [Int32]) -> Bool {
        { message, descriptors in
            guard let path = environment["NOTIFY_SOCKET"], !path.isEmpty else { return false }
            return (try? NotifyDatagram.send(Array(message.utf8), to: path, descriptors: descriptors)) ?? false
        }
    }

    // MARK: - Status

    /// Waits (at most `milliseconds`) until every registration and removal queued was sent to systemd.
    @discardableResult
    public func flush(milliseconds: Int) -> Bool { self.sender.drain(milliseconds: milliseconds) }

    /// The store now.
    public var status: Status {
        self.inner.withLock { inner in
            Status(
                condition: inner.condition,
                stored: inner.storedTotal,
                limit: inner.limit,
                failures: inner.failures,
                restored: inner.restored
            )
        }
    }

    /// Whether the registration of `connection` is in the store (sent, or queued to be sent): it
    /// outlives this process unless the service stops.
    /// One still waiting for room is queued now (the loop's teardown calls this with it open).
    public func keeps(_ connection: ConnectionID) -> Bool {
        let (kept, waiting) = self.inner.withLock { inner -> (Bool, (fd: Int32, name: String)?) in
            guard inner.condition != .disabled, inner.stored.contains(connection) else { return (false, nil) }
            guard let entry = inner.waiting.removeValue(forKey: connection) else { return (true, nil) }
            inner.sending += 1
            return (true, entry)
        }
        guard let waiting else { return kept }
        return self.queue(connection, fd: waiting.fd, name: waiting.name)
    }

    /// Queues every registration still waiting for room, whatever the bound: a hand-over passes the
    /// sockets on and closes them (call on the loop's thread, where they are open).
    public func queueAllWaiting() {
        while let next = self.inner.withLock({ $0.takeWaiting() }) {
            self.queue(next.id, fd: next.fd, name: next.name)
        }
        self.publish()
    }

    /// The journal's descriptor, for a hand-over to pass on (`state-journal`): the new process gives it
    /// to ``start(registry:restored:adoptingJournal:)`` and journals on in the same memory file.
    public var journalDescriptor: Int32? { self.inner.withLock { $0.journal?.file.descriptor } }

    /// The `/readyz?verbose` line: `[+]fdstore ok` with the count, or `[-]fdstore` and what is wrong
    /// (readiness itself does not depend on it: the gateway serves either way).
    public func readinessLine() -> String {
        let status = self.status
        let limit = status.limit.map { " of \($0)" } ?? ""
        let counts = "\(status.stored)\(limit) stored, \(status.restored) restored, \(status.failures) failed"
        switch status.condition {
        case .enabled:
            return "[+]fdstore ok: enabled, \(counts)"
        case .probing:
            return "[+]fdstore ok: probing, \(counts)"
        case .disabled:
            return "[-]fdstore disabled: systemd keeps nothing (FileDescriptorStoreMax=0?), a restart loses "
                + "the registrations (not a readiness failure), \(counts)"
        case .full:
            return "[-]fdstore full: the newest registrations are not kept across a restart "
                + "(not a readiness failure), \(counts)"
        }
    }

    // MARK: - Start

    /// Starts keeping the registry: continues the restored journal (or `adoptingJournal`, a hand-over's)
    /// with a fresh image, or makes one and stores it; stores nothing else for restored registrations
    /// (systemd has them), and probes the store on a thread of its own.
    /// - Parameters:
    ///   - registry: the gateway's registry (a change observer is added).
    ///   - restored: what ``restore(sockets:options:environment:logger:send:)`` brought back.
    ///   - adoptingJournal: a journal memory file received in a hand-over.
    public func start(registry: NodeRegistry, restored: Restored?, adoptingJournal: Int32? = nil) {
        var journal = restored?.journal
        var meta = restored?.meta ?? [:]
        if journal == nil, let fd = adoptingJournal {
            do throws(FDStoreJournal.ReadError) {
                let (opened, contents) = try FDStoreJournal.open(MemoryFile(descriptor: fd))
                journal = opened
                meta = contents.meta
            } catch {
                self.logger.warning("fd store: the handed-over state journal is unusable (\(error)): a new one")
                System.close(fd)
            }
        }
        let state = registry.copyState()
        let live = Set(state.nodes.values.map(\.connection))
        meta = meta.filter { live.contains($0.key) }
        var newJournal: MemoryFile?
        do {
            if var continued = journal {
                try continued.compact(state: state, meta: meta)
                journal = continued
                // A hand-over's journal is in the store already; a restored one unless it was removed.
                if restored?.journalRemoved == true { newJournal = continued.file }
            } else {
                let file = try MemoryFile.create(name: "epmd-gateway-state")
                journal = try FDStoreJournal.create(in: file, state: state, meta: meta)
                newJournal = file
            }
        } catch {
            self.logger.warning("fd store: cannot write the state journal: \(error)")
            self.metrics?.failed("journal")
        }
        let restoredCount = restored?.restoredCount ?? 0
        self.inner.withLock { inner in
            inner.journal = journal
            inner.meta = meta
            inner.stored = Set(meta.keys)
            inner.useSlots(of: meta)
            inner.journalStored = journal != nil && newJournal == nil
            inner.restored = restoredCount
        }
        if let newJournal {
            let sent = self.send("FDSTORE=1\nFDNAME=\(Systemd.stateDescriptorName)", [newJournal.descriptor])
            self.inner.withLock { $0.journalStored = sent }
            if !sent { self.fail("send", "cannot send the state journal to systemd's fd store") }
        }
        // The registry keeps the store (its observer holds it) as long as the gateway lives.
        registry.addChangeObserver { [weak registry] event in
            guard let registry else { return }
            self.registryChanged(event, registry: registry)
        }
        self.publish()
        self.startProbe()
    }

    // MARK: - Changes (the epmd loop's thread)

    /// One change of the registry: journal it, then store or remove the registration's socket.
    func registryChanged(_ event: RegistryEvent, registry: NodeRegistry) {
        switch event.kind {
        case .registered:
            guard let node = event.node else { return }
            self.registered(node, eventID: event.id, registry: registry)
        case .unregistered(let reason):
            // What the store holds is never unregistered by our own shutdown (``keeps(_:)``): a shutdown
            // unregistration is one the store does not have, journaled so that the next process does not
            // look for its socket, and never removed.
            guard let node = event.node else { return }
            self.unregistered(node, reason: reason, eventID: event.id, time: event.time, registry: registry)
        case .restarted:
            self.compact(registry: registry)
        }
        self.refill()
    }

    private func registered(_ node: RegisteredNode, eventID: UInt64, registry: NodeRegistry) {
        let acceptedAt = System.monotonicNanoseconds()
        let peer = (try? System.peerAddress(node.fd).description) ?? ""
        enum Plan {
            case store, disabled
            case full(probe: Bool)
        }
        let (name, journaled, plan) = self.inner.withLock { inner -> (String, Bool, Plan) in
            let name = Systemd.storeName(slot: inner.takeSlot())
            let meta = FDStoreJournal.Meta(fdName: name, acceptedAt: acceptedAt, peer: peer)
            inner.meta[node.connection] = meta
            var journaled = inner.journal != nil
            do {
                try inner.journal?.appendRegistered(eventID: eventID, node: node, meta: meta)
            } catch {
                journaled = false
            }
            switch inner.condition {
            case .disabled:
                return (name, journaled, .disabled)
            case .probing, .enabled, .full:
                if let limit = inner.limit, inner.storedTotal >= limit {
                    let probe = inner.condition != .full && !inner.probing && !inner.limitIsOurs
                    inner.condition = .full
                    return (name, journaled, .full(probe: probe))
                }
                return (name, journaled, .store)
            }
        }
        if !journaled { self.fail("journal", "cannot journal a registration: a restart will lose it") }
        switch plan {
        case .disabled:
            self.fail("disabled", nil)
        case .full(let probe):
            // Not sent: systemd would drop it silently (or, past ``maximumStored``, its names would not
            // fit the restart's environment). The probe checks the limit we were told.
            self.fail(
                "full",
                "systemd's fd store is full (limit \(self.status.limit ?? 0)): new registrations are not kept"
            )
            if probe { self.startProbe() }
        case .store:
            // Counted as stored now; the sender's thread takes it back if the message cannot be sent.
            // Behind the ones waiting, or when the sender holds its limit of copies, it waits too.
            let queueNow = self.inner.withLock { inner -> Bool in
                inner.stored.insert(node.connection)
                guard inner.waiting.isEmpty, inner.sending < self.sendingLimit else {
                    inner.waiting[node.connection] = (node.fd, name)
                    inner.waitingOrder.append(node.connection)
                    return false
                }
                inner.sending += 1
                return true
            }
            if queueNow { self.queue(node.connection, fd: node.fd, name: name) }
        }
        self.compactIfNeeded(registry: registry)
        self.publish()
    }

    /// Queues a registration's socket (a copy, counted in `sending` by the caller); the copy is closed
    /// and the count given back once sent. Returns whether it was queued.
    @discardableResult
    private func queue(_ connection: ConnectionID, fd: Int32, name: String) -> Bool {
        self.sender.enqueue("FDSTORE=1\nFDNAME=\(name)", duplicating: fd) { [weak self] sent in
            guard let self else { return }
            self.inner.withLock { inner in
                inner.sending -= 1
                if !sent { inner.stored.remove(connection) }
            }
            if !sent { self.fail("send", "cannot send a registration to systemd's fd store") }
            self.publish()
        }
    }

    /// Queues waiting registrations while the sender holds fewer than ``sendingLimit`` copies (on the
    /// loop's thread: their descriptors are open there).
    private func refill() {
        var queued = false
        while let next = self.inner.withLock({ inner -> (id: ConnectionID, fd: Int32, name: String)? in
            inner.sending < self.sendingLimit ? inner.takeWaiting() : nil
        }) {
            self.queue(next.id, fd: next.fd, name: next.name)
            queued = true
        }
        if queued { self.publish() }
    }

    private func unregistered(
        _ node: RegisteredNode,
        reason: UnregisterReason,
        eventID: UInt64,
        time: Double,
        registry: NodeRegistry
    ) {
        let (journaled, removal) = self.inner.withLock { inner -> (Bool, String?) in
            let meta = inner.meta.removeValue(forKey: node.connection)
            let wasStored = inner.stored.remove(node.connection) != nil
            // Still waiting: never sent, so nothing to remove from the store.
            let neverSent = inner.waiting.removeValue(forKey: node.connection) != nil
            if inner.condition == .full, let limit = inner.limit, inner.storedTotal < limit {
                inner.condition = .enabled
            }
            var journaled = inner.journal != nil
            do {
                try inner.journal?.appendUnregistered(
                    eventID: eventID,
                    connection: node.connection,
                    reason: reason,
                    time: time
                )
            } catch {
                journaled = false
            }
            // The slot is free once the removal is sent (below, before any later store of the name).
            if let meta, let slot = Systemd.slot(storeName: meta.fdName) { inner.freeSlots.append(slot) }
            let sent = !neverSent && reason != .shutdown && (wasStored || inner.condition != .disabled)
            return (journaled, sent ? meta?.fdName : nil)
        }
        if !journaled { self.fail("journal", "cannot journal an unregistration") }
        if let removal {
            // systemd keeps a socket whose peer only sent FIN: remove it, or the node never sees EOF.
            self.sender.enqueue("FDSTOREREMOVE=1\nFDNAME=\(removal)")
        }
        self.compactIfNeeded(registry: registry)
        self.publish()
    }

    private func compactIfNeeded(registry: NodeRegistry) {
        guard self.inner.withLock({ $0.journal?.wantsCompaction ?? false }) else { return }
        self.compact(registry: registry)
    }

    /// A fresh image of the whole state (after a restart event, or when the records outgrow it).
    private func compact(registry: NodeRegistry) {
        let state = registry.copyState()
        let failed = self.inner.withLock { inner -> Bool in
            guard var journal = inner.journal else { return false }
            do {
                try journal.compact(state: state, meta: inner.meta)
                inner.journal = journal
                return false
            } catch {
                return true
            }
        }
        if failed { self.fail("journal", "cannot compact the state journal") }
    }

    private func fail(_ reason: String, _ message: String?) {
        self.inner.withLock { $0.failures += 1 }
        self.metrics?.failed(reason)
        guard let message else { return }
        let index = FDStoreMetrics.failureReasons.firstIndex(of: reason) ?? 0
        if let count = self.warnings.occurred(index, now: System.monotonicNanoseconds()) {
            self.logger.warning("fd store: \(message)\(count > 1 ? " (\(count) times)" : "")")
        }
    }

    private func publish() {
        let status = self.status
        self.metrics?.setStored(status.stored)
        self.metrics?.setEnabled(status.condition == .enabled || status.condition == .probing)
        let (sending, waiting) = self.inner.withLock { ($0.sending, $0.waiting.count) }
        self.metrics?.setQueue(sending: sending, waiting: waiting)
    }

    // MARK: - Probing

    /// Probes the store on a thread of its own (never the loop's): see ``probe(send:timeout:)``.
    private func startProbe() {
        let start = self.inner.withLock { inner -> Bool in
            guard !inner.probing else { return false }
            inner.probing = true
            inner.probingFull = inner.condition == .full
            return true
        }
        guard start else { return }
        let (send, sender) = (self.send, self.sender)
        do {
            let previous = self.probeThread.withLock { $0 }
            previous?.join()
            let thread = try PosixThread(name: "fdstore-probe") { [weak self] in
                // After what is queued: the probe must not overtake the registrations (it would take
                // the room of one in a store that is nearly full).
                sender.drain(milliseconds: 60_000)
                let outcome = Self.probe(send: send, timeout: Self.probeTimeout)
                self?.probed(outcome)
            }
            self.probeThread.withLock { $0 = thread }
        } catch {
            self.inner.withLock { $0.probing = false }
            self.logger.warning("fd store: cannot start the probe: \(error)")
        }
    }

    /// Milliseconds a probe that systemd seems to keep waits for a late hang-up (see ``probe(send:timeout:)``).
    static let hangUpGrace: Int32 = 500

    /// What a probe found.
    public enum ProbeOutcome: Equatable, Sendable {
        /// systemd kept the probe: the store takes descriptors.
        case stored
        /// systemd dropped it: the store is disabled or full.
        case dropped
        /// No answer (no barrier came back in time, or nothing could be sent).
        case unknown(String)
    }

    /// Stores one end of a socketpair as `probe`, sends `BARRIER=1` (systemd closes the barrier's pipe
    /// once it handled every message before it), then looks at the other end: POLLHUP means systemd
    /// dropped the probe. A kept probe is removed again (`FDSTOREREMOVE=1`).
    public static func probe(
        send: @Sendable (_ message: String, _ descriptors: [Int32]) -> Bool,
        timeout: Int32
    ) -> ProbeOutcome {
        var pair: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
            return .unknown("socketpair: errno \(errno)")
        }
        defer { System.close(pair[1]) }
        let sent = send("FDSTORE=1\nFDNAME=\(Systemd.probeDescriptorName)", [pair[0]])
        System.close(pair[0])
        guard sent else { return .unknown("the probe could not be sent") }
        guard FDStoreSender.barrier(send: send, timeout: timeout) else {
            return .unknown("no answer from systemd within \(timeout) ms")
        }
        // systemd closed a dropped probe before the barrier. The hang-up can still come a little later:
        // a process started meanwhile (by any thread) holds copies of our descriptors from its fork to
        // its exec, which closes them (close-on-exec). So a kept probe waits `hangUpGrace` to be sure.
        var probe = pollfd(fd: pair[1], events: 0, revents: 0)
        let hungUp =
            ((try? System.syscall("poll") { poll(&probe, 1, Self.hangUpGrace) }) ?? 0) > 0
            && probe.revents & Int16(POLLHUP) != 0
        if hungUp { return .dropped }
        _ = send("FDSTOREREMOVE=1\nFDNAME=\(Systemd.probeDescriptorName)", [])
        return .stored
    }

    private func probed(_ outcome: ProbeOutcome) {
        let (before, after, limit) = self.inner.withLock { inner -> (Condition, Condition, Int?) in
            inner.probing = false
            let before = inner.condition
            switch outcome {
            case .stored:
                if before == .full {
                    // Room for the probe beyond the limit we were told: the limit is higher.
                    inner.limit = nil
                }
                inner.condition = .enabled
            case .dropped:
                // A probe of a full store: still full, or room was made meanwhile (then it stays enabled).
                if !inner.probingFull { inner.condition = .disabled }
                if inner.condition == .disabled {
                    // systemd closed whatever it was sent: nothing is stored.
                    inner.stored.removeAll()
                    inner.waiting.removeAll()
                    inner.journalStored = false
                }
            case .unknown:
                if before == .probing { inner.condition = .enabled }
            }
            return (before, inner.condition, inner.limit)
        }
        switch (outcome, after) {
        case (.stored, _) where before == .enabled:
            break
        case (.stored, _):
            if before == .full {
                self.logger.notice("fd store: the probe was kept beyond the limit; the limit is higher than told")
            } else {
                self.logger.notice(
                    "fd store enabled: registrations survive a restart (limit \(limit.map(String.init) ?? "unknown"))"
                )
            }
        case (.dropped, .disabled):
            self.fail(
                "disabled",
                "systemd's fd store is disabled (FileDescriptorStoreMax=0?): a restart loses every registration"
            )
        case (.dropped, _):
            self.logger.warning("fd store: the probe confirms the store is full")
        case (.unknown(let why), _):
            self.logger.warning("fd store: the probe got no answer (\(why)); assumed enabled")
        }
        self.publish()
    }
}

// MARK: - The loop's timer

extension FDStore: GatewayLoopTimer {
    /// While registrations wait for room in the send queue: every ``refillInterval``.
    func nextDeadline() -> UInt64? {
        guard self.inner.withLock({ !$0.waiting.isEmpty }) else { return nil }
        return self.lastRefill.load(ordering: .relaxed) &+ Self.refillInterval
    }

    func timerFired(now: UInt64) {
        guard let due = self.nextDeadline(), due <= now else { return }
        self.lastRefill.store(now, ordering: .relaxed)
        self.refill()
    }
}
