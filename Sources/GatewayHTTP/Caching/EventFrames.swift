import EPMDRegistry

/// The SSE frames of recent events, by id (ids are contiguous: a ring indexed by id).
struct EventFrames {
    private var slots: [(id: UInt64, bytes: [UInt8])?] = Array(repeating: nil, count: 4096)

    mutating func frame(for event: RegistryEvent) -> [UInt8] {
        let slot = Int(truncatingIfNeeded: event.id % UInt64(truncatingIfNeeded: self.slots.count))
        if let cached = self.slots[slot], cached.id == event.id { return cached.bytes }
        var json = JSONWriter(capacity: 384)
        json.event(event)
        var bytes: [UInt8] = []
        ServerSentEvents.appendFrame(to: &bytes, event: event.name, id: event.id, data: json.bytes)
        self.slots[slot] = (event.id, bytes)
        return bytes
    }
}
