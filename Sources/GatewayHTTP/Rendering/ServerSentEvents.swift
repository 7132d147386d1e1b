/// The bytes of a Server-Sent Events stream (`text/event-stream`).
enum ServerSentEvents {
    /// The first bytes of every stream: the reconnect delay the browser should use.
    static let preamble = Array("retry: 2000\n\n".utf8)

    /// The heartbeat: a comment line, which clients ignore and which detects dead peers.
    static let heartbeat = Array(": ping\n\n".utf8)

    /// Appends one frame. JSON written by `JSONWriter` has no raw newlines, so `data` is one line.
    static func appendFrame(to bytes: inout [UInt8], event: String, id: UInt64, data: [UInt8]) {
        bytes += Array("event: ".utf8)
        bytes += Array(event.utf8)
        bytes += Array("\nid: ".utf8)
        var number = JSONWriter(capacity: 20)
        number.number(id)
        bytes += number.bytes
        bytes += Array("\ndata: ".utf8)
        bytes += data
        bytes += [10, 10]
    }
}
