import EPMDPosix
import EPMDRegistry
import Logging
import Synchronization

/// Adopting and exporting connections: the seam a loss-free restart uses (the old process exports,
/// passes the descriptors, and the new one adopts). Accepting is adopting a fresh snapshot.
extension EventLoop {
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
        return self.export(connection)
    }

    private mutating func export(_ connection: EPMDConnection) -> EPMDConnectionSnapshot {
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
    /// One pass over the slots (a hand-over of 19,000 registrations must not search them per connection).
    mutating func exportAll() -> [EPMDConnectionSnapshot] {
        let open = self.slots.compactMap { $0 }
        let ordered = open.filter(\.isRegistered) + open.filter { !$0.isRegistered }
        return ordered.map { self.export($0) }
    }
}
