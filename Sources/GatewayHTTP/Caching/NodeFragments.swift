import EPMDRegistry

/// Each live registration's `Node` JSON, rendered once. Keyed by the registration's sequence number
/// (unique per registration, so a name registered again is rendered again). Bounded: a render of the
/// whole table keeps only what it used.
struct NodeFragments {
    private var rendered: [UInt64: [UInt8]] = [:]
    private var used: [UInt64: [UInt8]]?

    var count: Int { self.rendered.count }

    mutating func startSweep() { self.used = [:] }

    mutating func finishSweep() {
        if let used = self.used { self.rendered = used }
        self.used = nil
    }

    /// Appends the node's JSON, rendering it on first use.
    mutating func append(_ node: RegisteredNode, to json: inout JSONWriter) {
        let fragment: [UInt8]
        if let cached = self.rendered[node.sequence] {
            fragment = cached
        } else {
            var single = JSONWriter(capacity: 256)
            single.node(node)
            fragment = single.bytes
            self.rendered[node.sequence] = fragment
        }
        self.used?[node.sequence] = fragment
        json.append(fragment)
    }
}
