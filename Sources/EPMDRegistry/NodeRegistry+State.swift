import EPMDProtocol

extension NodeRegistry {
    /// Every registration rule, as a plain value: testable without locks or sockets.
    public struct State: Sendable {
        /// Live registrations by name.
        public internal(set) var nodes: [[UInt8]: RegisteredNode] = [:]
        var nameByConnection: [ConnectionID: [UInt8]] = [:]
        /// The unregistered FIFO: records by name, and their order (oldest first) with lazy deletion.
        var unregistered: [[UInt8]: (entry: UnregisteredNode, ticket: UInt64)] = [:]
        var unregisteredOrder = FIFOQueue<(name: [UInt8], ticket: UInt64)>()
        var nextTicket: UInt64 = 0
        var nextSequence: UInt64 = 0
        /// How many unregistered records are kept before a new name takes over the oldest.
        public let historyLimit: Int
        /// Bumped by every change of the live table.
        public internal(set) var generation: UInt64 = 0
        private var namesCache: (generation: UInt64, text: [UInt8])?
        /// The newest changes, one event per generation.
        var events: EventRing
        /// An unregistration this soon (seconds) after its registration is a flap.
        public let flapWindow: Double
        /// Live registrations of normal (77) and hidden (72) nodes; any other type code counts as `other`.
        public internal(set) var typeCounts = NodeTypeCounts()

        /// - Parameters:
        ///   - historyLimit: unregistered names remembered for their creation numbers.
        ///   - eventCapacity: registration events kept for watchers and history.
        ///   - flapWindow: seconds within which an unregistration counts as a flap.
        ///   - initialGeneration: the generation before the first change (see `NodeRegistry.runGeneration`).
        public init(
            historyLimit: Int = EPMDLimits.unregisteredHistory,
            eventCapacity: Int = NodeRegistry.defaultEventCapacity,
            flapWindow: Double = NodeRegistry.defaultFlapWindow,
            initialGeneration: UInt64 = 0
        ) {
            self.historyLimit = historyLimit
            self.generation = initialGeneration
            self.events = EventRing(capacity: eventCapacity)
            self.flapWindow = flapWindow
        }

        /// The newest event (the one whose id is `generation`), if any change happened yet.
        public internal(set) var lastEvent: RegistryEvent?

        /// What a watcher that saw everything up to `id` has missed.
        public func events(after id: UInt64) -> RegistryEventsSince {
            if id == self.generation { return .events([]) }
            guard id < self.generation, let oldest = self.events.oldestID, id + 1 >= oldest else {
                return .reset(generation: self.generation, nodes: Array(self.nodes.values))
            }
            return .events(self.events.events(after: id))
        }

        /// The buffered events with their flap counts.
        public func history() -> RegistryHistory {
            let events = self.events.elements
            var flaps: [[UInt8]: Int] = [:]
            for event in events where event.isFlap {
                if let node = event.node { flaps[node.name, default: 0] += 1 }
            }
            return RegistryHistory(
                generation: self.generation,
                events: events,
                flapsByName: flaps,
                flapWindow: self.flapWindow,
                capacity: self.events.capacity
            )
        }

        /// Number of unregistered records remembered.
        public var unregisteredCount: Int { self.unregistered.count }

        /// Registers a node as C epmd's `node_reg2` does, creation numbers included.
        /// - Parameters:
        ///   - request: the decoded ALIVE2 fields.
        ///   - connection: the connection the registration lives on.
        ///   - fd: its descriptor (for DUMP).
        ///   - peer: the printable peer address.
        ///   - now: wall-clock seconds since 1970 (seeds a new name's creation counter).
        /// - Returns: the new registration.
        /// - Throws: `NodeRegistryError` for a refused registration.
        @discardableResult
        public mutating func register(
            _ request: Alive2Request,
            connection: ConnectionID,
            fd: Int32,
            peer: String,
            now: Double
        ) throws(NodeRegistryError) -> RegisteredNode {
            guard request.name.count <= EPMDLimits.maxSymbolBytes else { throw .nameTooLong }
            guard let codePoints = UTF8Validation.codePointCount(request.name) else { throw .invalidEncoding }
            guard codePoints <= EPMDLimits.maxNameCodePoints else { throw .nameTooLong }
            guard request.extra.count <= EPMDLimits.maxSymbolBytes else { throw .extraTooLong }
            guard self.nodes[request.name] == nil else { throw .nameInUse }

            let creation: UInt32
            if let old = self.unregistered.removeValue(forKey: request.name) {
                creation = Self.bump(old.entry.creation)
            } else if self.unregistered.count > self.historyLimit, let oldest = self.popOldestUnregistered() {
                // C epmd takes over the oldest record for a new name: no bump, no reset.
                creation = oldest.creation
            } else {
                creation = Self.bump(UInt32(truncatingIfNeeded: Int64(now)))
            }
            self.nextSequence += 1
            let node = RegisteredNode(
                request: request,
                creation: creation,
                connection: connection,
                fd: fd,
                registeredAt: now,
                peer: peer,
                sequence: self.nextSequence
            )
            self.nodes[request.name] = node
            self.nameByConnection[connection] = request.name
            self.typeCounts.add(request.type, 1)
            self.generation += 1
            self.record(
                RegistryEvent(
                    id: self.generation,
                    kind: .registered,
                    node: node,
                    time: now,
                    lifetime: nil,
                    isFlap: false
                )
            )
            return node
        }

        /// Unregisters the node living on a connection (EOF, error, stray byte, failed reply write).
        /// - Returns: the removed registration, or `nil` if the connection had none.
        @discardableResult
        public mutating func unregister(
            connection: ConnectionID,
            now: Double,
            reason: UnregisterReason = .closed
        ) -> RegisteredNode? {
            guard let name = self.nameByConnection[connection] else { return nil }
            return self.remove(name: name, now: now, reason: reason)
        }

        /// Unregisters a node by name (STOP_REQ).
        /// - Returns: the removed registration, or `nil` if the name is not registered.
        @discardableResult
        public mutating func unregister(name: [UInt8], now: Double) -> RegisteredNode? {
            self.remove(name: name, now: now, reason: .stop)
        }

        private mutating func remove(name: [UInt8], now: Double, reason: UnregisterReason) -> RegisteredNode? {
            guard let node = self.nodes.removeValue(forKey: name) else { return nil }
            self.nameByConnection.removeValue(forKey: node.connection)
            self.nextTicket += 1
            let entry = UnregisteredNode(
                name: name,
                port: node.port,
                fd: node.fd,
                creation: node.creation,
                unregisteredAt: now
            )
            self.unregistered[name] = (entry, self.nextTicket)
            self.unregisteredOrder.append((name, self.nextTicket))
            self.compactUnregisteredOrderIfNeeded()
            self.typeCounts.add(node.request.type, -1)
            self.generation += 1
            let lifetime = max(0, now - node.registeredAt)
            self.record(
                RegistryEvent(
                    id: self.generation,
                    kind: .unregistered(reason),
                    node: node,
                    time: now,
                    lifetime: lifetime,
                    // A flap is the node's doing: an operator's STOP or our own shutdown is not one.
                    isFlap: lifetime < self.flapWindow && reason != .stop && reason != .shutdown
                )
            )
            return node
        }

        /// A restart kept the table (`NodeRegistry.recordRestart(method:)`): one `restarted` event,
        /// one generation more, nothing else changes (no registration counted, no lifetime reset).
        /// - Returns: the event.
        @discardableResult
        public mutating func recordRestart(method: RestartMethod, now: Double) -> RegistryEvent {
            self.generation += 1
            let event = RegistryEvent(
                id: self.generation,
                kind: .restarted(method),
                node: nil,
                time: now,
                lifetime: nil,
                isFlap: false,
                nodeCount: self.nodes.count
            )
            self.record(event)
            return event
        }

        /// Looks a node up by name.
        public func lookup(_ name: [UInt8]) -> RegisteredNode? { self.nodes[name] }

        /// Live registrations, newest first (the order of NAMES and DUMP).
        public func newestFirst() -> [RegisteredNode] {
            self.nodes.values.sorted { $0.sequence > $1.sequence }
        }

        /// Unregistered records, oldest first (the order of DUMP's old lines).
        public func unregisteredOldestFirst() -> [UnregisteredNode] {
            self.unregisteredOrder.elements.compactMap { item in
                guard let record = self.unregistered[item.name], record.ticket == item.ticket else { return nil }
                return record.entry
            }
        }

        /// The NAMES reply lines (without the port prefix), rendered once per generation.
        public mutating func namesText() -> [UInt8] {
            if let cache = self.namesCache, cache.generation == self.generation { return cache.text }
            var text: [UInt8] = []
            text.reserveCapacity(self.nodes.count * 32)
            for node in self.newestFirst() {
                EPMDResponse.appendNamesLine(to: &text, name: node.name, port: node.port)
            }
            self.namesCache = (self.generation, text)
            return text
        }

        /// The DUMP reply lines (without the port prefix).
        public func dumpText() -> [UInt8] {
            var text: [UInt8] = []
            for node in self.newestFirst() {
                EPMDResponse.appendDumpActiveLine(to: &text, name: node.name, port: node.port, fd: node.fd)
            }
            for old in self.unregisteredOldestFirst() {
                EPMDResponse.appendDumpOldLine(to: &text, name: old.name, port: old.port, fd: old.fd)
            }
            return text
        }

        mutating func record(_ event: RegistryEvent) {
            self.events.append(event)
            self.lastEvent = event
        }

        /// `cr_counter += 1`, and values below 4 (after wrap-around) become 4.
        static func bump(_ counter: UInt32) -> UInt32 {
            let next = counter &+ 1
            return next < 4 ? 4 : next
        }

        private mutating func popOldestUnregistered() -> UnregisteredNode? {
            while let item = self.unregisteredOrder.popFirst() {
                if let record = self.unregistered[item.name], record.ticket == item.ticket {
                    self.unregistered.removeValue(forKey: item.name)
                    return record.entry
                }
            }
            return nil
        }

        /// Stale order entries (names re-registered since) are dropped once they outnumber live ones.
        private mutating func compactUnregisteredOrderIfNeeded() {
            guard self.unregisteredOrder.count > 64, self.unregisteredOrder.count > 2 * self.unregistered.count
            else { return }
            let live = self.unregisteredOrder.elements.filter { item in
                self.unregistered[item.name]?.ticket == item.ticket
            }
            self.unregisteredOrder = FIFOQueue(live)
        }
    }
}

/// Live registrations by node type.
public struct NodeTypeCounts: Equatable, Sendable {
    public var normal = 0
    public var hidden = 0
    public var other = 0

    public init() {}

    /// The live count of one kind (every `other` code counts together).
    public subscript(type: NodeType) -> Int {
        switch type {
        case .normal: self.normal
        case .hidden: self.hidden
        case .other: self.other
        }
    }

    mutating func add(_ type: NodeType, _ delta: Int) {
        switch type {
        case .normal: self.normal += delta
        case .hidden: self.hidden += delta
        case .other: self.other += delta
        }
    }
}
