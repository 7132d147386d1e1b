import EPMDPosix
import EPMDProtocol
import EPMDRegistry

// A connection snapshot as bytes, without its descriptor (which travels beside it by fd passing).

extension SocketAddress {
    /// Writes the address: a tag, then its fields.
    public func encode(into writer: inout ByteWriter) {
        switch self {
        case .v4(let address, let port):
            writer.u8(4)
            writer.u32(address)
            writer.u16(port)
        case .v6(let address, let port, let scope):
            writer.u8(6)
            writer.u64(address.high)
            writer.u64(address.low)
            writer.u16(port)
            writer.u32(scope)
        case .other:
            writer.u8(0)
        }
    }

    /// Reads what `encode(into:)` wrote.
    public init(from reader: inout ByteReader) throws(StateDecodingError) {
        switch try reader.u8() {
        case 4:
            self = .v4(address: try reader.u32(), port: try reader.u16())
        case 6:
            let words = IPv6Words(high: try reader.u64(), low: try reader.u64())
            self = .v6(address: words, port: try reader.u16(), scope: try reader.u32())
        case 0:
            self = .other
        case let other:
            throw reader.error("unknown address family tag \(other)")
        }
    }
}

extension EPMDConnectionStateMachine {
    /// Writes the state, the access flags and the bytes of an incomplete request.
    public func encode(into writer: inout ByteWriter) {
        switch self.state {
        case .receiving:
            writer.u8(0)
        case .replying(let keep):
            writer.u8(1)
            writer.bool(keep)
        case .kept:
            writer.u8(2)
        case .closed:
            writer.u8(3)
        }
        writer.bool(self.isLocalPeer)
        writer.bool(self.relaxedCommandCheck)
        writer.bool(self.namesLocalOnly)
        writer.blob(self.buffered)
    }

    /// Reads what `encode(into:)` wrote. A partial request longer than a request can be is refused.
    public init(from reader: inout ByteReader) throws(StateDecodingError) {
        let state: State
        switch try reader.u8() {
        case 0: state = .receiving
        case 1: state = .replying(keep: try reader.bool())
        case 2: state = .kept
        case 3: state = .closed
        case let other: throw reader.error("unknown connection state \(other)")
        }
        let isLocalPeer = try reader.bool()
        let relaxed = try reader.bool()
        let namesLocalOnly = try reader.bool()
        // A buffer this long would have been framed or refused already: never a partial request.
        let buffered = try reader.blob(bound: EPMDFrameAssembler.capacity - 1)
        self.init(
            isLocalPeer: isLocalPeer,
            relaxedCommandCheck: relaxed,
            namesLocalOnly: namesLocalOnly,
            state: state,
            buffered: buffered
        )
    }
}

extension EPMDConnectionSnapshot {
    /// The longest unwritten reply an image may carry (a NAMES or DUMP reply of a very large table).
    public static let maximumPendingReply = 64 << 20

    /// Writes everything but the descriptor.
    public func encode(into writer: inout ByteWriter) {
        writer.bool(self.id != nil)
        if let id = self.id { writer.u64(id.rawValue) }
        self.peer.encode(into: &writer)
        self.machine.encode(into: &writer)
        writer.bool(self.registration != nil)
        self.registration?.encode(into: &writer)
        writer.blob(self.pendingReply)
        writer.u64(self.acceptedAt)
    }

    /// Reads what `encode(into:)` wrote, for the descriptor `fd` received beside it.
    /// - Throws: `StateDecodingError` for a damaged image, or a registration on a connection that
    ///   is not a kept one.
    public init(from reader: inout ByteReader, fd: Int32) throws(StateDecodingError) {
        let id = try reader.bool() ? ConnectionID(try reader.u64()) : nil
        let peer = try SocketAddress(from: &reader)
        let machine = try EPMDConnectionStateMachine(from: &reader)
        let registration = try reader.bool() ? try RegisteredNode(from: &reader) : nil
        if registration != nil {
            switch machine.state {
            case .kept, .replying(keep: true): break
            default: throw reader.error("a registration on a connection that is not kept")
            }
            guard id != nil else { throw reader.error("a registration on a connection without an id") }
        }
        let pendingReply = try reader.blob(bound: Self.maximumPendingReply)
        let acceptedAt = try reader.u64()
        self.init(
            id: id,
            fd: fd,
            peer: peer,
            machine: machine,
            registration: registration,
            pendingReply: pendingReply,
            acceptedAt: acceptedAt
        )
    }
}
