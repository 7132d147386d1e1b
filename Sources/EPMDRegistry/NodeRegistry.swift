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
    private let observers = Mutex<[@Sendable (UInt64) -> Void]>([])

    /// Calls `observer` with the new generation after every change of the live table, outside the
    /// registry's lock, on the thread that made the change (the epmd loop): it must be quick.
    public func addChangeObserver(_ observer: @escaping @Sendable (UInt64) -> Void) {
        self.observers.withLock { $0.append(observer) }
    }

    private func changed(_ generation: UInt64) {
        let observers = self.observers.withLock { $0 }
        for observer in observers { observer(generation) }
    }

    /// - Parameters:
    ///   - historyLimit: unregistered names remembered (1000; 5 under `-d`, as C epmd).
    ///   - clock: wall-clock seconds since 1970; injected for tests.
    public init(
        historyLimit: Int = EPMDLimits.unregisteredHistory,
        clock: @escaping @Sendable () -> Double = NodeRegistry.systemClock
    ) {
        self.state = Mutex(State(historyLimit: historyLimit))
        self.clock = clock
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
        let (result, generation) = self.state.withLock { state in
            let result = Result { () throws(NodeRegistryError) in
                try state.register(request, connection: connection, fd: fd, peer: peer, now: now)
            }
            return (result, state.generation)
        }
        if case .success = result { self.changed(generation) }
        return result
    }

    /// Unregisters whatever lives on `connection`.
    @discardableResult
    public func unregister(connection: ConnectionID) -> RegisteredNode? {
        let now = self.clock()
        let (node, generation) = self.state.withLock {
            ($0.unregister(connection: connection, now: now), $0.generation)
        }
        if node != nil { self.changed(generation) }
        return node
    }

    /// Unregisters a node by name (STOP).
    @discardableResult
    public func unregister(name: [UInt8]) -> RegisteredNode? {
        let now = self.clock()
        let (node, generation) = self.state.withLock { ($0.unregister(name: name, now: now), $0.generation) }
        if node != nil { self.changed(generation) }
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

    /// DUMP lines.
    public func dumpText() -> [UInt8] { self.state.withLock { $0.dumpText() } }
}
