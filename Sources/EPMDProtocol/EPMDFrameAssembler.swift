/// Reassembles one length-prefixed request from the bytes of one connection, as C epmd frames it:
/// a 2-byte big-endian length (1...3057), then exactly that many bytes. One request per connection:
/// bytes past the announced length are an error, not a second request.
public struct EPMDFrameAssembler: Equatable, Sendable {
    /// What the bytes received so far amount to.
    public enum Progress: Equatable, Sendable {
        /// The request is not complete yet.
        case needMore
        /// The whole body has arrived.
        case complete([UInt8])
        /// The request is malformed; close without a reply.
        case invalid(EPMDProtocolError)
    }

    /// The most bytes one request can take, length prefix included (C epmd's input buffer: it never
    /// reads more than this before it decides, so a peer that sent more sees a reset at the close).
    public static let capacity = EPMDLimits.maxRequestLength + 2

    private var buffer: [UInt8] = []

    public init() {}

    /// Number of bytes buffered so far (header included).
    public var bufferedCount: Int { self.buffer.count }

    /// The bytes buffered so far (an incomplete request), for exporting a connection.
    public var buffered: [UInt8] { self.buffer }

    /// An assembler that already holds `buffered` (an adopted connection's partial request).
    public init(buffered: [UInt8]) { self.buffer = buffered }

    /// Adds bytes received from the peer. Concrete on purpose: this is the hot path of every lookup,
    /// and a generic entry point would run unspecialised across the module boundary.
    /// - Parameter bytes: the newly received bytes (a slice of the reader's buffer: no copy).
    /// - Returns: whether the request is complete, needs more bytes, or is malformed.
    public mutating func append(_ bytes: ArraySlice<UInt8>) -> Progress {
        if self.buffer.isEmpty {
            // Fast path: the whole request in one read, framed straight from the read buffer.
            let progress = Self.frame(bytes)
            if progress == .needMore { self.buffer.append(contentsOf: bytes) }
            return progress
        }
        self.buffer.append(contentsOf: bytes)
        return Self.frame(self.buffer[...])
    }

    /// Adds bytes received from the peer (convenience for tests and clients).
    public mutating func append(_ bytes: [UInt8]) -> Progress {
        self.append(bytes[...])
    }

    private static func frame(_ bytes: ArraySlice<UInt8>) -> Progress {
        guard bytes.count >= 2 else { return .needMore }
        let start = bytes.startIndex
        let length = Int(bytes[start]) << 8 | Int(bytes[start + 1])
        guard length >= 1, length <= EPMDLimits.maxRequestLength else { return .invalid(.invalidLength) }
        let total = length + 2
        if bytes.count > total { return .invalid(.overrun) }
        if bytes.count < total { return .needMore }
        return .complete(Array(bytes[(start + 2)..<(start + total)]))
    }
}
