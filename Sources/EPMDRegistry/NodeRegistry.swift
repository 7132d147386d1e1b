import EPMDProtocol
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The single source of truth for registrations, shared by the epmd loop and (later) the HTTP threads.
/// Critical sections are short: no I/O, logging or callbacks under the lock.
public final class NodeRegistry: Sendable {
    private let state: Mutex<State>
    private let clock: @Sendable () -> Double
    /// Classes, not the closures themselves: closures read out of a `Mutex` can come back wrapped in one
    /// more reabstraction thunk per read in the release build (see `EPMDServer.exitKeeper`).
    private let observers = Mutex<[Observer]>([])

    private final class Observer: Sendable {
        let notify: @Sendable (RegistryEvent) -> Void
        init(_ notify: @escaping @Sendable (RegistryEvent) -> Void) { self.notify = notify }
    }

    /// Registration events kept by default (for `/v1/events` resumption and `/v1/events/history`).
    public static let defaultEventCapacity = 1024
    /// Seconds by default within which an unregistration counts as a flap.
    public static let defaultFlapWindow = 10.0

    /// Calls `observer` with the event of every change of the live table (its `id` is the new
    /// generation), outside the registry's lock, on the thread that made the change (the epmd loop):
    /// it must be quick.
    public func addChangeObserver(_ observer: @escaping @Sendable (RegistryEvent) -> Void) {
        let box = Observer(observer)
        self.observers.withLock { $0.append(box) }
    }

    private func changed(_ event: RegistryEvent?) {
        guard let event else { return }
        let observers = self.observers.withLock { $0 }
        for observer in observers { observer.notify(event) }
    }

    /// - Parameters:
    ///   - historyLimit: unregistered names remembered (1000; 5 under `-d`, as C epmd).
    ///   - eventCapacity: registration events kept (the ring behind `/v1/events`).
    ///   - flapWindow: seconds within which an unregistration counts as a flap.
    ///   - initialGeneration: the generation before the first change: 0 in tests, `runGeneration()`
    ///     in the daemon.
    ///   - clock: wall-clock seconds since 1970; injected for tests.
    public init(
        historyLimit: Int = EPMDLimits.unregisteredHistory,
        eventCapacity: Int = NodeRegistry.defaultEventCapacity,
        flapWindow: Double = NodeRegistry.defaultFlapWindow,
        initialGeneration: UInt64 = 0,
        clock: @escaping @Sendable () -> Double = NodeRegistry.systemClock
    ) {
        self.state = Mutex(
            State(
                historyLimit: historyLimit,
                eventCapacity: eventCapacity,
                flapWindow: flapWindow,
                initialGeneration: initialGeneration
            )
        )
        self.clock = clock
    }

    /// A registry that takes over `state` (a restart that kept the table: decoded from the previous
    /// process's image). Nothing is recorded: call ``recordRestart(method:)`` once it serves.
    /// - Parameters:
    ///   - state: the previous process's registry, as it was.
    ///   - clock: wall-clock seconds since 1970; injected for tests.
    public init(restoring state: State, clock: @escaping @Sendable () -> Double = NodeRegistry.systemClock) {
        self.state = Mutex(state)
        self.clock = clock
    }

    /// A copy of the whole state, taken under the lock (for a hand-over image or the fd store's journal).
    public func copyState() -> State { self.state.withLock { $0 } }

    /// Records that a restart kept the table: one `restarted` event (one generation more, ids stay
    /// contiguous), seen by the change observers. No node is counted as registered again.
    /// - Returns: the event.
    @discardableResult
    public func recordRestart(method: RestartMethod) -> RegistryEvent {
        let now = self.clock()
        let event = self.state.withLock { $0.recordRestart(method: method, now: now) }
        self.changed(event)
        return event
    }

    /// A starting generation unique to this run: microseconds since 1970 at start. Generations, ETags,
    /// long-poll indexes and event ids from an earlier run are then always below the new run's (its
    /// generation starts above anything the earlier run reached, short of a million changes per
    /// second), so a client holding one gets the whole table again instead of a false "nothing
    /// changed" (a 304, or a resume into the wrong history). It stays below 2^53, exact in
    /// JavaScript and JSON parsers, until the year 2255.
    public static func runGeneration(clock: () -> Double = NodeRegistry.systemClock) -> UInt64 {
        UInt64(max(0, clock()) * 1_000_000)
    }

    /// The system's wall clock.
    public static let systemClock: @Sendable () -> Double = {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return Double(spec.tv_sec) + Double(spec.tv_nsec) / 1e9
    }

    /// Registers a node. See `State.register`.
    public func register(
        _ request: Alive2Request,
        connection: ConnectionID,
        fd: Int32,
        peer: String
    ) -> Result<RegisteredNode, NodeRegistryError> {
        let now = self.clock()
        let (result, event) = self.state.withLock { state in
            let result = Result { () throws(NodeRegistryError) in
                try state.register(request, connection: connection, fd: fd, peer: peer, now: now)
            }
            return (result, state.lastEvent)
        }
        if case .success = result { self.changed(event) }
        return result
    }

    /// Unregisters whatever lives on `connection`.
    @discardableResult
    public func unregister(connection: ConnectionID, reason: UnregisterReason = .closed) -> RegisteredNode? {
        let now = self.clock()
        let (node, event) = self.state.withLock {
            ($0.unregister(connection: connection, now: now, reason: reason), $0.lastEvent)
        }
        if node != nil { self.changed(event) }
        return node
    }

    /// Unregisters a node by name (STOP).
    @discardableResult
    public func unregister(name: [UInt8]) -> RegisteredNode? {
        let now = self.clock()
        let (node, event) = self.state.withLock { ($0.unregister(name: name, now: now), $0.lastEvent) }
        if node != nil { self.changed(event) }
        return node
    }

    /// Looks a node up by name.
    public func lookup(_ name: [UInt8]) -> RegisteredNode? {
        self.state.withLock { $0.lookup(name) }
    }

    /// Whether no node is registered (KILL's rule).
    public var isEmpty: Bool { self.state.withLock { $0.nodes.isEmpty } }

    /// Number of live registrations.
    public var count: Int { self.state.withLock { $0.nodes.count } }

    /// The change counter of the live table.
    public var generation: UInt64 { self.state.withLock { $0.generation } }

    /// Live registrations, newest first.
    public func snapshot() -> [RegisteredNode] { self.state.withLock { $0.newestFirst() } }

    /// Live registrations and the generation they belong to, read together under one lock.
    public func versionedSnapshot() -> (generation: UInt64, nodes: [RegisteredNode]) {
        self.state.withLock { ($0.generation, Array($0.nodes.values)) }
    }

    /// NAMES lines, cached per generation.
    public func namesText() -> [UInt8] { self.state.withLock { $0.namesText() } }

    /// Live registrations by node type.
    public var typeCounts: NodeTypeCounts { self.state.withLock { $0.typeCounts } }

    /// What a watcher that saw everything up to `id` has missed (see `State.events(after:)`).
    public func events(after id: UInt64) -> RegistryEventsSince { self.state.withLock { $0.events(after: id) } }

    /// The buffered events and flap counts.
    public func history() -> RegistryHistory { self.state.withLock { $0.history() } }

    /// DUMP lines.
    public func dumpText() -> [UInt8] { self.state.withLock { $0.dumpText() } }
}
