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
    static let access: MHD_AccessHandlerCallback = { cls, connection, url, method, version, _, uploadSize, state in
        guard let cls, let connection, let url, let method, let uploadSize, let state else { return .NO }
        if state.pointee == nil {
            // First call: headers only, so the head met its deadline. A head that could smuggle a
            // request, or that carries a body, is answered now and its connection closed; otherwise
            // wait for the end of the request.
            state.pointee = UnsafeMutableRawPointer(bitPattern: Self.seenMarker)
            let context = Unmanaged<CallbackContext>.fromOpaque(cls).takeUnretainedValue()
            context.connections.headComplete(connection: Self.address(connection))
            if let refusal = Self.untrustedClient(connection, cls: cls) { return refusal }  // mutual TLS
            if let refusal = RequestFraming.check(connection, version: version) {
                var response = HTTPResponse.problem(refusal.status, refusal.title, refusal.detail)
                response.headers.append(("Connection", "close"))
                return Self.queue(response, on: connection, context: context, started: 0)
            }
            return .YES
        }
        if uploadSize.pointee > 0 {
            // No endpoint takes a body: discard it.
            uploadSize.pointee = 0
            return .YES
        }
        let context = Unmanaged<CallbackContext>.fromOpaque(cls).takeUnretainedValue()
        let request = HTTPRequest(
            method: Self.method(method),
            path: String(cString: url),
            values: ConnectionValues(connection: UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(connection))))
        )
        // Asked through a closure: no copy of the source existential on every request.
        if let streamStart = context.streamStart, let start = streamStart(request), let source = context.events {
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

    /// The method as a String: `GET` and `HEAD` (nearly every request) as constants, without decoding;
    /// any other copied.
    private static func method(_ method: UnsafePointer<CChar>) -> String {
        method.withMemoryRebound(to: UInt8.self, capacity: 5) { bytes in
            if bytes[0] == UInt8(ascii: "G") {
                if bytes[1] == UInt8(ascii: "E") && bytes[2] == UInt8(ascii: "T") && bytes[3] == 0 { return "GET" }
            } else if bytes[0] == UInt8(ascii: "H") {
                if bytes[1] == UInt8(ascii: "E") && bytes[2] == UInt8(ascii: "A") && bytes[3] == UInt8(ascii: "D")
                    && bytes[4] == 0
                {
                    return "HEAD"
                }
            }
            return String(cString: bytes)
        }
    }

    /// Queues a response and tells the observer. A shared body is served by its libmicrohttpd response
    /// object, made once (`RESPMEM_MUST_COPY`: libmicrohttpd owns its copy and frees it with the object,
    /// once the cache dropped it and no connection sends it any more); any other body is copied.
    static func queue(
        _ response: HTTPResponse,
        on connection: OpaquePointer,
        context: CallbackContext,
        started: UInt64
    ) -> MHD_Result {
        let queued: MHD_Result
        if let shared = response.shared {
            let attachment = shared.attachment { Self.persistentResponse(shared, context: context) }
            guard let attachment, let native = OpaquePointer(bitPattern: attachment.address) else { return .NO }
            queued = MHD_queue_response(connection, UInt32(clamping: response.status), native)
        } else {
            guard let created = Self.makeResponse(response.body, headers: response.headers, context: context) else {
                return .NO
            }
            queued = MHD_queue_response(connection, UInt32(clamping: response.status), created)
            MHD_destroy_response(created)
        }
        if let observer = context.observer {
            let elapsed = started == 0 ? 0 : System.monotonicNanoseconds() &- started
            observer(response.routeIndex, response.status, RequestNumber.seconds(nanoseconds: elapsed))
        }
        return queued
    }

    /// A libmicrohttpd response with a copy of `body` and `headers`; nil (logged) when it cannot be made.
    private static func makeResponse(
        _ body: [UInt8],
        headers: [(name: String, value: String)],
        context: CallbackContext
    ) -> OpaquePointer? {
        var body = body
        let created = body.withUnsafeMutableBytes { raw in
            MHD_create_response_from_buffer(raw.count, raw.baseAddress, .RESPMEM_MUST_COPY)
        }
        guard let created else {
            context.logger.error("libmicrohttpd could not create a response", metadata: ["bytes": "\(body.count)"])
            return nil
        }
        for header in headers {
            _ = MHD_add_response_header(created, header.name, header.value)
        }
        return created
    }

    /// The response object kept with a shared body; destroyed (one reference less) when the body goes.
    private static func persistentResponse(_ shared: SharedBody, context: CallbackContext) -> NativeAttachment? {
        guard let created = Self.makeResponse(shared.bytes, headers: shared.headers, context: context) else {
            return nil
        }
        return NativeAttachment(address: UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(created)))) { address in
            if let response = OpaquePointer(bitPattern: address) { MHD_destroy_response(response) }
        }
    }

    /// Starts a `/v1/events` stream, or answers 503 with `Retry-After` when the watcher cap is reached.
    private static func openStream(
        _ connection: OpaquePointer,
        start: EventStreamStart,
        source: any EventStreamSource,
        context: CallbackContext
    ) -> MHD_Result {
        let route = source.streamRouteIndex
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

    /// Requests carry no allocated state; a long-poll that was suspended leaves the count shutdown waits
    /// on. On a kept-alive connection the next request head's deadline starts now.
    static let completed: MHD_RequestCompletedCallback = { cls, connection, state, _ in
        guard let cls else { return }
        let context = Unmanaged<CallbackContext>.fromOpaque(cls).takeUnretainedValue()
        if let connection { context.connections.requestCompleted(connection: Self.address(connection)) }
        guard let state else { return }
        if state.pointee == UnsafeMutableRawPointer(bitPattern: Self.waitedMarker) {
            context.suspended.leave()
        }
        state.pointee = nil
    }

    /// The start of libmicrohttpd's line for an error it answers itself (431, 414, 400, ...) before the
    /// access handler sees the request; the status follows, then the connection is closed.
    static let libraryErrorPrefix = "Error processing request (HTTP response code is "

    /// `MHD_OPTION_EXTERNAL_LOGGER`: libmicrohttpd's own messages. An error it answered itself is
    /// counted (``ConnectionTable/answeredByLibrary(status:)``); any other message is logged at trace
    /// level (epmd's `-d -d -d`), formatted only when that level is on.
    static let log: MHD_LogCallback = { cls, format, arguments in
        guard let cls, let format, let arguments else { return }
        let context = Unmanaged<CallbackContext>.fromOpaque(cls).takeUnretainedValue()
        let isError = Self.libraryErrorPrefix.withCString { strncmp(format, $0, strlen($0)) == 0 }
        guard isError || context.logger.logLevel <= .trace else { return }
        let text = withUnsafeTemporaryAllocation(of: CChar.self, capacity: 512) { buffer -> String in
            guard let base = buffer.baseAddress, vsnprintf(base, buffer.count, format, arguments) >= 0 else {
                return ""
            }
            base[buffer.count - 1] = 0
            return String(cString: base)
        }
        if isError, let status = Self.libraryErrorStatus(text) {
            context.connections.answeredByLibrary(status: status)
        } else {
            context.logger.trace("libmicrohttpd: \(text.prefix(400))")
        }
    }

    /// The status in libmicrohttpd's error line (three digits after ``libraryErrorPrefix``).
    static func libraryErrorStatus(_ line: String) -> Int? {
        guard line.hasPrefix(Self.libraryErrorPrefix) else { return nil }
        let digits = line.utf8.dropFirst(Self.libraryErrorPrefix.utf8.count).prefix { $0 >= 48 && $0 <= 57 }
        guard digits.count == 3 else { return nil }
        return digits.reduce(0) { $0 * 10 + Int(truncatingIfNeeded: $1 - 48) }
    }

    /// libmicrohttpd's accept policy: the per-address share and the connection limit, refusals counted.
    static let acceptPolicy: MHD_AcceptPolicyCallback = { cls, address, length in
        guard let cls else { return .YES }
        let context = Unmanaged<CallbackContext>.fromOpaque(cls).takeUnretainedValue()
        let peer = address.flatMap { PeerAddress($0, length: length) }
        return context.connections.admit(peer, thread: ConnectionTable.currentThread) == nil ? .YES : .NO
    }

    /// `MHD_OPTION_NOTIFY_CONNECTION`: a connection started (its head's deadline starts) or is about to
    /// be closed (called before libmicrohttpd closes its socket).
    static let connection: MHD_NotifyConnectionCallback = { cls, connection, _, code in
        guard let cls, let connection else { return }
        let context = Unmanaged<CallbackContext>.fromOpaque(cls).takeUnretainedValue()
        switch code {
        case .CONNECTION_NOTIFY_STARTED:
            context.connections.started(
                connection: Self.address(connection),
                fd: cmhd_connection_fd(connection),
                thread: ConnectionTable.currentThread
            )
        case .CONNECTION_NOTIFY_CLOSED:
            context.connections.closed(connection: Self.address(connection))
        }
    }

    /// A connection's address, its key in the connection table.
    private static func address(_ connection: OpaquePointer) -> UInt {
        UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(connection)))
    }
}

/// A request's query arguments and headers, looked up in libmicrohttpd's buffers by name when a handler
/// asks (`MHD_lookup_connection_value_n`): nothing is copied for what no handler reads. Valid only
/// during the access callback that made it (the connection's buffers are libmicrohttpd's).
struct ConnectionValues: HTTPRequestValues {
    /// The `MHD_Connection`, as an address.
    let connection: UInt

    func argument(_ name: String) -> String? { self.lookup(.GET_ARGUMENT_KIND, name) }

    func header(_ name: String) -> String? { self.lookup(.HEADER_KIND, name) }

    private func lookup(_ kind: MHD_ValueKind, _ name: String) -> String? {
        guard let connection = OpaquePointer(bitPattern: self.connection) else { return nil }
        var value: UnsafePointer<CChar>?
        var size = 0
        let found = name.withCString { key in
            MHD_lookup_connection_value_n(connection, kind, key, name.utf8.count, &value, &size)
        }
        guard found == .YES else { return nil }
        guard let value else { return "" }
        return value.withMemoryRebound(to: UInt8.self, capacity: size) { bytes in
            String(decoding: UnsafeBufferPointer(start: bytes, count: size), as: UTF8.self)
        }
    }
}
