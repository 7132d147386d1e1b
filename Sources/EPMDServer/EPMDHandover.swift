import EPMDPosix
import EPMDRegistry

/// What the epmd loop does for a hand-over to another process. The loop watches `listenDescriptor`;
/// when a peer connects it asks `admit(draining:)` (credentials, hello, version: blocking, bounded),
/// then stops accepting, exports every connection and asks `transfer`. On success it closes its
/// copies and ends (`EPMDServer.ExitReason.handedOver`); on failure it adopts everything back and
/// serves on: nothing is lost either way. Every call is made on the loop thread.
public protocol EPMDHandoverHandler: AnyObject, Sendable {
    /// The listening hand-over socket (non-blocking, close-on-exec).
    var listenDescriptor: Int32? { get }

    /// A peer is waiting on the listening socket: accept it and decide.
    /// - Parameter draining: the gateway is shutting down (a hand-over is refused then).
    /// - Returns: the accepted session's descriptor when the hand-over may go ahead; nil when there
    ///   was nobody, or the peer was refused (the handler answered, counted, logged and closed it).
    func admit(draining: Bool) -> Int32?

    /// Sends everything to the admitted peer and waits for its acknowledgement.
    /// - Parameters:
    ///   - session: the descriptor `admit` returned (the handler closes it).
    ///   - listeners: the epmd listening sockets (no longer watched; still open).
    ///   - connections: every connection, exported (their descriptors still open).
    ///   - stoppedAt: when the loop stopped accepting (monotonic nanoseconds).
    /// - Returns: true when the peer took everything over; false to resume serving.
    func transfer(
        session: Int32,
        listeners: [Int32],
        connections: [EPMDConnectionSnapshot],
        stoppedAt: UInt64
    )
        -> Bool

    /// SIGUSR2 arrived: start a successor (which then connects to the hand-over socket).
    func successorRequested()
}
