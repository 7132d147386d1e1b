import Synchronization

/// A body and its headers rendered once and served many times (a cached node, the node list of one
/// generation, the static documents). The daemon attaches its own object for it on first use (for
/// libmicrohttpd, one response object made once, reference-counted by libmicrohttpd for the connections
/// sending it); the attachment is released with the body, when the cache drops it.
final class SharedBody: Sendable {
    let bytes: [UInt8]
    let headers: [(name: String, value: String)]
    private let native = Mutex<NativeAttachment?>(nil)

    init(bytes: [UInt8], headers: [(name: String, value: String)]) {
        self.bytes = bytes
        self.headers = headers
    }

    /// The daemon's object for this body, made by `make` on first use (and kept when it succeeds).
    func attachment(_ make: () -> NativeAttachment?) -> NativeAttachment? {
        self.native.withLock { native in
            if let native { return native }
            native = make()
            return native
        }
    }
}

/// A daemon's native object (an address) with what releases it, run once when the last reference goes.
final class NativeAttachment: Sendable {
    let address: UInt
    private let release: @Sendable (UInt) -> Void

    init(address: UInt, release: @escaping @Sendable (UInt) -> Void) {
        self.address = address
        self.release = release
    }

    deinit { self.release(self.address) }
}
