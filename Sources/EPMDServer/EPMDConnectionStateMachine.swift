import EPMDProtocol
import EPMDRegistry

/// The life of one epmd connection, as a value that decides and never does I/O.
///
/// `receiving` → (a complete, permitted request) → `replying` → closed after the write, or, for
/// ALIVE2, `kept`: the connection then lives until the peer closes, errs or sends anything.
public struct EPMDConnectionStateMachine: Equatable, Sendable {
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
    /// `--names-local-only`: NAMES_REQ is a local-only request too.
    public let namesLocalOnly: Bool

    public init(isLocalPeer: Bool, relaxedCommandCheck: Bool, namesLocalOnly: Bool = false) {
        self.isLocalPeer = isLocalPeer
        self.relaxedCommandCheck = relaxedCommandCheck
        self.namesLocalOnly = namesLocalOnly
    }

    /// A machine that resumes where an exported one stopped: its state and the bytes of an
    /// incomplete request.
    public init(
        isLocalPeer: Bool,
        relaxedCommandCheck: Bool,
        namesLocalOnly: Bool = false,
        state: State,
        buffered: [UInt8]
    ) {
        self.isLocalPeer = isLocalPeer
        self.relaxedCommandCheck = relaxedCommandCheck
        self.namesLocalOnly = namesLocalOnly
        self.state = state
        self.assembler = EPMDFrameAssembler(buffered: buffered)
    }

    /// The bytes of an incomplete request received so far.
    public var buffered: [UInt8] { self.assembler.buffered }

    /// How many bytes the next read may take. While a request is incomplete, what C epmd's input
    /// buffer still holds (3059 bytes in all, length prefix included): C epmd never reads past it
    /// before it decides, so a peer that sent more than a request sees a reset when the connection
    /// closes with its bytes unread, and a complete request followed by more bytes is still served.
    public var readLimit: Int {
        switch self.state {
        case .receiving: EPMDFrameAssembler.capacity - self.assembler.bufferedCount
        case .replying, .kept, .closed: EPMDFrameAssembler.capacity
        }
    }

    /// Whether the packet timeout applies (everything but a kept registration).
    public var isTimed: Bool { self.state != .kept && self.state != .closed }

    /// Bytes arrived from the peer.
    /// - Parameter bytes: the bytes just read.
    /// - Returns: what the server should do.
    public mutating func received(_ bytes: [UInt8]) -> ReceiveDecision {
        self.received(bytes[...])
    }

    /// Bytes arrived from the peer (the loop's entry point: a slice of its read buffer, no copy).
    public mutating func received(_ bytes: ArraySlice<UInt8>) -> ReceiveDecision {
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
            case .namesRequest where self.namesLocalOnly:
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
