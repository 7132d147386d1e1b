import EPMDProtocol
import EPMDRegistry

/// Where a new event stream starts.
public enum EventStreamStart: Equatable, Sendable {
    /// No `Last-Event-ID`: start with a `reset` event carrying the whole table.
    case fresh
    /// Resume after this id (events since then, or a `reset` when it is older than the buffer).
    case after(UInt64)
}

/// What the daemon needs from the router to run `/v1/events` streams.
public protocol EventStreamSource: Sendable {
    /// Whether `request` opens a stream; `nil` means answer it with `respond(to:)` as usual.
    func eventStreamStart(for request: HTTPRequest) -> EventStreamStart?
    /// The SSE bytes a watcher that saw everything up to `lastID` (or nothing) should receive now,
    /// and the id it has then seen. Empty bytes when there is nothing new.
    func eventStreamChunk(after lastID: UInt64?) -> (bytes: [UInt8], lastID: UInt64)
}

extension HTTPRouter: EventStreamSource {
    public func eventStreamStart(for request: HTTPRequest) -> EventStreamStart? {
        // `follow=false` (a finite snapshot) and invalid parameters are answered by `respond(to:)`.
        guard request.method == "GET", request.path == "/v1/events", request.query["follow"] ?? "true" == "true"
        else { return nil }
        return Self.streamStart(request)
    }

    /// Where a stream starts: after `Last-Event-ID` (the header the browser's EventSource sends on
    /// reconnects, or the `lastEventId` query form for clients that cannot set headers); an id that
    /// is not a number starts afresh.
    static func streamStart(_ request: HTTPRequest) -> EventStreamStart {
        let raw = request.header("last-event-id") ?? request.query["lastEventId"]
        guard let raw, let id = RequestNumber.eventID(raw.utf8) else { return .fresh }
        return .after(id)
    }

    /// `GET /v1/events` answered as one response: with `follow=false` (what a stream would send first,
    /// then the end), or for `HEAD`.
    func eventSnapshot(_ request: HTTPRequest) -> HTTPResponse {
        let follow = request.query["follow"] ?? "true"
        guard follow == "true" || follow == "false" else {
            return Self.problem(400, "Bad Request", "follow must be true or false.")
        }
        var lastID: UInt64?
        if case .after(let id) = Self.streamStart(request) { lastID = id }
        return HTTPResponse(
            status: 200,
            headers: [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")],
            body: Self.streamPreamble + self.eventStreamChunk(after: lastID).bytes
        )
    }

    public func eventStreamChunk(after lastID: UInt64?) -> (bytes: [UInt8], lastID: UInt64) {
        let since: RegistryEventsSince
        if let lastID {
            since = self.registry.events(after: lastID)
        } else {
            let (generation, nodes) = self.registry.versionedSnapshot()
            since = .reset(generation: generation, nodes: nodes)
        }
        switch since {
        case .events(let events):
            guard let last = events.last else { return ([], lastID ?? 0) }
            var bytes: [UInt8] = []
            bytes.reserveCapacity(events.count * 400)
            // Every watcher sends the same frame for an event: rendered once, by the first to need it.
            self.cache.withFrames { frames in
                for event in events { bytes += frames.frame(for: event) }
            }
            return (bytes, last.id)
        case .reset(let generation, let nodes):
            var json = JSONWriter(capacity: 64 + nodes.count * 256)
            json.raw("{\"generation\":")
            json.number(generation)
            json.raw(",\"nodes\":")
            self.appendNodeArray(nodes, to: &json, complete: true)
            json.raw("}")
            var bytes: [UInt8] = []
            Self.appendFrame(to: &bytes, event: "reset", id: generation, data: json.bytes)
            return (bytes, generation)
        }
    }

    /// The first bytes of every stream: the reconnect delay the browser should use.
    static let streamPreamble = Array("retry: 2000\n\n".utf8)

    /// The heartbeat: a comment line, which clients ignore and which detects dead peers.
    static let heartbeat = Array(": ping\n\n".utf8)

    /// One SSE frame. JSON written by `JSONWriter` has no raw newlines, so `data` is one line.
    static func appendFrame(to bytes: inout [UInt8], event: String, id: UInt64, data: [UInt8]) {
        bytes += Array("event: \(event)\nid: \(id)\ndata: ".utf8)
        bytes += data
        bytes += [10, 10]
    }

    /// `GET /v1/events/history`: the buffered events, oldest first, with flap counts per name.
    func history() -> HTTPResponse {
        let history = self.registry.history()
        var json = JSONWriter(capacity: 256 + history.events.count * 400)
        json.raw("{\"generation\":")
        json.number(history.generation)
        json.raw(",\"capacity\":")
        json.number(history.capacity)
        json.raw(",\"flapWindowSeconds\":")
        json.seconds(history.flapWindow)
        json.raw(",\"events\":[")
        for (index, event) in history.events.enumerated() {
            if index > 0 { json.raw(",") }
            json.event(event)
        }
        json.raw("],\"flaps\":[")
        let flaps = history.flapsByName.sorted {
            $0.value != $1.value ? $0.value > $1.value : Self.precedes($0.key, $1.key)
        }
        for (index, flap) in flaps.enumerated() {
            if index > 0 { json.raw(",") }
            json.raw("{\"name\":")
            json.string(flap.key)
            json.raw(",\"count\":")
            json.number(flap.value)
            json.raw("}")
        }
        json.raw("]}")
        return Self.json(200, json)
    }
}

/// The SSE frames of recent events, by id (ids are contiguous: a ring indexed by id).
struct EventFrames {
    private var slots: [(id: UInt64, bytes: [UInt8])?] = Array(repeating: nil, count: 4096)

    mutating func frame(for event: RegistryEvent) -> [UInt8] {
        let slot = Int(truncatingIfNeeded: event.id % UInt64(truncatingIfNeeded: self.slots.count))
        if let cached = self.slots[slot], cached.id == event.id { return cached.bytes }
        var json = JSONWriter(capacity: 384)
        json.event(event)
        var bytes: [UInt8] = []
        HTTPRouter.appendFrame(to: &bytes, event: event.name, id: event.id, data: json.bytes)
        self.slots[slot] = (event.id, bytes)
        return bytes
    }
}

extension JSONWriter {
    /// The `Event` object of the API (an SSE `data:` line and an entry of the history).
    mutating func event(_ event: RegistryEvent) {
        self.raw("{\"id\":")
        self.number(event.id)
        switch event.kind {
        case .registered:
            self.raw(",\"type\":\"registered\",\"time\":")
            self.timestamp(event.time, microseconds: true)
        case .unregistered(let reason):
            self.raw(",\"type\":\"unregistered\",\"time\":")
            self.timestamp(event.time, microseconds: true)
            self.raw(",\"reason\":")
            self.string(reason.rawValue)
            self.raw(",\"lifetimeSeconds\":")
            self.seconds(event.lifetime ?? 0)
            self.raw(event.isFlap ? ",\"flapping\":true" : ",\"flapping\":false")
        }
        self.raw(",\"node\":")
        self.node(event.node)
        self.raw("}")
    }
}
