import EPMDPosix
import EPMDRegistry
import Logging
import Synchronization

/// Accepting: batches, descriptor exhaustion (never fatal), and adopting connections, fresh or
/// exported from another loop.
extension EventLoop {
    mutating func acceptConnections(listenerIndex: Int) {
        guard listenerIndex >= 0, listenerIndex < self.server.listeners.count, !self.acceptPaused else { return }
        let listenFD = self.server.listeners[listenerIndex]
        // Accept in a batch only while nobody else waits: a connection whose request was not there at
        // accept waits in epoll, and an accept batch would make it wait behind the whole batch (measured:
        // 16 accepts per wake-up doubled the p999 of lookups). So once any connection is in flight, hand
        // back to epoll after each accept, as C epmd does; while every request comes with its connect
        // and is answered at once, keep accepting (fewer epoll_wait calls).
        for _ in 0..<Self.acceptBatch {
            do {
                guard let (fd, peer) = try System.accept(listenFD) else { return }
                self.accepted(fd: fd, peer: peer)
                if !self.timed.isEmpty || self.exitReason != nil { return }
            } catch {
                let reason = EPMDRefusalReason(errno: error.errno)
                if reason != .acceptError {
                    self.outOfDescriptors(error, reason: reason, listenFD: listenFD)
                    return
                }
                // ECONNABORTED, EPROTO, EPERM and friends concern one peer only: never fatal.
                self.server.counters.rejected(reason)
                self.logger.info("error in accept: \(error.message)")
                return
            }
        }
    }

    /// EMFILE/ENFILE: keep every registration, count the refusal, and serve one waiting client with
    /// the reserve descriptor; then stop polling the listeners until a descriptor frees (or 100 ms).
    private mutating func outOfDescriptors(_ error: SystemError, reason: EPMDRefusalReason, listenFD: Int32) {
        self.server.counters.rejected(reason)
        self.logger.error("error in accept: \(error.message) (registrations kept, accepting paused)")
        if self.reserveFD >= 0 {
            System.close(self.reserveFD)
            self.reserveFD = -1
            if let (fd, peer) = try? System.accept(listenFD) {
                self.accepted(fd: fd, peer: peer)
            }
        }
        self.pauseAccepting()
    }

    private mutating func pauseAccepting() {
        guard !self.acceptPaused else { return }
        self.acceptPaused = true
        self.acceptResumeAt = System.monotonicNanoseconds() + 100_000_000
        for fd in self.server.listeners {
            try? self.epoll.modify(fd, events: [], data: 0)
        }
    }

    mutating func resumeAccepting() {
        if self.reserveFD < 0 { self.reserveFD = System.openReserve() ?? -1 }
        guard self.acceptPaused else { return }
        self.acceptPaused = false
        for (index, fd) in self.server.listeners.enumerated() {
            try? self.epoll.modify(fd, events: .input, data: LoopToken.listener(index: Int32(index)).packed)
        }
    }

    /// A connection just accepted: adopted with a fresh state.
    private mutating func accepted(fd: Int32, peer: SocketAddress) {
        let isLocal = PeerLocality.isLocal(peer: peer) { try? System.localAddress(fd) }
        if self.logsDebug { self.logger.debug("\(isLocal ? "Local" : "Non-local") peer connected (\(peer))") }
        self.adopt(
            .fresh(
                fd: fd,
                peer: peer,
                isLocalPeer: isLocal,
                relaxedCommandCheck: self.server.configuration.relaxedCommandCheck,
                acceptedAt: System.monotonicNanoseconds()
            )
        )
    }

    /// Takes a connection into the loop: a fresh one from `accept`, or one exported by another loop
    /// (a restarted process gets the descriptor by fd passing). A connection still receiving is read at
    /// once: clients send their request right behind the handshake, so a lookup is usually answered and
    /// closed here without ever touching epoll.
    ///
    /// An adopted registration must already be in the registry under the snapshot's id (the same
    /// process, or a registry restored first); otherwise it registers again, and the connection is
    /// closed if that is refused.
    /// - Returns: the connection's id, or nil when it was closed before it could be watched.
    @discardableResult
    mutating func adopt(_ snapshot: EPMDConnectionSnapshot) -> ConnectionID? {
        let id: ConnectionID
        if let kept = snapshot.id {
            id = kept
            self.nextID = max(self.nextID, kept.rawValue)
        } else {
            self.nextID += 1
            id = ConnectionID(self.nextID)
        }
        self.nextSerial = (self.nextSerial + 1) & LoopToken.serialMask
        let connection = EPMDConnection(
            id: id,
            fd: snapshot.fd,
            serial: self.nextSerial,
            peer: snapshot.peer,
            machine: snapshot.machine,
            acceptedAt: snapshot.acceptedAt
        )
        let index = Int(snapshot.fd)
        if index >= self.slots.count {
            self.slots.append(contentsOf: repeatElement(nil, count: max(index + 1 - self.slots.count, 64)))
        }
        self.slots[index] = connection
        self.openCount += 1
        self.server.counters.connectionOpened(open: self.openCount)
        if let node = snapshot.registration {
            guard self.adoptRegistration(node, on: connection) else { return nil }
        } else if connection.machine.isTimed {
            connection.deadline = snapshot.acceptedAt &+ self.packetTimeout
            if snapshot.id == nil { self.timed.append(connection) } else { self.timed.insert(connection) }
        }
        switch connection.machine.state {
        case .receiving:
            self.readable(connection)
        case .replying:
            connection.outbound = snapshot.pendingReply
            connection.outboundOffset = 0
            self.flush(connection)
        case .kept, .closed:
            break
        }
        guard self.slots[index] === connection else { return nil }
        do {
            try self.epoll.add(snapshot.fd, events: connection.interest, data: connection.token.packed)
            connection.watched = true
        } catch {
            self.logger.error("cannot watch connection: \(error.message)")
            self.close(connection, reason: .ioError)
            return nil
        }
        return id
    }

    private mutating func adoptRegistration(_ node: RegisteredNode, on connection: EPMDConnection) -> Bool {
        if let live = self.server.registry.lookup(node.name), live.connection == connection.id {
            connection.registration = live
        } else {
            switch self.server.registry.register(
                node.request,
                connection: connection.id,
                fd: connection.fd,
                peer: connection.peer.host
            ) {
            case .success(let registered):
                connection.registration = registered
            case .failure(let error):
                self.logger.warning(
                    "adopted registration '\(Self.printable(node.name))' refused: \(error)"
                )
                self.close(connection, reason: .shutdown)
                return false
            }
        }
        self.registeredByID[connection.id] = connection.fd
        return true
    }

    /// Takes a connection out of the loop without closing it or ending its registration, for another
    /// loop to adopt (the descriptor stays open: the caller owns it now).
    /// - Parameter id: the connection.
    /// - Returns: its snapshot, or nil when no such connection is open.
    mutating func export(_ id: ConnectionID) -> EPMDConnectionSnapshot? {
        guard let connection = self.slots.lazy.compactMap({ $0 }).first(where: { $0.id == id }) else { return nil }
        if connection.watched { try? self.epoll.delete(connection.fd) }
        self.timed.remove(connection)
        self.registeredByID.removeValue(forKey: connection.id)
        self.slots[Int(connection.fd)] = nil
        self.openCount -= 1
        self.server.counters.open.store(self.openCount, ordering: .relaxed)
        return EPMDConnectionSnapshot(
            id: connection.id,
            fd: connection.fd,
            peer: connection.peer,
            machine: connection.machine,
            registration: connection.registration,
            pendingReply: Array(connection.outbound[connection.outboundOffset...]),
            acceptedAt: connection.acceptedAt
        )
    }

    /// Exports every open connection (see `export(_:)`), registrations first.
    mutating func exportAll() -> [EPMDConnectionSnapshot] {
        let ids = self.slots.compactMap { $0 }.sorted { ($0.isRegistered ? 0 : 1) < ($1.isRegistered ? 0 : 1) }.map(
            \.id
        )
        return ids.compactMap { self.export($0) }
    }
}
