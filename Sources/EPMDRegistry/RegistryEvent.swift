/// Why a registration ended. Also the `reason` label of `epmd_unregistrations_total`.
public enum UnregisterReason: String, CaseIterable, Hashable, Sendable {
    /// The node closed its connection (it stopped or died: the usual end).
    case closed
    /// A read or a reply write on the connection failed (reset, broken pipe).
    case error
    /// A byte arrived on the registration connection ("got more than expected on ALIVE socket").
    case strayData = "stray_data"
    /// A STOP request named it (`epmd -stop`).
    case stop
    /// The gateway shut down with the node still registered.
    case shutdown

    /// The metric label (the raw value).
    public var label: String { self.rawValue }
}

/// How a restart kept the name table (the `method` of a `restarted` event and of
/// `epmd_restarts_total`).
public enum RestartMethod: String, CaseIterable, Hashable, Sendable {
    /// A new process took everything over from the running one through the hand-over socket.
    case handover
    /// The process was restarted by systemd and restored the table from its fd store.
    case fdstore

    /// The metric label (the raw value).
    public var label: String { self.rawValue }
}

/// One change of the live table. Every change bumps the registry's generation by one and makes one
/// event whose `id` is the new generation, so ids are contiguous and a watcher can resume after any id.
public struct RegistryEvent: Equatable, Sendable {
    public enum Kind: Equatable, Sendable {
        case registered
        case unregistered(UnregisterReason)
        /// A new process took the table over (nothing in it changed; no node).
        case restarted(RestartMethod)
    }

    /// The generation this change produced.
    public var id: UInt64
    public var kind: Kind
    /// The registration (as it was, for an unregistration); nil for a `restarted` event.
    public var node: RegisteredNode?
    /// Wall-clock time of the change, seconds since 1970.
    public var time: Double
    /// Seconds the registration lived (unregistrations only).
    public var lifetime: Double?
    /// An unregistration within the flap window of its registration.
    public var isFlap: Bool
    /// The live registrations after the change (recorded for `restarted` events; nil otherwise).
    public var nodeCount: Int?

    public init(
        id: UInt64,
        kind: Kind,
        node: RegisteredNode?,
        time: Double,
        lifetime: Double?,
        isFlap: Bool,
        nodeCount: Int? = nil
    ) {
        self.id = id
        self.kind = kind
        self.node = node
        self.time = time
        self.lifetime = lifetime
        self.isFlap = isFlap
        self.nodeCount = nodeCount
    }

    /// `registered`, `unregistered` or `restarted`: the SSE event name and the JSON `type`.
    public var name: String {
        switch self.kind {
        case .registered: "registered"
        case .unregistered: "unregistered"
        case .restarted: "restarted"
        }
    }

    /// The restart method of a `restarted` event.
    public var restartMethod: RestartMethod? {
        if case .restarted(let method) = self.kind { return method }
        return nil
    }

    /// The unregistration reason, if any.
    public var reason: UnregisterReason? {
        if case .unregistered(let reason) = self.kind { return reason }
        return nil
    }
}

/// What a watcher resuming after an id gets.
public enum RegistryEventsSince: Equatable, Sendable {
    /// The events after the id, oldest first (empty when it is current).
    case events([RegistryEvent])
    /// The id is older than the buffer, or from another run (larger than the generation): start over
    /// from the full table at `generation`.
    case reset(generation: UInt64, nodes: [RegisteredNode])
}

/// The recent events and what they say about flapping.
public struct RegistryHistory: Equatable, Sendable {
    /// The current generation.
    public var generation: UInt64
    /// Buffered events, oldest first.
    public var events: [RegistryEvent]
    /// Names with at least one flap in the buffer, and how many.
    public var flapsByName: [[UInt8]: Int]
    /// The flap window, seconds.
    public var flapWindow: Double
    /// The buffer's capacity.
    public var capacity: Int
}

/// A fixed-capacity ring of events: the newest `capacity` are kept.
struct EventRing: Sendable {
    let capacity: Int
    private var storage: [RegistryEvent] = []
    private var start = 0

    init(capacity: Int) {
        self.capacity = max(1, capacity)
        self.storage.reserveCapacity(min(self.capacity, 4096))
    }

    /// A ring holding `elements` (oldest first; only the newest `capacity` are kept).
    init(capacity: Int, elements: [RegistryEvent]) {
        self.init(capacity: capacity)
        for event in elements { self.append(event) }
    }

    var count: Int { self.storage.count }

    mutating func append(_ event: RegistryEvent) {
        if self.storage.count < self.capacity {
            self.storage.append(event)
        } else {
            self.storage[self.start] = event
            self.start = (self.start + 1) % self.capacity
        }
    }

    /// Oldest first.
    var elements: [RegistryEvent] {
        Array(self.storage[self.start...]) + Array(self.storage[..<self.start])
    }

    /// The oldest buffered event's id.
    var oldestID: UInt64? { self.storage.isEmpty ? nil : self.storage[self.start].id }

    /// The events with ids above `id`, oldest first (the caller checked that `id` is in range).
    func events(after id: UInt64) -> [RegistryEvent] {
        guard let oldest = self.oldestID, id + 1 >= oldest else { return self.elements }
        let skip = Int(id + 1 - oldest)
        guard skip < self.storage.count else { return [] }
        var result: [RegistryEvent] = []
        result.reserveCapacity(self.storage.count - skip)
        for offset in skip..<self.storage.count {
            result.append(self.storage[(self.start + offset) % self.storage.count])
        }
        return result
    }
}
