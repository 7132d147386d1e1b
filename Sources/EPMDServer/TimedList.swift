/// The connections that hold no registration, in deadline order (the packet timeout runs from
/// accept, so this is accept order): an intrusive doubly linked list with O(1) append, removal and
/// earliest lookup, and no entry outlives its connection. Every connection in it is under the packet
/// timeout, and it is what the connection caps evict from: the head is the oldest connection without
/// a registration, and each peer address has its own chain of the same connections, in the same
/// order, with its length (the per-address cap: O(1) per accept, no scan).
struct TimedList {
    private(set) var head: EPMDConnection?
    private var tail: EPMDConnection?
    private(set) var count = 0
    private var peers: [PeerKey: PeerChain] = [:]

    /// One peer address's connections in the list, oldest first.
    private struct PeerChain {
        var head: EPMDConnection
        var tail: EPMDConnection
        var count: Int
    }

    var isEmpty: Bool { self.head == nil }

    /// How many connections from this peer address are in the list.
    func count(from peer: PeerKey) -> Int { self.peers[peer]?.count ?? 0 }

    /// The oldest connection from this peer address in the list.
    func oldest(from peer: PeerKey) -> EPMDConnection? { self.peers[peer]?.head }

    /// Appends a connection whose deadline is not earlier than any in the list.
    mutating func append(_ connection: EPMDConnection) {
        guard !connection.isTimed else { return }
        connection.isTimed = true
        connection.timedPrevious = self.tail
        connection.timedNext = nil
        if let tail = self.tail { tail.timedNext = connection } else { self.head = connection }
        self.tail = connection
        self.count += 1
        self.appendToPeer(connection)
    }

    /// Inserts a connection at its deadline's place (adopted connections: their deadlines are older).
    mutating func insert(_ connection: EPMDConnection) {
        guard !connection.isTimed else { return }
        var next = self.head
        while let candidate = next, candidate.deadline <= connection.deadline { next = candidate.timedNext }
        guard let before = next else {
            self.append(connection)
            return
        }
        connection.isTimed = true
        connection.timedNext = before
        connection.timedPrevious = before.timedPrevious
        if let previous = before.timedPrevious { previous.timedNext = connection } else { self.head = connection }
        before.timedPrevious = connection
        self.count += 1
        self.insertIntoPeer(connection)
    }

    mutating func remove(_ connection: EPMDConnection) {
        guard connection.isTimed else { return }
        connection.isTimed = false
        let previous = connection.timedPrevious
        let next = connection.timedNext
        if let previous { previous.timedNext = next } else { self.head = next }
        if let next { next.timedPrevious = previous } else { self.tail = previous }
        connection.timedNext = nil
        connection.timedPrevious = nil
        self.count -= 1
        self.removeFromPeer(connection)
    }

    // MARK: - Per-peer chains

    private mutating func appendToPeer(_ connection: EPMDConnection) {
        connection.peerNext = nil
        guard var chain = self.peers[connection.peerKey] else {
            connection.peerPrevious = nil
            self.peers[connection.peerKey] = PeerChain(head: connection, tail: connection, count: 1)
            return
        }
        connection.peerPrevious = chain.tail
        chain.tail.peerNext = connection
        chain.tail = connection
        chain.count += 1
        self.peers[connection.peerKey] = chain
    }

    /// In deadline order within the peer's chain (only adoption inserts; it walks that chain only).
    private mutating func insertIntoPeer(_ connection: EPMDConnection) {
        guard var chain = self.peers[connection.peerKey] else {
            self.appendToPeer(connection)
            return
        }
        var next: EPMDConnection? = chain.head
        while let candidate = next, candidate.deadline <= connection.deadline { next = candidate.peerNext }
        guard let before = next else {
            self.appendToPeer(connection)
            return
        }
        connection.peerNext = before
        connection.peerPrevious = before.peerPrevious
        if let previous = before.peerPrevious { previous.peerNext = connection } else { chain.head = connection }
        before.peerPrevious = connection
        chain.count += 1
        self.peers[connection.peerKey] = chain
    }

    private mutating func removeFromPeer(_ connection: EPMDConnection) {
        let key = connection.peerKey
        let previous = connection.peerPrevious
        let next = connection.peerNext
        connection.peerNext = nil
        connection.peerPrevious = nil
        guard var chain = self.peers[key] else { return }
        guard chain.count > 1 else {
            self.peers.removeValue(forKey: key)
            return
        }
        if let previous { previous.peerNext = next } else if let next { chain.head = next }
        if let next { next.peerPrevious = previous } else if let previous { chain.tail = previous }
        chain.count -= 1
        self.peers[key] = chain
    }
}
