import EPMDProtocol
import EPMDRegistry

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Why a connection was closed.
public enum CloseReason: Hashable, Sendable, CaseIterable, CustomStringConvertible {
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
    /// Closed, holding no registration, to make room for a new connection (the epmd connection cap or
    /// the per-address cap was reached; see ``EPMDEvictionReason``).
    case evicted

    /// The request codes only local peers may send.
    public static let localOnlyCodes: [EPMDMessageCode] = [.alive2Request, .dumpRequest, .killRequest, .stopRequest]

    /// Every reason: each protocol error and each local-only code once, then the plain reasons.
    public static var allCases: [CloseReason] {
        EPMDProtocolError.allCases.map { CloseReason.malformed($0) } + self.localOnlyCodes.map { .notLocal($0) }
            + [.stopNotAllowed, .answered, .peerClosed, .ioError, .strayData, .timeout, .stopped, .shutdown, .evicted]
    }

    /// The distinct ``label`` values, in ``labelIndex`` order: the `reason` label of
    /// `epmd_connections_closed_total`.
    public static let labels = [
        "malformed", "not_local", "stop_not_allowed", "answered", "peer_closed", "io_error", "stray_data",
        "timeout", "stopped", "shutdown", "evicted",
    ]

    /// The index of ``label`` in ``labels`` (for counters kept in an array: a close is on every
    /// connection's path).
    public var labelIndex: Int {
        switch self {
        case .malformed: 0
        case .notLocal: 1
        case .stopNotAllowed: 2
        case .answered: 3
        case .peerClosed: 4
        case .ioError: 5
        case .strayData: 6
        case .timeout: 7
        case .stopped: 8
        case .shutdown: 9
        case .evicted: 10
        }
    }

    /// A short stable label (`malformed`, `not_local`, `peer_closed`, ...).
    public var label: String {
        switch self {
        case .malformed: "malformed"
        case .notLocal: "not_local"
        case .stopNotAllowed: "stop_not_allowed"
        case .answered: "answered"
        case .peerClosed: "peer_closed"
        case .ioError: "io_error"
        case .strayData: "stray_data"
        case .timeout: "timeout"
        case .stopped: "stopped"
        case .shutdown: "shutdown"
        case .evicted: "evicted"
        }
    }

    public var description: String {
        switch self {
        case .malformed(let error): "malformed (\(error.label))"
        case .notLocal(let code): "non-local peer sent \(code)"
        case .stopNotAllowed: "STOP_REQ without relaxed command check"
        case .answered: "answered"
        case .peerClosed: "peer closed"
        case .ioError: "I/O error"
        case .strayData: "got more than expected on ALIVE socket"
        case .timeout: "timed out"
        case .stopped: "stopped by STOP_REQ"
        case .shutdown: "shutdown"
        case .evicted: "evicted to admit a new connection"
        }
    }

    /// What a registration living on the connection ends with.
    public var unregisterReason: UnregisterReason {
        switch self {
        case .strayData: .strayData
        case .shutdown: .shutdown
        case .stopped: .stop
        case .ioError, .malformed, .timeout: .error
        case .peerClosed, .answered, .notLocal, .stopNotAllowed, .evicted: .closed
        }
    }

    /// The reason counted in `epmd_malformed_packets_total`, for the closes that are bad input.
    public var malformedReason: EPMDMalformedReason? {
        switch self {
        case .malformed(let error): .protocolError(error)
        case .notLocal: .notLocal
        case .stopNotAllowed: .stopNotAllowed
        case .strayData: .strayData
        case .answered, .peerClosed, .ioError, .timeout, .stopped, .shutdown, .evicted: nil
        }
    }
}

/// Why a connection was closed for bad input: the `reason` label of `epmd_malformed_packets_total`.
public enum EPMDMalformedReason: Hashable, Sendable, CaseIterable, CustomStringConvertible {
    /// A framing or structure rule of the wire protocol.
    case protocolError(EPMDProtocolError)
    /// A local-only request from a non-local peer.
    case notLocal
    /// STOP without relaxed command checking.
    case stopNotAllowed
    /// A byte on a registration connection.
    case strayData

    public static var allCases: [EPMDMalformedReason] {
        EPMDProtocolError.allCases.map { EPMDMalformedReason.protocolError($0) } + [
            .notLocal, .stopNotAllowed, .strayData,
        ]
    }

    /// The metric label: the protocol error's own label, or `not_local`, `stop_not_allowed`, `stray_data`.
    public var label: String {
        switch self {
        case .protocolError(let error): error.label
        case .notLocal: "not_local"
        case .stopNotAllowed: "stop_not_allowed"
        case .strayData: "stray_data"
        }
    }

    public var description: String { self.label }
}

/// Why an accept failed: the `reason` label of `epmd_connections_rejected_total`.
public enum EPMDRefusalReason: Hashable, Sendable, CaseIterable, CustomStringConvertible {
    /// EMFILE: the process is out of descriptors.
    case emfile
    /// ENFILE: the system is out of descriptors.
    case enfile
    /// ENOBUFS / ENOMEM: out of memory.
    case noMemory
    /// Anything else (ECONNABORTED, EPROTO, EPERM, ...): one peer's problem.
    case acceptError
    /// At the epmd connection cap (`--max-connections`) with every connection holding a
    /// registration: the new connection is accepted and closed at once (never left in the backlog).
    case maxConnections

    /// The reason for an accept's errno.
    public init(errno code: Int32) {
        switch code {
        case EMFILE: self = .emfile
        case ENFILE: self = .enfile
        case ENOBUFS, ENOMEM: self = .noMemory
        default: self = .acceptError
        }
    }

    /// The metric label.
    public var label: String {
        switch self {
        case .emfile: "emfile"
        case .enfile: "enfile"
        case .noMemory: "no_memory"
        case .acceptError: "accept_error"
        case .maxConnections: "max_connections"
        }
    }

    public var description: String { self.label }
}

/// Why a connection holding no registration was closed to admit a new one: the `reason` label of
/// `epmd_connections_evicted_total`.
public enum EPMDEvictionReason: Int, Hashable, Sendable, CaseIterable, CustomStringConvertible {
    /// The epmd connection cap (`--max-connections`) was reached: the oldest connection without a
    /// registration, from any address, made room.
    case maxConnections
    /// The new connection's address already had `--connections-per-address` connections without a
    /// registration: that address's oldest made room.
    case perAddress

    /// The metric label.
    public var label: String {
        switch self {
        case .maxConnections: "max_connections"
        case .perAddress: "per_address"
        }
    }

    public var description: String { self.label }
}
