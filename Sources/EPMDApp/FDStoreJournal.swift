import EPMDPosix
import EPMDProtocol
import EPMDRegistry

/// The registry state kept beside the registrations in systemd's fd store: an append-only journal in
/// a memory file (`memfd`, stored once as `FDNAME=state`), current after every change.
///
/// Layout (all integers big-endian):
///
/// - a superblock at offset 0: the magic `EPMDJRNL`, the format version (u16), and at offset 16 the
///   offset of the active image (u64). That 8-byte write is the only thing that switches images, and it
///   cannot be torn by a crash (it lies within one page);
/// - the active image, page-aligned: magic `EPIM`, its length and CRC-32, then the image itself (the
///   registry's state image, `NodeRegistry.State.encode`, and for each live registration its
///   ``Meta``: connection id, fd name, monotonic accept time);
/// - after the image, one record per change: length, CRC-32, payload (a registration with its
///   `RegisteredNode` and meta, or an unregistration with its connection, reason and time).
///
/// A compaction writes a new image after the end, switches the superblock to it, then frees the old
/// range (`FALLOC_FL_PUNCH_HOLE`): the file's size only grows, its memory does not. It runs when the
/// records outgrow twice the image (and 64 KiB), so N changes cost O(N) bytes written in all.
///
/// Reading stops at the first record that is cut short or fails its checksum (a crash in the middle
/// of a write): everything before it is kept, and the cut is reported.
public struct FDStoreJournal: Sendable {
    /// The superblock's magic.
    public static let magic: [UInt8] = Array("EPMDJRNL".utf8)
    /// The format this binary writes and reads.
    public static let formatVersion: UInt16 = 1
    /// Images start on a page boundary after the superblock page.
    static let pageSize = 4096
    /// Where the active image's offset lives in the superblock.
    static let activeOffsetPosition = 16
    static let imageMagic: UInt32 = 0x4550_494D  // "EPIM"
    static let recordRegistered: UInt8 = 1
    static let recordUnregistered: UInt8 = 2
    /// The least record bytes before a compaction is considered.
    static let minimumCompactionBytes = 64 * 1024
    /// The largest record or image read back (a bound against a damaged length).
    static let maximumChunk = 1 << 30

    /// What the journal keeps about a registration beside the registry's `RegisteredNode`.
    public struct Meta: Equatable, Sendable {
        /// Its name in the fd store (`n<slot>`, ``Systemd/storeName(slot:)``).
        public var fdName: String
        /// Monotonic accept time (nanoseconds; CLOCK_MONOTONIC is system-wide, so it survives the restart).
        public var acceptedAt: UInt64
        /// The connection's peer address and port (`SocketAddress.description`): the socket that comes
        /// back under `fdName` must have it (names are reused, and a crash between a removal and the
        /// next store could leave another connection under the name).
        public var peer: String

        public init(fdName: String, acceptedAt: UInt64, peer: String) {
            self.fdName = fdName
            self.acceptedAt = acceptedAt
            self.peer = peer
        }

        func encode(into writer: inout ByteWriter) {
            writer.string(self.fdName)
            writer.u64(self.acceptedAt)
            writer.string(self.peer)
        }

        init(from reader: inout ByteReader) throws(StateDecodingError) {
            self.fdName = try reader.string(bound: 255)
            self.acceptedAt = try reader.u64()
            self.peer = try reader.string(bound: 128)
        }
    }

    /// What reading a journal gives back.
    public struct Contents: Sendable {
        /// The registry as the last whole record left it.
        public var state: NodeRegistry.State
        /// The meta of every live registration, by connection.
        public var meta: [ConnectionID: Meta]
        /// Records applied after the image.
        public var records: Int
        /// Why reading stopped before the end (a cut or damaged tail, a gap), nil when it read to the end.
        public var damage: String?
    }

    /// The memory file.
    public let file: MemoryFile
    /// The active image's offset.
    private(set) var imageOffset: Int
    /// Where the next record goes.
    private(set) var end: Int
    /// The active image's length (for the compaction rule).
    private(set) var imageLength: Int

    /// Bytes of records written after the active image.
    public var recordBytes: Int { self.end - self.imageOffset - 12 - self.imageLength }

    /// Starts a journal in `file` (new, or one to be overwritten) with `state` as its first image.
    /// - Throws: `SystemError` when the file cannot be written.
    public static func create(
        in file: MemoryFile,
        state: NodeRegistry.State,
        meta: [ConnectionID: Meta]
    ) throws(SystemError) -> FDStoreJournal {
        var superblock = ByteWriter(capacity: 24)
        superblock.raw(Self.magic)
        superblock.u16(Self.formatVersion)
        superblock.raw([UInt8](repeating: 0, count: Self.activeOffsetPosition - Self.magic.count - 2))
        superblock.u64(0)
        try file.write(superblock.bytes, at: 0)
        var journal = FDStoreJournal(file: file, imageOffset: 0, end: Self.pageSize, imageLength: 0)
        try journal.compact(state: state, meta: meta)
        return journal
    }

    private init(file: MemoryFile, imageOffset: Int, end: Int, imageLength: Int) {
        self.file = file
        self.imageOffset = imageOffset
        self.end = end
        self.imageLength = imageLength
    }

    // MARK: - Writing

    /// Appends a registration.
    public mutating func appendRegistered(eventID: UInt64, node: RegisteredNode, meta: Meta) throws(SystemError) {
        var writer = ByteWriter(capacity: 160)
        writer.u8(Self.recordRegistered)
        writer.u64(eventID)
        meta.encode(into: &writer)
        node.encode(into: &writer)
        try self.append(writer.bytes)
    }

    /// Appends an unregistration.
    public mutating func appendUnregistered(
        eventID: UInt64,
        connection: ConnectionID,
        reason: UnregisterReason,
        time: Double
    ) throws(SystemError) {
        var writer = ByteWriter(capacity: 40)
        writer.u8(Self.recordUnregistered)
        writer.u64(eventID)
        writer.u64(connection.rawValue)
        writer.string(reason.rawValue)
        writer.f64(time)
        try self.append(writer.bytes)
    }

    private mutating func append(_ payload: [UInt8]) throws(SystemError) {
        var writer = ByteWriter(capacity: payload.count + 8)
        writer.u32(UInt32(payload.count))
        writer.u32(CRC32.checksum(payload))
        writer.raw(payload)
        try self.file.write(writer.bytes, at: self.end)
        self.end += writer.bytes.count
    }

    /// Whether the records have outgrown the image enough for ``compact(state:meta:)``.
    public var wantsCompaction: Bool {
        self.recordBytes > max(Self.minimumCompactionBytes, 2 * self.imageLength)
    }

    /// Writes `state` as a new image after the end, switches to it, and frees the old one.
    public mutating func compact(state: NodeRegistry.State, meta: [ConnectionID: Meta]) throws(SystemError) {
        var body = ByteWriter(capacity: 64 + state.nodes.count * 128)
        body.blob(state.encoded())
        let connections = Set(state.nodes.values.map(\.connection))
        let live = meta.filter { connections.contains($0.key) }.sorted { $0.key.rawValue < $1.key.rawValue }
        body.count(live.count)
        for (connection, entry) in live {
            body.u64(connection.rawValue)
            entry.encode(into: &body)
        }
        var image = ByteWriter(capacity: body.bytes.count + 12)
        image.u32(Self.imageMagic)
        image.u32(UInt32(clamping: body.bytes.count))
        image.u32(CRC32.checksum(body.bytes))
        image.raw(body.bytes)
        let offset = Self.pageAligned(max(self.end, Self.pageSize))
        try self.file.write(image.bytes, at: offset)
        var pointer = ByteWriter(capacity: 8)
        pointer.u64(UInt64(offset))
        try self.file.write(pointer.bytes, at: Self.activeOffsetPosition)
        let old = self.imageOffset
        self.imageOffset = offset
        self.imageLength = body.bytes.count
        self.end = offset + image.bytes.count
        // The old image and its records: freed (a failure only costs memory).
        if old >= Self.pageSize { try? self.file.punchHole(offset: old, length: offset - old) }
    }

    static func pageAligned(_ offset: Int) -> Int {
        (offset + Self.pageSize - 1) / Self.pageSize * Self.pageSize
    }

    // MARK: - Reading

    /// Why a journal cannot be read at all.
    public struct ReadError: Error, Equatable, Sendable, CustomStringConvertible {
        public var message: String
        public var description: String { self.message }
    }

    /// Reads the journal in `file` and replays its records onto its image, then continues it: the next
    /// record goes after the last whole one (a damaged tail is cut off the file).
    /// - Returns: the journal, ready for more records, and what it holds.
    /// - Throws: ``ReadError`` when there is no readable image (not a journal, another format, a
    ///   damaged image).
    public static func open(_ file: MemoryFile) throws(ReadError) -> (FDStoreJournal, Contents) {
        let size: Int
        let superblock: [UInt8]
        do {
            size = try file.size()
            superblock = try file.read(count: 24, at: 0)
        } catch {
            throw ReadError(message: "cannot read the state journal: \(error)")
        }
        guard superblock.count == 24, Array(superblock.prefix(8)) == Self.magic else {
            throw ReadError(message: "not a state journal")
        }
        var reader = ByteReader(Array(superblock.dropFirst(8)))
        let version = (try? reader.u16()) ?? 0
        guard version == Self.formatVersion else {
            throw ReadError(message: "state journal format \(version), this binary reads \(Self.formatVersion)")
        }
        reader = ByteReader(Array(superblock.suffix(8)))
        let offset = Int(clamping: (try? reader.u64()) ?? 0)
        guard offset >= Self.pageSize, offset % Self.pageSize == 0, offset < size else {
            throw ReadError(message: "the state journal has no image")
        }
        let all: [UInt8]
        do {
            all = try file.read(count: min(size - offset, Self.maximumChunk), at: offset)
        } catch {
            throw ReadError(message: "cannot read the state journal: \(error)")
        }
        var bytes = ByteReader(all)
        let body: [UInt8]
        do {
            guard try bytes.u32() == Self.imageMagic else { throw bytes.error("no image magic") }
            let length = Int(try bytes.u32())
            let checksum = try bytes.u32()
            body = try bytes.raw(length)
            guard CRC32.checksum(body) == checksum else { throw bytes.error("image checksum mismatch") }
        } catch {
            throw ReadError(message: "the state journal's image is damaged: \(error)")
        }
        var contents: Contents
        do {
            var image = ByteReader(body)
            let state = try NodeRegistry.State(decoding: try image.blob())
            var meta: [ConnectionID: Meta] = [:]
            let count = try image.count(minimumElementSize: 24)
            for _ in 0..<count {
                let connection = ConnectionID(try image.u64())
                meta[connection] = try Meta(from: &image)
            }
            try image.expectEnd()
            contents = Contents(state: state, meta: meta, records: 0, damage: nil)
        } catch {
            throw ReadError(message: "the state journal's image is damaged: \(error)")
        }
        var good = bytes.offset
        while !bytes.isAtEnd {
            do {
                let length = Int(try bytes.u32())
                let checksum = try bytes.u32()
                if length == 0 && checksum == 0 { break }  // zeros after the last record: the end
                let payload = try bytes.raw(length)
                guard CRC32.checksum(payload) == checksum else { throw bytes.error("record checksum mismatch") }
                if let gap = try Self.apply(payload, to: &contents) {
                    contents.damage = gap
                    break
                }
                contents.records += 1
                good = bytes.offset
            } catch {
                contents.damage = "cut after \(contents.records) records: \(error)"
                break
            }
        }
        if offset + good < size {
            // The damaged tail goes: the next record must not be followed by its stale bytes.
            try? file.truncate(to: offset + good)
        }
        let journal = FDStoreJournal(
            file: file,
            imageOffset: offset,
            end: offset + good,
            imageLength: body.count
        )
        return (journal, contents)
    }

    /// Applies one record to the state by the registry's own rules (the same inputs give the same
    /// creation numbers, sequences and events).
    /// - Returns: why replay must stop here (a gap in the event ids), or nil.
    private static func apply(_ payload: [UInt8], to contents: inout Contents) throws(StateDecodingError) -> String? {
        var reader = ByteReader(payload)
        let kind = try reader.u8()
        let eventID = try reader.u64()
        let generation = contents.state.generation
        // Already in the image (written after the image was taken): skip.
        if eventID <= generation { return nil }
        guard eventID == generation + 1 else {
            return "a gap in the records: event \(eventID) after generation \(generation)"
        }
        switch kind {
        case Self.recordRegistered:
            let meta = try Meta(from: &reader)
            let node = try RegisteredNode(from: &reader)
            try reader.expectEnd()
            do {
                try contents.state.register(
                    node.request,
                    connection: node.connection,
                    fd: node.fd,
                    peer: node.peer,
                    now: node.registeredAt
                )
            } catch {
                throw reader.error("a journaled registration is refused on replay: \(error)")
            }
            contents.meta[node.connection] = meta
        case Self.recordUnregistered:
            let connection = ConnectionID(try reader.u64())
            let reasonText = try reader.string(bound: 64)
            let time = try reader.time()
            try reader.expectEnd()
            guard let reason = UnregisterReason(rawValue: reasonText) else {
                throw reader.error("unknown unregistration reason \(reasonText)")
            }
            guard contents.state.unregister(connection: connection, now: time, reason: reason) != nil else {
                throw reader.error("a journaled unregistration names no registration")
            }
            contents.meta.removeValue(forKey: connection)
        default:
            throw reader.error("unknown record kind \(kind)")
        }
        return nil
    }
}

/// CRC-32 (IEEE 802.3, reflected, as zlib computes it).
enum CRC32 {
    private static let table: [UInt32] = (0..<256).map { index in
        var value = UInt32(index)
        for _ in 0..<8 { value = value & 1 == 1 ? 0xEDB8_8320 ^ (value >> 1) : value >> 1 }
        return value
    }

    static func checksum(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes { crc = Self.table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
        return crc ^ 0xFFFF_FFFF
    }
}
