/// Reassembles one length-prefixed request from the bytes of one connection, as C epmd frames it:
/// a 2-byte big-endian length (1...3057), then exactly that many bytes. One request per connection:
/// bytes past the announced length are an error, not a second request.
public struct EPMDFrameAssembler: Sendable {
    /// What the bytes received so far amount to.
    public enum Progress: Equatable, Sendable {
        /// The request is not complete yet.
        case needMore
        /// The whole body has arrived.
        case complete([UInt8])
        /// The request is malformed; close without a reply.
        case invalid(EPMDProtocolError)
    }

    private var buffer: [UInt8] = []
    private var expected: Int?

    public init() {}

    /// Number of bytes buffered so far (header included).
    public var bufferedCount: Int { self.buffer.count }

    /// Adds bytes received from the peer.
    /// - Parameter bytes: the newly received bytes.
    /// - Returns: whether the request is complete, needs more bytes, or is malformed.
    public mutating func append<Bytes: Collection>(_ bytes: Bytes) -> Progress where Bytes.Element == UInt8 {
        if self.buffer.isEmpty {
            // Fast path: the whole request in one read, no copy into the buffer first.
            let progress = Self.frame(bytes)
            if progress == .needMore { self.buffer.append(contentsOf: bytes) }
            return progress
        }
        self.buffer.append(contentsOf: bytes)
        return Self.frame(self.buffer)
    }

    private static func frame<Bytes: Collection>(_ bytes: Bytes) -> Progress where Bytes.Element == UInt8 {
        guard bytes.count >= 2 else { return .needMore }
        let first = bytes.startIndex
        let second = bytes.index(after: first)
        let length = Int(bytes[first]) << 8 | Int(bytes[second])
        guard length >= 1, length <= EPMDLimits.maxRequestLength else { return .invalid(.invalidLength) }
        let total = length + 2
        if bytes.count > total { return .invalid(.overrun) }
        if bytes.count < total { return .needMore }
        return .complete(Array(bytes.dropFirst(2)))
    }
}
