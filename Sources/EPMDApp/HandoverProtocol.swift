import EPMDPosix
import EPMDProtocol
import EPMDRegistry
import EPMDServer

/// The hand-over protocol between a running gateway (the old process) and its successor, over the
/// hand-over Unix socket. Frames are `type (u8) | length (u32) | payload`, big-endian:
///
/// 1. successor → old: `hello` (magic, format version, binary version, pid);
/// 2. old → successor: `refuse` (a message; the successor exits 1 with it), or `state` (the registry
///    image, every connection's snapshot, the counts of each kind of descriptor), then `descriptors`
///    frames carrying them all by `SCM_RIGHTS`, at most 253 per frame, in the order: epmd listeners,
///    the HTTP listener, the hand-over listener, the state journal, then one per connection;
/// 3. successor → old: `ack` (its pid, once both fronts serve) or `nack` (why it cannot);
/// 4. old → successor: `done` after an `ack`. A successor that never gets it exits at once: the old
///    process then timed out and serves on (it never stopped holding every socket).
public enum HandoverProtocol {
    /// "EPHO".
    public static let magic: UInt32 = 0x4550_484F
    /// The format this binary speaks; a successor with another is refused and the old one serves on.
    public static let formatVersion: UInt16 = 1
    /// The longest frame accepted (a state image of a very large table).
    public static let maximumFrame = 256 << 20
    /// How long each side waits for the other's next frame (milliseconds).
    public static let timeoutMilliseconds = 5000

    public enum FrameType: UInt8, Sendable {
        case hello = 1
        case refuse = 2
        case state = 3
        case descriptors = 4
        case ack = 5
        case nack = 6
        /// The old process lets go (after `ack`): the successor serves alone from here on.
        case done = 7
    }

    /// The successor's greeting.
    public struct Hello: Equatable, Sendable {
        public var formatVersion: UInt16
        public var binaryVersion: String
        public var pid: Int32

        public init(
            formatVersion: UInt16 = HandoverProtocol.formatVersion,
            binaryVersion: String = EPMDApplication.version,
            pid: Int32 = ProcessControl.processID
        ) {
            self.formatVersion = formatVersion
            self.binaryVersion = binaryVersion
            self.pid = pid
        }

        public var payload: [UInt8] {
            var writer = ByteWriter()
            writer.u32(HandoverProtocol.magic)
            writer.u16(self.formatVersion)
            writer.string(self.binaryVersion)
            writer.i32(self.pid)
            return writer.bytes
        }

        public init(payload: [UInt8]) throws(StateDecodingError) {
            var reader = ByteReader(payload)
            guard try reader.u32() == HandoverProtocol.magic else { throw reader.error("not a hand-over hello") }
            self.formatVersion = try reader.u16()
            self.binaryVersion = try reader.string(bound: 256)
            self.pid = try reader.i32()
        }
    }

    /// What the old process sends before the descriptors.
    public struct State: Sendable {
        public var registry: [UInt8]
        public var connections: [EPMDConnectionSnapshot]
        public var epmdListeners: Int
        public var hasHTTPListener: Bool
        public var hasHandoverListener: Bool
        public var hasJournal: Bool
        public var pid: Int32

        public init(
            registry: [UInt8],
            connections: [EPMDConnectionSnapshot],
            epmdListeners: Int,
            hasHTTPListener: Bool,
            hasHandoverListener: Bool,
            hasJournal: Bool,
            pid: Int32
        ) {
            self.registry = registry
            self.connections = connections
            self.epmdListeners = epmdListeners
            self.hasHTTPListener = hasHTTPListener
            self.hasHandoverListener = hasHandoverListener
            self.hasJournal = hasJournal
            self.pid = pid
        }

        /// How many descriptors follow.
        public var descriptorCount: Int {
            self.epmdListeners + (self.hasHTTPListener ? 1 : 0) + (self.hasHandoverListener ? 1 : 0)
                + (self.hasJournal ? 1 : 0) + self.connections.count
        }

        public var payload: [UInt8] {
            var writer = ByteWriter(capacity: self.registry.count + self.connections.count * 160 + 64)
            writer.i32(self.pid)
            writer.u16(UInt16(clamping: self.epmdListeners))
            writer.bool(self.hasHTTPListener)
            writer.bool(self.hasHandoverListener)
            writer.bool(self.hasJournal)
            writer.blob(self.registry)
            writer.count(self.connections.count)
            for connection in self.connections { connection.encode(into: &writer) }
            return writer.bytes
        }

        /// Decodes the frame; the connections get descriptor -1 until the descriptors are matched.
        public init(payload: [UInt8]) throws(StateDecodingError) {
            var reader = ByteReader(payload)
            self.pid = try reader.i32()
            self.epmdListeners = Int(try reader.u16())
            guard self.epmdListeners <= 64 else { throw reader.error("\(self.epmdListeners) epmd listeners") }
            self.hasHTTPListener = try reader.bool()
            self.hasHandoverListener = try reader.bool()
            self.hasJournal = try reader.bool()
            self.registry = try reader.blob(bound: HandoverProtocol.maximumFrame)
            let count = try reader.count(minimumElementSize: 16)
            var connections: [EPMDConnectionSnapshot] = []
            connections.reserveCapacity(count)
            for _ in 0..<count { connections.append(try EPMDConnectionSnapshot(from: &reader, fd: -1)) }
            try reader.expectEnd()
            self.connections = connections
        }
    }

    // MARK: - Frames

    /// Why a frame could not be exchanged.
    public struct FrameError: Error, CustomStringConvertible {
        public var description: String
        public init(_ description: String) { self.description = description }
    }

    /// Sends one frame, with descriptors attached to its first byte (at most 253).
    public static func send(
        _ type: FrameType,
        _ payload: [UInt8],
        on fd: Int32,
        descriptors: [Int32] = []
    ) throws(FrameError) {
        var writer = ByteWriter(capacity: payload.count + 5)
        writer.u8(type.rawValue)
        writer.count(payload.count)
        writer.raw(payload)
        do {
            try UnixSocket.send(fd, writer.bytes, descriptors: descriptors)
        } catch {
            throw FrameError("cannot send the \(type) frame: \(error)")
        }
    }

    /// Receives one frame and the descriptors attached to it (at most `descriptorCapacity`).
    public static func receive(
        on fd: Int32,
        descriptorCapacity: Int = 0
    ) throws(FrameError) -> (type: FrameType, payload: [UInt8], descriptors: [Int32]) {
        let header: (bytes: [UInt8], descriptors: [Int32])
        do {
            header = try UnixSocket.receive(fd, count: 5, descriptorCapacity: descriptorCapacity)
        } catch {
            throw FrameError("no frame: \(error)")
        }
        var reader = ByteReader(header.bytes)
        guard let code = try? reader.u8(), let length = try? reader.u32() else {
            for descriptor in header.descriptors { System.close(descriptor) }
            throw FrameError("no frame header")
        }
        guard let type = FrameType(rawValue: code), Int(length) <= Self.maximumFrame else {
            for descriptor in header.descriptors { System.close(descriptor) }
            throw FrameError("not a hand-over frame (type \(code), length \(length))")
        }
        guard length > 0 else { return (type, [], header.descriptors) }
        do {
            let body = try UnixSocket.receive(fd, count: Int(length), descriptorCapacity: 0)
            return (type, body.bytes, header.descriptors)
        } catch {
            for descriptor in header.descriptors { System.close(descriptor) }
            throw FrameError("truncated \(type) frame: \(error)")
        }
    }

    /// A message frame's text (`refuse`, `nack`).
    public static func text(_ payload: [UInt8]) -> String {
        String(decoding: payload.prefix(4096), as: UTF8.self)
    }
}
