import EPMDProtocol
import EPMDRegistry
import Synchronization

/// The rendered `epmd_node_info` block, kept for the registry's generation, and each registration's
/// line, kept while it lives.
///
/// A registration never changes while it lives, so the block is stale only once the generation moves
/// on: a burst of scrapes between two changes renders it once and copies it after (with 1,000 nodes of
/// 200-byte names, about 260 KB whose rendering took most of a scrape's time). A new generation reuses
/// the lines of the registrations still alive and renders only the new ones, so registration churn
/// during a burst does not bring the full render back either.
final class NodeInfoCache: Sendable {
    private struct State {
        var generation: UInt64?
        var block: [UInt8] = []
        /// Each live registration's line, by its sequence number (unique per registration).
        var lines: [UInt64: [UInt8]] = [:]
        /// Lines rendered (not reused) so far, for tests.
        var rendered = 0
    }

    private let state = Mutex(State())

    /// Appends the block of `registry`'s generation now, making it if that generation has none yet.
    /// Made under this cache's lock, so concurrent scrapes of a new generation make it once.
    func append(from registry: NodeRegistry, to buffer: inout [UInt8]) {
        let generation = registry.generation
        let block = self.state.withLock { state -> [UInt8] in
            if state.generation == generation { return state.block }
            let snapshot = registry.versionedSnapshot()
            var block: [UInt8] = []
            block.reserveCapacity(state.block.count + 1024)
            Self.appendHeader(to: &block)
            // Bounded: only the lines of this snapshot's registrations are kept.
            var lines: [UInt64: [UInt8]] = [:]
            lines.reserveCapacity(snapshot.nodes.count)
            for node in snapshot.nodes {
                let line: [UInt8]
                if let kept = state.lines[node.sequence] {
                    line = kept
                } else {
                    line = Self.line(node)
                    state.rendered += 1
                }
                lines[node.sequence] = line
                block.append(contentsOf: line)
            }
            state.generation = snapshot.generation
            state.block = block
            state.lines = lines
            return block
        }
        buffer.append(contentsOf: block)
    }

    /// The generation of the block held (nil: none made yet) and how many lines were rendered so far.
    var statistics: (generation: UInt64?, linesRendered: Int, linesKept: Int) {
        self.state.withLock { ($0.generation, $0.rendered, $0.lines.count) }
    }

    /// `# HELP` and `# TYPE` of the family.
    static func appendHeader(to buffer: inout [UInt8]) {
        TextExposition.appendHeader(
            "epmd_node_info",
            help: "One series per registered node (opt-in); the value is always 1.",
            type: "gauge",
            to: &buffer
        )
    }

    /// `epmd_node_info{name="...",port="...",type="..."} 1` and a line feed, the name escaped.
    static func line(_ node: RegisteredNode) -> [UInt8] {
        var line: [UInt8] = []
        line.reserveCapacity(node.name.count + 56)
        line.append(contentsOf: "epmd_node_info{name=\"".utf8)
        TextExposition.appendLabelValue(node.name, to: &line)
        line.append(contentsOf: "\",port=\"".utf8)
        TextExposition.appendDecimal(node.port, to: &line)
        line.append(contentsOf: "\",type=\"".utf8)
        line.append(contentsOf: node.request.type.label.utf8)
        line.append(contentsOf: "\"} 1\n".utf8)
        return line
    }
}
