import CMicroHTTPD
import EPMDPosix
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The C callbacks, nonisolated and outside `main.swift`. They copy C strings into Swift values at
/// once, answer with `RESPMEM_MUST_COPY`, and never trap: every pointer is checked.
enum MicroHTTPDCallbacks {
    /// Marks "headers seen" in `*con_cls` without allocating: requests carry no state of their own.
    private static let seenMarker = 1
    /// Marks a long-poll that was suspended once: when resumed it is answered, never suspended again.
    private static let waitedMarker = 2

    /// libmicrohttpd calls this after the headers, for each body chunk, and once more at the end.
    static let access: MHD_AccessHandlerCallback = { cls, connection, url, method, _, _, uploadSize, state in
        guard let cls, let connection, let url, let method, let uploadSize, let state else { return .NO }
        if state.pointee == nil {
            // First call: headers only. Answering now would make libmicrohttpd drop a body unread.
            state.pointee = UnsafeMutableRawPointer(bitPattern: Self.seenMarker)
            return .YES
        }
        if uploadSize.pointee > 0 {
            // No endpoint takes a body: discard it.
            uploadSize.pointee = 0
            return .YES
        }
        let context = Unmanaged<CallbackContext>.fromOpaque(cls).takeUnretainedValue()
        let request = HTTPRequest(
            method: String(cString: method),
            path: String(cString: url),
            query: Self.values(connection, kind: .GET_ARGUMENT_KIND, lowercased: false),
            headers: Self.headers(connection)
        )
        if let source = context.events, let start = source.eventStreamStart(for: request) {
            return Self.openStream(connection, start: start, source: source, context: context)
        }
        if state.pointee == UnsafeMutableRawPointer(bitPattern: Self.seenMarker),
            !context.stopping.load(ordering: .acquiring), let wait = context.longPoll(request)
        {
            // Counted until `completed` sees the marker: shutdown waits for it.
            state.pointee = UnsafeMutableRawPointer(bitPattern: Self.waitedMarker)
            context.suspended.enter()
            MHD_suspend_connection(connection)
            context.waiters.add(connection: connection, index: wait.index, seconds: wait.seconds)
            return .YES
        }
        let started = context.observer == nil ? 0 : System.monotonicNanoseconds()
        return Self.queue(context.handler(request), on: connection, context: context, started: started)
    }

    /// Copies a response into libmicrohttpd and queues it; tells the observer.
    private static func queue(
        _ response: HTTPResponse,
        on connection: OpaquePointer,
        context: CallbackContext,
        started: UInt64
    ) -> MHD_Result {
        var body = response.body
        let created = body.withUnsafeMutableBytes { raw in
            MHD_create_response_from_buffer(raw.count, raw.baseAddress, .RESPMEM_MUST_COPY)
        }
        guard let created else {
            context.logger.error(
                "libmicrohttpd could not create a response",
                metadata: ["status": "\(response.status)", "bytes": "\(response.body.count)"]
            )
            return .NO
        }
        defer { MHD_destroy_response(created) }
        for header in response.headers {
            _ = MHD_add_response_header(created, header.name, header.value)
        }
        let queued = MHD_queue_response(connection, UInt32(clamping: response.status), created)
        if let observer = context.observer {
            let elapsed = started == 0 ? 0 : System.monotonicNanoseconds() &- started
            observer(response.route, response.status, RequestNumber.seconds(nanoseconds: elapsed))
        }
        return queued
    }

    /// Starts a `/v1/events` stream, or answers 503 with `Retry-After` when the watcher cap is reached.
    private static func openStream(
        _ connection: OpaquePointer,
        start: EventStreamStart,
        source: any EventStreamSource,
        context: CallbackContext
    ) -> MHD_Result {
        let route = source.streamRoute
        guard let watcher = context.streams.open(connection: connection, start: start, source: source) else {
            context.logger.warning(
                "event watcher refused: too many watchers",
                metadata: ["capacity": "\(context.streams.capacity)"]
            )
            let refusal = source.refusal(capacity: context.streams.capacity)
            return Self.queue(refusal, on: connection, context: context, started: 0)
        }
        let cls = Unmanaged.passRetained(watcher).toOpaque()
        guard
            let response = MHD_create_response_from_callback(
                UInt64.max,
                16 * 1024,
                EventStreams.reader,
                cls,
                EventStreams.release
            )
        else {
            Unmanaged<EventStreams.Watcher>.fromOpaque(cls).release()
            context.streams.closed(watcher)
            context.logger.error("libmicrohttpd could not create an event-stream response")
            return .NO
        }
        defer { MHD_destroy_response(response) }
        _ = MHD_add_response_header(response, "Content-Type", "text/event-stream")
        _ = MHD_add_response_header(response, "Cache-Control", "no-cache")
        _ = MHD_add_response_header(response, "X-Accel-Buffering", "no")
        context.observer?(route, 200, 0)
        return MHD_queue_response(connection, 200, response)
    }

    /// Requests carry no allocated state; a long-poll that was suspended leaves the count shutdown waits on.
    static let completed: MHD_RequestCompletedCallback = { cls, _, state, _ in
        guard let state else { return }
        if state.pointee == UnsafeMutableRawPointer(bitPattern: Self.waitedMarker), let cls {
            Unmanaged<CallbackContext>.fromOpaque(cls).takeUnretainedValue().suspended.leave()
        }
        state.pointee = nil
    }

    /// The request headers the router reads, looked up one by one (cheaper than copying them all).
    static let routedHeaders = ["if-none-match", "last-event-id", "accept"]

    private static func headers(_ connection: OpaquePointer) -> [String: String] {
        var headers: [String: String] = [:]
        for name in self.routedHeaders {
            if let value = MHD_lookup_connection_value(connection, .HEADER_KIND, name) {
                headers[name] = String(cString: value)
            }
        }
        return headers
    }

    /// Collects query arguments or headers into a dictionary.
    private static func values(_ connection: OpaquePointer, kind: MHD_ValueKind, lowercased: Bool) -> [String: String] {
        final class Box {
            var values: [String: String] = [:]
            var lowercased = false
        }
        let box = Box()
        box.lowercased = lowercased
        let iterator: MHD_KeyValueIterator = { cls, _, key, value in
            guard let cls, let key else { return .YES }
            let box = Unmanaged<Box>.fromOpaque(cls).takeUnretainedValue()
            let name = String(cString: key)
            box.values[box.lowercased ? name.lowercased() : name] = value.map { String(cString: $0) } ?? ""
            return .YES
        }
        withExtendedLifetime(box) {
            _ = MHD_get_connection_values(connection, kind, iterator, Unmanaged.passUnretained(box).toOpaque())
        }
        return box.values
    }
}
