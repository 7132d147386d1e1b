import EPMDPosix
import EPMDRegistry

/// One connection of the epmd loop as a value: everything needed to serve it on in another loop (a
/// restarted process, which receives the descriptor by fd passing). Accepting a connection is adopting
/// a fresh snapshot; exporting one takes it out of its loop without closing the descriptor or ending
/// its registration.
public struct EPMDConnectionSnapshot: Equatable, Sendable {
    /// Its id in the exporting loop, kept on adoption (nil for a fresh connection, which gets a new one).
    public var id: ConnectionID?
    /// The descriptor (in the adopting process, after fd passing).
    public var fd: Int32
    /// The peer address.
    public var peer: SocketAddress
    /// Where the exchange stands: the state and an incomplete request's bytes.
    public var machine: EPMDConnectionStateMachine
    /// The registration living on the connection (the state machine is then `kept`).
    public var registration: RegisteredNode?
    /// The unwritten part of a reply being written.
    public var pendingReply: [UInt8]
    /// Monotonic accept time, nanoseconds: the packet timeout keeps counting from it.
    public var acceptedAt: UInt64

    public init(
        id: ConnectionID?,
        fd: Int32,
        peer: SocketAddress,
        machine: EPMDConnectionStateMachine,
        registration: RegisteredNode? = nil,
        pendingReply: [UInt8] = [],
        acceptedAt: UInt64
    ) {
        self.id = id
        self.fd = fd
        self.peer = peer
        self.machine = machine
        self.registration = registration
        self.pendingReply = pendingReply
        self.acceptedAt = acceptedAt
    }

    /// A connection just accepted: nothing received yet.
    public static func fresh(
        fd: Int32,
        peer: SocketAddress,
        isLocalPeer: Bool,
        relaxedCommandCheck: Bool,
        namesLocalOnly: Bool = false,
        acceptedAt: UInt64
    ) -> EPMDConnectionSnapshot {
        EPMDConnectionSnapshot(
            id: nil,
            fd: fd,
            peer: peer,
            machine: EPMDConnectionStateMachine(
                isLocalPeer: isLocalPeer,
                relaxedCommandCheck: relaxedCommandCheck,
                namesLocalOnly: namesLocalOnly
            ),
            acceptedAt: acceptedAt
        )
    }
}
