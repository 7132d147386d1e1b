import EPMDRegistry
import Synchronization

/// Rendered bodies, valid for one registry generation: the unfiltered `/v1/nodes`, and each node's
/// JSON. A registration never changes while it lives, so a body is stale only once the generation
/// moves on; then everything is dropped.
final class NodeListCache: Sendable {
    private struct Entries {
        var generation: UInt64 = .max
        var list: [UInt8]?
        var nodes: [[UInt8]: [UInt8]] = [:]

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

    func body(for generation: UInt64) -> [UInt8]? {
        self.entries.withLock { $0.generation == generation ? $0.list : nil }
    }

    func store(_ body: [UInt8], for generation: UInt64) {
        self.entries.withLock {
            $0.roll(to: generation)
            $0.list = body
        }
    }

    func node(_ name: [UInt8], for generation: UInt64) -> [UInt8]? {
        self.entries.withLock { $0.generation == generation ? $0.nodes[name] : nil }
    }

    func storeNode(_ name: [UInt8], _ body: [UInt8], for generation: UInt64) {
        self.entries.withLock {
            $0.roll(to: generation)
            // Bounded: at most one entry per registered name of this generation.
            $0.nodes[name] = body
        }
    }
}
