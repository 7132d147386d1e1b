import EPMDProtocol
import EPMDRegistry

/// Why a connection was closed. Also the reason labels of the server's counters.
public enum CloseReason: Hashable, Sendable, CustomStringConvertible {
    /// The request broke a framing or structure rule; closed without a reply.
    case malformed(EPMDProtocolError)
    /// A local-only request (ALIVE2, DUMP, KILL, STOP) from a non-local peer; closed without a reply.
    case notLocal(EPMDMessageCode)
    /// STOP without relaxed command checking; closed without a reply.
    case stopNotAllowed
    /// The request was answered (the normal end of a one-shot connection).
    case answered
    /// The peer closed (EOF) before or after a request.
    case peerClosed
    /// A read or write failed (reset, broken pipe).
    case ioError
    /// A byte arrived on a registration connection ("got more than expected on ALIVE socket").
    case strayData
    /// The request did not complete within the packet timeout, counted from connect.
    case timeout
    /// The registration was removed by a STOP request.
    case stopped
    /// The server is shutting down.
    case shutdown

    public var description: String {
        switch self {
        case .malformed(let error): "malformed (\(error.reason))"
        case .notLocal(let code): "non-local peer sent \(code)"
        case .stopNotAllowed: "STOP_REQ without relaxed command check"
        case .answered: "answered"
        case .peerClosed: "peer closed"
        case .ioError: "I/O error"
        case .strayData: "got more than expected on ALIVE socket"
        case .timeout: "timed out"
        case .stopped: "stopped by STOP_REQ"
        case .shutdown: "shutdown"
        }
    }

    /// What a registration living on the connection ends with.
    public var unregisterReason: UnregisterReason {
        switch self {
        case .strayData: .strayData
        case .shutdown: .shutdown
        case .stopped: .stop
        case .ioError, .malformed, .timeout: .error
        case .peerClosed, .answered, .notLocal, .stopNotAllowed: .closed
        }
    }
}

/// The life of one epmd connection, as a value that decides and never does I/O.
///
/// `receiving` → (a complete, permitted request) → `replying` → closed after the write, or, for
/// ALIVE2, `kept`: the connection then lives until the peer closes, errs or sends anything.
public struct EPMDConnectionStateMachine: Sendable {
    public enum State: Equatable, Sendable {
        /// Waiting for the request bytes.
        case receiving
        /// A reply is being written; `keep` says whether the connection stays open after it.
        case replying(keep: Bool)
        /// An ALIVE2 connection after its reply: it must stay silent until it closes.
        case kept
        case closed
    }

    /// What to do after bytes arrived.
    public enum ReceiveDecision: Equatable, Sendable {
        /// The request is incomplete: wait.
        case awaitMore
        /// Serve this request (access rules already checked).
        case serve(EPMDRequest)
        /// Close without replying.
        case close(CloseReason)
    }

    public private(set) var state: State = .receiving
    private var assembler = EPMDFrameAssembler()
    /// Whether the peer may send local-only requests.
    public let isLocalPeer: Bool
    /// `-relaxed_command_check`: STOP enabled, KILL allowed with live nodes.
    public let relaxedCommandCheck: Bool

    public init(isLocalPeer: Bool, relaxedCommandCheck: Bool) {
        self.isLocalPeer = isLocalPeer
        self.relaxedCommandCheck = relaxedCommandCheck
    }

    /// Whether the packet timeout applies (everything but a kept registration).
    public var isTimed: Bool { self.state != .kept && self.state != .closed }

    /// Bytes arrived from the peer.
    /// - Parameter bytes: the bytes just read.
    /// - Returns: what the server should do.
    public mutating func received(_ bytes: [UInt8]) -> ReceiveDecision {
        bytes.withUnsafeBytes { self.received($0) }
    }

    /// Bytes arrived from the peer (the loop's entry point: straight from its read buffer).
    public mutating func received(_ bytes: UnsafeRawBufferPointer) -> ReceiveDecision {
        switch self.state {
        case .receiving:
            switch self.assembler.append(bytes) {
            case .needMore:
                return .awaitMore
            case .invalid(let error):
                return self.close(.malformed(error))
            case .complete(let body):
                return self.decide(body)
            }
        case .kept:
            return self.close(.strayData)
        case .replying, .closed:
            // Not reading while replying; anything else is a caller bug, answered by closing.
            return self.close(.strayData)
        }
    }

    private mutating func decide(_ body: [UInt8]) -> ReceiveDecision {
        // C epmd checks locality before structure for ALIVE2; DUMP and KILL have no structure to check.
        if let code = EPMDRequest.code(of: body) {
            switch code {
            case .alive2Request, .dumpRequest, .killRequest, .stopRequest:
                guard self.isLocalPeer else { return self.close(.notLocal(code)) }
            default:
                break
            }
            if code == .stopRequest, !self.relaxedCommandCheck { return self.close(.stopNotAllowed) }
        }
        do {
            let request = try EPMDRequest.decode(body)
            return .serve(request)
        } catch {
            return self.close(.malformed(error))
        }
    }

    private mutating func close(_ reason: CloseReason) -> ReceiveDecision {
        self.state = .closed
        return .close(reason)
    }

    /// The server produced a reply. ALIVE2 replies keep the connection; every other one closes it.
    public mutating func replyStarted(keep: Bool) {
        self.state = .replying(keep: keep)
    }

    /// The reply is fully written.
    /// - Returns: `true` if the connection stays open (ALIVE2), `false` to close it.
    public mutating func replyWritten() -> Bool {
        if case .replying(keep: true) = self.state {
            self.state = .kept
            return true
        }
        self.state = .closed
        return false
    }

    /// The peer closed, the socket failed, or the server gave up on it.
    public mutating func terminated() {
        self.state = .closed
    }
}
