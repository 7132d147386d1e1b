import EPMDProtocol
import EPMDRegistry

/// `/v1/events` (Server-Sent Events, or a finite snapshot with `follow=false`) and `/v1/events/history`.
struct EventsHandler: Sendable {
    let registry: NodeRegistry
    let cache: NodeListCache
    let nodes: NodesHandler

    /// Whether `request` opens a stream: `GET /v1/events` without `follow=false`. `follow=false` (a
    /// finite snapshot) and invalid parameters are answered as ordinary requests.
    func streamStart(for request: HTTPRequest) -> EventStreamStart? {
        guard request.method == "GET", request.path == "/v1/events", request.query["follow"] ?? "true" == "true"
        else { return nil }
        return Self.start(request)
    }

    /// Where a stream starts: after `Last-Event-ID` (the header the browser's EventSource sends on
    /// reconnects, or the `lastEventId` query form for clients that cannot set headers); an id that
    /// is not a number starts afresh.
    static func start(_ request: HTTPRequest) -> EventStreamStart {
        let raw = request.header("last-event-id") ?? request.query["lastEventId"]
        guard let raw, let id = RequestNumber.eventID(raw.utf8) else { return .fresh }
        return .after(id)
    }

    /// `GET /v1/events` answered as one response: with `follow=false` (what a stream would send first,
    /// then the end), or for `HEAD`.
    func snapshot(_ request: HTTPRequest) -> HTTPResponse {
        let follow = request.query["follow"] ?? "true"
        guard follow == "true" || follow == "false" else {
            return .problem(400, "Bad Request", "follow must be true or false.")
        }
        var lastID: UInt64?
        if case .after(let id) = Self.start(request) { lastID = id }
        return HTTPResponse(
            status: 200,
            headers: [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")],
            body: ServerSentEvents.preamble + self.chunk(after: lastID).bytes
        )
    }

    /// The SSE bytes for a watcher that saw everything up to `lastID` (nil: it needs a `reset`).
    func chunk(after lastID: UInt64?) -> (bytes: [UInt8], lastID: UInt64) {
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
            self.nodes.appendNodeArray(nodes, to: &json, complete: true)
            json.raw("}")
            var bytes: [UInt8] = []
            ServerSentEvents.appendFrame(to: &bytes, event: "reset", id: generation, data: json.bytes)
            return (bytes, generation)
        }
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
            $0.value != $1.value ? $0.value > $1.value : NodesHandler.precedes($0.key, $1.key)
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
        return .json(200, json)
    }
}
