/// What an epoll event is about, packed into the event's 64-bit data word.
///
/// Layout: the tag in the top byte, a 24-bit serial below it, and a 32-bit descriptor or index at the
/// bottom. The serial tells a connection's events from those of an earlier connection that had the
/// same descriptor number (an event already queued when the descriptor was closed and reused).
enum LoopToken: Equatable, Sendable {
    /// A connection: its descriptor and the serial it was adopted with.
    case connection(fd: Int32, serial: UInt32)
    /// The listener at this index of the server's listeners.
    case listener(index: Int32)
    /// The wake-up eventfd (`shutdown()`).
    case wake
    /// The signalfd (SIGTERM, SIGINT, SIGUSR2).
    case signal
    /// The hand-over socket (a successor process connects).
    case handover

    /// Serials wrap within 24 bits.
    static let serialMask: UInt32 = 0x00FF_FFFF

    private enum Tag: UInt64 {
        case connection = 0
        case listener = 1
        case wake = 2
        case signal = 3
        case handover = 4
    }

    /// The epoll data word.
    var packed: UInt64 {
        switch self {
        case .connection(let fd, let serial):
            Self.pack(.connection, serial: serial, low: UInt32(bitPattern: fd))
        case .listener(let index):
            Self.pack(.listener, serial: 0, low: UInt32(bitPattern: index))
        case .wake:
            Self.pack(.wake, serial: 0, low: 0)
        case .signal:
            Self.pack(.signal, serial: 0, low: 0)
        case .handover:
            Self.pack(.handover, serial: 0, low: 0)
        }
    }

    /// Unpacks a data word; nil for a word no token packs to.
    init?(packed: UInt64) {
        let low = Int32(bitPattern: UInt32(truncatingIfNeeded: packed))
        switch Tag(rawValue: packed >> 56) {
        case .connection:
            self = .connection(fd: low, serial: UInt32(truncatingIfNeeded: packed >> 32) & Self.serialMask)
        case .listener: self = .listener(index: low)
        case .wake: self = .wake
        case .signal: self = .signal
        case .handover: self = .handover
        case nil: return nil
        }
    }

    private static func pack(_ tag: Tag, serial: UInt32, low: UInt32) -> UInt64 {
        tag.rawValue << 56 | UInt64(serial & Self.serialMask) << 32 | UInt64(low)
    }
}
