import EPMDProtocol

// The registry as bytes: the state image a hand-over sends to the new process and the systemd fd
// store keeps in its journal. Big-endian, length-prefixed (`ByteWriter`/`ByteReader`); every count is
// checked against the bytes present before anything is allocated, and every rule the registry keeps
// (unique names and connections, contiguous event ids) is checked again on the way in.

extension Alive2Request {
    /// Writes the ALIVE2 fields.
    public func encode(into writer: inout ByteWriter) {
        writer.u16(self.port)
        writer.u8(self.nodeType)
        writer.u8(self.nodeProtocol)
        writer.u16(self.highestVersion)
        writer.u16(self.lowestVersion)
        writer.blob(self.name)
        writer.blob(self.extra)
    }

    /// Reads what `encode(into:)` wrote; names and extras are bounded as ALIVE2 bounds them.
    public init(from reader: inout ByteReader) throws(StateDecodingError) {
        let port = try reader.u16()
        let nodeType = try reader.u8()
        let nodeProtocol = try reader.u8()
        let highest = try reader.u16()
        let lowest = try reader.u16()
        let name = try reader.blob(bound: EPMDLimits.maxSymbolBytes)
        guard !name.contains(0) else { throw reader.error("a node name contains NUL") }
        let extra = try reader.blob(bound: EPMDLimits.maxSymbolBytes)
        self.init(
            port: port,
            nodeType: nodeType,
            nodeProtocol: nodeProtocol,
            highestVersion: highest,
            lowestVersion: lowest,
            name: name,
            extra: extra
        )
    }
}

extension RegisteredNode {
    /// The fewest bytes one encoded registration takes (for bounding counts).
    static let minimumEncodedSize = 8 + 8 + 4 + 4 + 4 + 8 + 4 + 8 + 4

    /// Writes the registration: its ALIVE2 fields, creation, connection id, descriptor, time, peer, sequence.
    public func encode(into writer: inout ByteWriter) {
        self.request.encode(into: &writer)
        writer.u32(self.creation)
        writer.u64(self.connection.rawValue)
        writer.i32(self.fd)
        writer.f64(self.registeredAt)
        writer.string(self.peer)
        writer.u64(self.sequence)
    }

    /// Reads what `encode(into:)` wrote.
    public init(from reader: inout ByteReader) throws(StateDecodingError) {
        let request = try Alive2Request(from: &reader)
        let creation = try reader.u32()
        let connection = ConnectionID(try reader.u64())
        let fd = try reader.i32()
        let registeredAt = try reader.time()
        let peer = try reader.string(bound: 256)
        let sequence = try reader.u64()
        self.init(
            request: request,
            creation: creation,
            connection: connection,
            fd: fd,
            registeredAt: registeredAt,
            peer: peer,
            sequence: sequence
        )
    }
}

extension UnregisteredNode {
    static let minimumEncodedSize = 4 + 2 + 4 + 4 + 8

    /// Writes the record.
    public func encode(into writer: inout ByteWriter) {
        writer.blob(self.name)
        writer.u16(self.port)
        writer.i32(self.fd)
        writer.u32(self.creation)
        writer.f64(self.unregisteredAt)
    }

    /// Reads what `encode(into:)` wrote.
    public init(from reader: inout ByteReader) throws(StateDecodingError) {
        let name = try reader.blob(bound: EPMDLimits.maxSymbolBytes)
        self.init(
            name: name,
            port: try reader.u16(),
            fd: try reader.i32(),
            creation: try reader.u32(),
            unregisteredAt: try reader.time()
        )
    }
}

extension RegistryEvent {
    static let minimumEncodedSize = 8 + 1 + 1 + 8 + 1 + 1 + 1

    /// Writes the event: id, kind (with its reason or method), node, time, lifetime, flap, node count.
    public func encode(into writer: inout ByteWriter) {
        writer.u64(self.id)
        switch self.kind {
        case .registered:
            writer.u8(0)
        case .unregistered(let reason):
            writer.u8(1)
            writer.string(reason.rawValue)
        case .restarted(let method):
            writer.u8(2)
            writer.string(method.rawValue)
        }
        writer.bool(self.node != nil)
        self.node?.encode(into: &writer)
        writer.f64(self.time)
        writer.bool(self.lifetime != nil)
        if let lifetime = self.lifetime { writer.f64(lifetime) }
        writer.bool(self.isFlap)
        writer.bool(self.nodeCount != nil)
        if let nodeCount = self.nodeCount { writer.u64(UInt64(max(0, nodeCount))) }
    }

    /// Reads what `encode(into:)` wrote.
    public init(from reader: inout ByteReader) throws(StateDecodingError) {
        let id = try reader.u64()
        let kind: Kind
        switch try reader.u8() {
        case 0:
            kind = .registered
        case 1:
            let label = try reader.string(bound: 64)
            guard let reason = UnregisterReason(rawValue: label) else { throw reader.error("unknown reason \(label)") }
            kind = .unregistered(reason)
        case 2:
            let label = try reader.string(bound: 64)
            guard let method = RestartMethod(rawValue: label) else { throw reader.error("unknown method \(label)") }
            kind = .restarted(method)
        case let other:
            throw reader.error("unknown event kind \(other)")
        }
        let node = try reader.bool() ? try RegisteredNode(from: &reader) : nil
        switch kind {
        case .registered, .unregistered: guard node != nil else { throw reader.error("an event without its node") }
        case .restarted: break
        }
        let time = try reader.time()
        let lifetime = try reader.bool() ? try reader.time() : nil
        let isFlap = try reader.bool()
        let nodeCount: Int?
        if try reader.bool() {
            let count = try reader.u64()
            guard count <= UInt64(Int32.max) else { throw reader.error("node count \(count) out of range") }
            nodeCount = Int(count)
        } else {
            nodeCount = nil
        }
        self.init(
            id: id,
            kind: kind,
            node: node,
            time: time,
            lifetime: lifetime,
            isFlap: isFlap,
            nodeCount: nodeCount
        )
    }
}

extension NodeRegistry.State {
    /// "EPRS": the first bytes of a state image.
    public static let imageMagic: UInt32 = 0x4550_5253
    /// The image format; a decoder refuses any other.
    public static let imageVersion: UInt16 = 1
    /// The largest event ring an image may ask for.
    public static let maximumEventCapacity = 1 << 24
    /// The largest unregistered history an image may ask for.
    public static let maximumHistoryLimit = 1 << 24

    /// Writes everything: settings, live nodes (newest first), the unregistered FIFO (oldest first),
    /// the sequence counter, the generation and the event ring. The names cache and the type counts
    /// are not written (they are recomputed).
    public func encode(into writer: inout ByteWriter) {
        writer.u32(Self.imageMagic)
        writer.u16(Self.imageVersion)
        writer.u64(UInt64(max(0, self.historyLimit)))
        writer.u64(UInt64(self.events.capacity))
        writer.f64(self.flapWindow)
        writer.u64(self.nextSequence)
        writer.u64(self.generation)
        let nodes = self.newestFirst()
        writer.count(nodes.count)
        for node in nodes { node.encode(into: &writer) }
        let unregistered = self.unregisteredOldestFirst()
        writer.count(unregistered.count)
        for record in unregistered { record.encode(into: &writer) }
        let events = self.events.elements
        writer.count(events.count)
        for event in events { event.encode(into: &writer) }
    }

    /// The state as one image (`encode(into:)`).
    public func encoded() -> [UInt8] {
        var writer = ByteWriter(capacity: 64 + self.nodes.count * 96 + self.events.count * 120)
        self.encode(into: &writer)
        return writer.bytes
    }

    /// Reads what `encode(into:)` wrote and checks the registry's rules: unique names and
    /// connections, an unregistered name not also live, contiguous event ids ending at the generation.
    public init(from reader: inout ByteReader) throws(StateDecodingError) {
        guard try reader.u32() == Self.imageMagic else { throw reader.error("not a registry state image") }
        let version = try reader.u16()
        guard version == Self.imageVersion else {
            throw reader.error("registry state image version \(version), this binary reads \(Self.imageVersion)")
        }
        let historyLimit = try reader.u64()
        guard historyLimit <= UInt64(Self.maximumHistoryLimit) else { throw reader.error("history limit out of range") }
        let capacity = try reader.u64()
        guard capacity >= 1, capacity <= UInt64(Self.maximumEventCapacity) else {
            throw reader.error("event capacity \(capacity) out of range")
        }
        let flapWindow = try reader.time()
        self.init(
            historyLimit: Int(historyLimit),
            eventCapacity: Int(capacity),
            flapWindow: flapWindow,
            initialGeneration: 0
        )
        self.nextSequence = try reader.u64()
        self.generation = try reader.u64()

        let nodeCount = try reader.count(minimumElementSize: RegisteredNode.minimumEncodedSize)
        for _ in 0..<nodeCount {
            let node = try RegisteredNode(from: &reader)
            guard self.nodes[node.name] == nil else { throw reader.error("a node name is registered twice") }
            guard self.nameByConnection[node.connection] == nil else {
                throw reader.error("connection \(node.connection) holds two registrations")
            }
            guard node.sequence <= self.nextSequence else { throw reader.error("a sequence above the counter") }
            self.nodes[node.name] = node
            self.nameByConnection[node.connection] = node.name
            self.typeCounts.add(node.request.type, 1)
        }

        let unregisteredCount = try reader.count(minimumElementSize: UnregisteredNode.minimumEncodedSize)
        for _ in 0..<unregisteredCount {
            let record = try UnregisteredNode(from: &reader)
            guard self.unregistered[record.name] == nil, self.nodes[record.name] == nil else {
                throw reader.error("an unregistered name appears twice")
            }
            self.nextTicket += 1
            self.unregistered[record.name] = (record, self.nextTicket)
            self.unregisteredOrder.append((record.name, self.nextTicket))
        }

        let eventCount = try reader.count(minimumElementSize: RegistryEvent.minimumEncodedSize)
        guard eventCount <= Int(capacity) else { throw reader.error("more events than the ring holds") }
        var events: [RegistryEvent] = []
        events.reserveCapacity(eventCount)
        for _ in 0..<eventCount {
            let event = try RegistryEvent(from: &reader)
            if let previous = events.last, previous.id == UInt64.max || event.id != previous.id + 1 {
                throw reader.error("event ids are not contiguous")
            }
            events.append(event)
        }
        if let last = events.last, last.id != self.generation {
            throw reader.error("the newest event is not the generation")
        }
        self.events = EventRing(capacity: Int(capacity), elements: events)
        self.lastEvent = events.last
    }

    /// Decodes a whole image (`init(from:)`), refusing bytes left over.
    public init(decoding bytes: [UInt8]) throws(StateDecodingError) {
        var reader = ByteReader(bytes)
        try self.init(from: &reader)
        try reader.expectEnd()
    }
}
