import EPMDPosix
import EPMDRegistry
import EPMDServer
import GatewayMetrics
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

extension FDStore {
    /// What came back from systemd's fd store at start.
    public struct Restored: Sendable {
        /// For ``Gateway/build(options:environment:logger:handlesSignals:restoring:)``: the journaled
        /// registry and every registration whose socket came back; nil when no journal came back (a
        /// fresh start).
        public var restoration: Restoration?
        /// The journal, continued by ``FDStore/start(registry:restored:adoptingJournal:)``.
        public var journal: FDStoreJournal?
        /// The meta of the restored registrations.
        public var meta: [ConnectionID: FDStoreJournal.Meta]
        /// Registrations restored with their sockets.
        public var restoredCount: Int
        /// Journal records without a socket (dropped from the table).
        public var withoutDescriptor: Int
        /// Stored sockets without a record (closed and removed from the store).
        public var withoutRecord: Int
        /// Why the journal's tail was cut, if it was.
        public var damage: String?
        /// The store's `state` entries were removed (several, or unreadable): the journal kept, if any,
        /// must be stored again.
        public var journalRemoved = false

        /// Counts them in `metrics`.
        public func count(in metrics: FDStoreMetrics) {
            metrics.restored("restored", count: self.restoredCount)
            metrics.restored("no_descriptor", count: self.withoutDescriptor)
            metrics.restored("no_record", count: self.withoutRecord)
            metrics.restored("damaged", count: self.damage == nil ? 0 : 1)
        }
    }

    /// Reads what systemd's fd store gave back (the descriptors named by ``Systemd/isStoreName(_:)``,
    /// matched by name, never by position): the `state` journal is replayed, each registration's record
    /// is matched to its `n<id>` socket and becomes a connection to adopt. A record without its socket
    /// is dropped from the table (its node is gone: the kernel closed the connection with the old
    /// process); a socket without its record is closed and removed from the store (`FDSTOREREMOVE=1`).
    /// Both are logged and counted. A damaged journal tail is cut at the last whole record (logged).
    /// - Parameters:
    ///   - sockets: the sorted descriptors (`Systemd.activatedSockets`).
    ///   - options: the command line (the connections' request rules).
    ///   - logger: where the restore logs.
    ///   - send: the messages to systemd (`FDSTOREREMOVE=1`).
    /// - Returns: what to build the gateway with; nil when nothing came back from the store.
    public static func restore(
        sockets: Systemd.ActivatedSockets,
        options: EPMDOptions,
        logger: Logger,
        send: @Sendable (_ message: String, _ descriptors: [Int32]) -> Bool
    ) -> Restored? {
        guard !sockets.stored.isEmpty else { return nil }
        var journalFiles: [Int32] = []
        var connections: [String: Int32] = [:]
        var removals: Set<String> = []
        for stored in sockets.stored {
            if stored.name == Systemd.stateDescriptorName {
                journalFiles.append(stored.fd)
            } else if stored.name == Systemd.probeDescriptorName {
                System.close(stored.fd)
                removals.insert(stored.name)
            } else if connections[stored.name] == nil {
                connections[stored.name] = stored.fd
            } else {
                // The same name twice: only one can be matched; the copy is ours to close.
                System.close(stored.fd)
            }
        }

        var journal: FDStoreJournal?
        var contents: FDStoreJournal.Contents?
        for fd in journalFiles {
            guard journal == nil else {
                logger.warning("fd store: more than one state journal; the first readable one is used")
                System.close(fd)
                continue
            }
            guard MemoryFile.isRegularFile(fd) else {
                logger.warning("fd store: the descriptor named \"state\" is not a file; ignored")
                System.close(fd)
                continue
            }
            do throws(FDStoreJournal.ReadError) {
                let (opened, read) = try FDStoreJournal.open(MemoryFile(descriptor: fd))
                journal = opened
                contents = read
            } catch {
                logger.error("fd store: cannot read the state journal: \(error)")
                System.close(fd)
            }
        }
        if journalFiles.count > 1 || (journal == nil && !journalFiles.isEmpty) {
            // Only all of a name can be removed: every `state` goes, the one kept is stored again at start.
            removals.insert(Systemd.stateDescriptorName)
        }
        if let damage = contents?.damage {
            logger.warning("fd store: the state journal's tail was cut (\(damage)); the records before it are kept")
        }

        var restored = Restored(
            restoration: nil,
            journal: journal,
            meta: [:],
            restoredCount: 0,
            withoutDescriptor: 0,
            withoutRecord: 0,
            damage: contents?.damage,
            journalRemoved: removals.contains(Systemd.stateDescriptorName)
        )
        if var contents {
            let now = NodeRegistry.systemClock()
            var snapshots: [EPMDConnectionSnapshot] = []
            for node in contents.state.newestFirst() {
                let meta = contents.meta[node.connection]
                let fd = meta.flatMap { connections.removeValue(forKey: $0.fdName) }
                if let meta, let fd, Self.isConnectedStream(fd, peer: meta.peer) {
                    snapshots.append(Self.snapshot(node: node, fd: fd, acceptedAt: meta.acceptedAt, options: options))
                    restored.meta[node.connection] = meta
                } else {
                    if let meta, let fd {
                        // Not this registration's connection (a crash between a removal and the next
                        // store of the name): not ours to serve.
                        System.close(fd)
                        removals.insert(meta.fdName)
                        restored.withoutRecord += 1
                    }
                    contents.state.unregister(connection: node.connection, now: now, reason: .closed)
                    restored.withoutDescriptor += 1
                    // The first few by name; the count is in the summary below (a store that was full
                    // leaves thousands).
                    if restored.withoutDescriptor <= Self.namedMisses {
                        logger.warning(
                            "fd store: '\(String(decoding: node.name, as: UTF8.self))' has no socket in the store: unregistered"
                        )
                    }
                }
            }
            restored.restoredCount = snapshots.count
            restored.restoration = Restoration(
                registry: contents.state,
                epmdListeners: sockets.epmd,
                httpListener: sockets.http,
                connections: snapshots,
                method: .fdstore
            )
        }
        for (name, fd) in connections {
            System.close(fd)
            removals.insert(name)
            restored.withoutRecord += 1
        }
        if restored.withoutRecord > 0 {
            logger.warning("fd store: \(restored.withoutRecord) stored sockets without a journal record: closed")
        }
        for name in removals.sorted() { _ = send("FDSTOREREMOVE=1\nFDNAME=\(name)", []) }
        logger.notice(
            "fd store: restored \(restored.restoredCount) registrations (\(restored.withoutDescriptor) without socket, \(restored.withoutRecord) sockets without record)"
        )
        return restored
    }

    /// Whether `fd` is a connected TCP socket (a registration's connection, not a listener) whose peer
    /// is `peer` (any peer when the journal has none).
    private static func isConnectedStream(_ fd: Int32, peer: String) -> Bool {
        guard let kind = Systemd.SocketKind.of(fd) else { return false }
        guard kind.type == Int32(SOCK_STREAM.rawValue), !kind.listening,
            kind.family == AF_INET || kind.family == AF_INET6
        else { return false }
        guard !peer.isEmpty else { return true }
        // A connection whose peer is gone may have no peer address any more (ENOTCONN): the loop
        // finds its EOF and unregisters it the usual way.
        guard let actual = try? System.peerAddress(fd) else { return true }
        return actual.description == peer
    }

    /// A registration's connection to adopt: kept (its ALIVE2 was answered), nothing buffered.
    private static func snapshot(
        node: RegisteredNode,
        fd: Int32,
        acceptedAt: UInt64,
        options: EPMDOptions
    ) -> EPMDConnectionSnapshot {
        try? System.setNonBlocking(fd)
        let peer = (try? System.peerAddress(fd)) ?? .other
        let isLocal = PeerLocality.isLocal(peer: peer) { try? System.localAddress(fd) }
        return EPMDConnectionSnapshot(
            id: node.connection,
            fd: fd,
            peer: peer,
            machine: EPMDConnectionStateMachine(
                isLocalPeer: isLocal,
                relaxedCommandCheck: options.relaxedCommandCheck,
                namesLocalOnly: options.namesLocalOnly,
                state: .kept,
                buffered: []
            ),
            registration: node,
            acceptedAt: acceptedAt
        )
    }

    /// Registrations without a socket named one by one in the log at a restore.
    static let namedMisses = 10

    /// The most registrations stored that systemd can still pass back under a descriptor limit of
    /// `descriptorLimit` (ours, standing in for PID 1's, which the service's cannot exceed): when it
    /// starts the service, PID 1's child holds what PID 1 holds and moves every stored descriptor into
    /// place, about two descriptors per stored one. Measured under systemd 252 with a 20,000 limit: 9,930
    /// stored restart (PID 1 held 9,969); 19,000 fail with "Failed to adjust passed file descriptors: Too
    /// many open files" (status 202/FDS), the restart counter runs out, and every registration is lost.
    /// Half of the limit less a margin for PID 1's own (at most 1,024).
    public static func restartableLimit(descriptorLimit: Int) -> Int {
        let limit = max(descriptorLimit, 0)
        return max((limit - min(1024, limit / 8)) / 2, 0)
    }

    /// Everything at start: the fd store is used when systemd gets our notifications and a limit says
    /// it is configured (``configuration(environment:)``), or when a journal came back from it. Makes
    /// the store, counts the restore in metrics, continues or makes the journal, probes, and adds the
    /// `/readyz?verbose` line.
    /// - Parameters:
    ///   - gateway: the gateway built (with `restored?.restoration`).
    ///   - environment: `NOTIFY_SOCKET`, `FDSTORE`, ``limitVariable``.
    ///   - restored: what ``restore(sockets:options:logger:send:)`` gave.
    ///   - adoptingJournal: a hand-over's `state-journal` (`Restoration.stateJournal`).
    ///   - logger: where the store logs.
    ///   - sendingLimit: the most socket copies queued for systemd at once (tests lower it).
    ///   - send: sends one message to systemd; nil: ``notifySender(environment:)`` (tests wrap that).
    /// - Returns: the store, or nil when it is not used.
    @discardableResult
    public static func attach(
        to gateway: Gateway,
        environment: [String: String],
        restored: Restored?,
        adoptingJournal: Int32? = nil,
        logger: Logger,
        sendingLimit: Int = FDStore.sendingLimit,
        send: (@Sendable (_ message: String, _ descriptors: [Int32]) -> Bool)? = nil
    ) -> FDStore? {
        let configuration = self.configuration(environment: environment)
        let notifies = Systemd.notifies(systemdOption: gateway.options.systemd, environment: environment)
        guard notifies, configuration.enabled || restored?.journal != nil || adoptingJournal != nil else {
            if let fd = adoptingJournal { System.close(fd) }
            return nil
        }
        let metrics = FDStoreMetrics(collectors: gateway.metrics.collectors)
        restored?.count(in: metrics)
        let descriptors = System.descriptorLimit()
        let ceiling = self.restartableLimit(descriptorLimit: descriptors)
        if let configured = configuration.limit, configured > ceiling {
            let message =
                "fd store: at most \(ceiling) registrations are kept, not \(configured): under a descriptor limit of "
                + "\(descriptors), systemd could not start the service with more stored (status 202/FDS, "
                + "everything lost); raise LimitNOFILE= (and PID 1's limit) to keep more"
            logger.warning("\(message)")
        }
        let store: FDStore
        do {
            store = try FDStore(
                limit: configuration.limit,
                logger: logger,
                metrics: metrics,
                sendingLimit: sendingLimit,
                ceiling: ceiling,
                send: send ?? self.notifySender(environment: environment)
            )
        } catch {
            logger.warning("fd store: cannot start its sender (\(error)): registrations are not kept across a restart")
            metrics.failed("send")
            return nil
        }
        store.start(registry: gateway.registry, restored: restored, adoptingJournal: adoptingJournal)
        gateway.addReadinessDetail { [weak store] in store?.readinessLine() }
        // A hand-over passes the journal on (`state-journal`): the successor journals in the same file.
        // Called on the loop's thread before the sockets go: what waits for room in the send queue is
        // queued first (the successor stores nothing it adopts).
        gateway.provideStateJournal { [weak store] in
            store?.queueAllWaiting()
            return store?.journalDescriptor
        }
        gateway.addLoopTimer(store)
        // What the store holds outlives a `systemctl restart`: no unregistration at the exit.
        gateway.keepAtExit { [weak store] connection in store?.keeps(connection) ?? false }
        return store
    }
}

extension Gateway {
    /// Adds a `/readyz?verbose` line (nil: none now); takes effect when `run()` starts the HTTP front.
    func addReadinessDetail(_ line: @escaping @Sendable () -> String?) {
        self.readinessDetails.withLock { $0.append(line) }
    }
}

extension FDStore {
    /// ``restore(sockets:options:logger:send:)`` for the process's own start: under `-systemd` only
    /// (socket activation is what passes the store back); nil otherwise, or when the passed descriptors
    /// are unusable (the gateway's build reports that).
    public static func restoreAtStart(options: EPMDOptions, environment: [String: String], logger: Logger) -> Restored?
    {
        guard options.systemd, let sockets = try? Systemd.activatedSockets(environment: environment) else { return nil }
        return self.restore(
            sockets: sockets,
            options: options,
            logger: logger,
            send: self.notifySender(environment: environment)
        )
    }
}
