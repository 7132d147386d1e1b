import Synchronization

/// Metric handles made on first use, for label values from a bounded set that is not all known up
/// front (HTTP status codes, an unexpected request/result pair). A handle is made once per key and
/// reused: `PrometheusCollectorRegistry.make*` takes the registry's lock and hashes the labels, too
/// much for every request.
final class HandleCache<Key: Hashable & Sendable, Handle: AnyObject & Sendable>: Sendable {
    private let handles = Mutex<[Key: Handle]>([:])
    private let make: @Sendable (Key) -> Handle

    /// - Parameter make: makes the handle for a key (called once per key, under this cache's lock).
    init(make: @escaping @Sendable (Key) -> Handle) {
        self.make = make
    }

    /// The handle for `key`, made now if it is the first use.
    func handle(for key: Key) -> Handle {
        self.handles.withLock { handles in
            if let handle = handles[key] { return handle }
            let handle = self.make(key)
            handles[key] = handle
            return handle
        }
    }

    /// Keys with a handle.
    var count: Int { self.handles.withLock { $0.count } }
}
