/// Where a new event stream starts.
public enum EventStreamStart: Equatable, Sendable {
    /// No `Last-Event-ID`: start with a `reset` event carrying the whole table.
    case fresh
    /// Resume after this id (events since then, or a `reset` when it is older than the buffer).
    case after(UInt64)
}

/// What an HTTP daemon needs to run Server-Sent Event streams: the contract between the API (which
/// knows the registry and renders frames) and the libmicrohttpd layer (which only moves bytes).
public protocol EventStreamSource: Sendable {
    /// Whether `request` opens a stream; `nil` means answer it as an ordinary request.
    func eventStreamStart(for request: HTTPRequest) -> EventStreamStart?
    /// The SSE bytes a watcher that saw everything up to `lastID` (or nothing) should receive now,
    /// and the id it has then seen. Empty bytes when there is nothing new.
    func eventStreamChunk(after lastID: UInt64?) -> (bytes: [UInt8], lastID: UInt64)
    /// The first bytes of every stream (the reconnect delay).
    var streamPreamble: [UInt8] { get }
    /// What an idle stream sends every heartbeat interval (a comment line).
    var heartbeat: [UInt8] { get }
    /// The route of a request that opened a stream, as the index the observer is told (see
    /// `MicroHTTPDServer`'s `observer`).
    var streamRouteIndex: Int { get }
    /// The answer when `capacity` streams are open already.
    func refusal(capacity: Int) -> HTTPResponse
}
