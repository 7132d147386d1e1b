import EPMDProtocol

extension NodeRegistry {
    /// Every registration rule, as a plain value: testable without locks or sockets.
    public struct State: Sendable {
        /// Live registrations by name.
        public private(set) var nodes: [[UInt8]: RegisteredNode] = [:]
        private var nameByConnection: [ConnectionID: [UInt8]] = [:]
        /// The unregistered FIFO: records by name, and their order (oldest first) with lazy deletion.
        private var unregistered: [[UInt8]: (entry: UnregisteredNode, ticket: UInt64)] = [:]
        private var unregisteredOrder = FIFOQueue<(name: [UInt8], ticket: UInt64)>()
        private var nextTicket: UInt64 = 0
        private var nextSequence: UInt64 = 0
        /// How many unregistered records are kept before a new name takes over the oldest.
        public let historyLimit: Int
        /// Bumped by every change of the live table.
        public private(set) var generation: UInt64 = 0
        private var namesCache: (generation: UInt64, text: [UInt8])?

        public init(historyLimit: Int = EPMDLimits.unregisteredHistory) {
            self.historyLimit = historyLimit
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
            self.generation += 1
            return node
        }

        /// Unregisters the node living on a connection (EOF, error, stray byte, failed reply write).
        /// - Returns: the removed registration, or `nil` if the connection had none.
        @discardableResult
        public mutating func unregister(connection: ConnectionID, now: Double) -> RegisteredNode? {
            guard let name = self.nameByConnection[connection] else { return nil }
            return self.remove(name: name, now: now)
        }

        /// Unregisters a node by name (STOP_REQ).
        /// - Returns: the removed registration, or `nil` if the name is not registered.
        @discardableResult
        public mutating func unregister(name: [UInt8], now: Double) -> RegisteredNode? {
            self.remove(name: name, now: now)
        }

        private mutating func remove(name: [UInt8], now: Double) -> RegisteredNode? {
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
            self.generation += 1
            return node
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
