import EPMDPosix
import EPMDRegistry

/// One connection, owned by the loop thread: its descriptor, its state machine, its registration and
/// its reply in flight.
final class EPMDConnection {
    let id: ConnectionID
    let fd: Int32
    /// Tells this connection's epoll events from those of an earlier one with the same descriptor.
    let serial: UInt32
    let peer: SocketAddress
    var machine: EPMDConnectionStateMachine
    /// The reply being written, and how much of it is written.
    var outbound: [UInt8] = []
    var outboundOffset = 0
    /// What epoll watches the descriptor for.
    var interest: EpollEvents = EventLoop.readInterest
    /// The registration that lives on this connection, once ALIVE2 succeeded.
    var registration: RegisteredNode?
    /// When a reply held back by `-delay_write` is due (monotonic nanoseconds).
    var writeAt: UInt64 = 0
    /// Whether the descriptor is in the epoll set yet (it is not during the speculative first read).
    var watched = false
    /// When the packet timeout closes it (monotonic nanoseconds), while it is in the timed list.
    var deadline: UInt64 = 0
    /// Monotonic accept time (request latency and the packet timeout run from here). The monotonic
    /// clock is the machine's, so the value stays meaningful in another process that adopts it.
    let acceptedAt: UInt64
    /// Links of the loop's `TimedList`.
    var timedNext: EPMDConnection?
    unowned var timedPrevious: EPMDConnection?
    var isTimed = false
    /// The peer's address without the port: the per-address cap counts by it.
    let peerKey: PeerKey
    /// Links of the same list's chain for this peer address.
    var peerNext: EPMDConnection?
    unowned var peerPrevious: EPMDConnection?

    init(
        id: ConnectionID,
        fd: Int32,
        serial: UInt32,
        peer: SocketAddress,
        machine: EPMDConnectionStateMachine,
        acceptedAt: UInt64
    ) {
        self.id = id
        self.fd = fd
        self.serial = serial
        self.peer = peer
        self.machine = machine
        self.acceptedAt = acceptedAt
        self.peerKey = PeerKey(peer)
    }

    var isRegistered: Bool { self.registration != nil }

    /// The epoll data word of this connection's events.
    var token: LoopToken { .connection(fd: self.fd, serial: self.serial) }

    /// Whether part of a reply is still unwritten.
    var hasPendingReply: Bool { self.outboundOffset < self.outbound.count }
}
