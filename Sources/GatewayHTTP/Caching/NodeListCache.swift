import EPMDRegistry
import Synchronization

/// Rendered bodies, valid for one registry generation: the unfiltered `/v1/nodes` (with its `ETag`),
/// and each node's JSON, as ``SharedBody`` values the daemon serves without copying. A registration
/// never changes while it lives, so a body is stale only once the generation moves on; then everything
/// is dropped (and with it the daemon's response objects).
final class NodeListCache: Sendable {
    private struct Entries {
        var generation: UInt64 = .max
        var list: (body: SharedBody, etag: String)?
        var nodes: [String: SharedBody] = [:]

        mutating func roll(to generation: UInt64) {
            guard self.generation != generation else { return }
            self = Entries(generation: generation)
        }
    }

    private let entries = Mutex(Entries())
    private let fragments = Mutex(NodeFragments())
    private let frames = Mutex(EventFrames())

    /// Runs `body` with the rendered event frames, under their lock.
    func withFrames<T>(_ body: (inout EventFrames) -> T) -> T {
        self.frames.withLock { body(&$0) }
    }

    /// Runs `body` with the per-registration renderings, under their lock. Renderings of nodes gone
    /// are dropped by a complete render, or once they outnumber the `liveCount` registrations.
    func withFragments(complete: Bool, liveCount: Int, _ body: (inout NodeFragments) -> Void) {
        self.fragments.withLock { fragments in
            if fragments.count > 2 * liveCount + 1024 { fragments = NodeFragments() }
            if complete { fragments.startSweep() }
            body(&fragments)
            if complete { fragments.finishSweep() }
        }
    }

    /// The list of `generation` and its entity tag, if rendered.
    func list(for generation: UInt64) -> (body: SharedBody, etag: String)? {
        self.entries.withLock { $0.generation == generation ? $0.list : nil }
    }

    func storeList(_ body: SharedBody, etag: String, for generation: UInt64) {
        self.entries.withLock {
            $0.roll(to: generation)
            $0.list = (body, etag)
        }
    }

    func node(_ name: String, for generation: UInt64) -> SharedBody? {
        self.entries.withLock { $0.generation == generation ? $0.nodes[name] : nil }
    }

    func storeNode(_ name: String, _ body: SharedBody, for generation: UInt64) {
        self.entries.withLock {
            $0.roll(to: generation)
            // Bounded: at most one entry per registered name of this generation.
            $0.nodes[name] = body
        }
    }
}
