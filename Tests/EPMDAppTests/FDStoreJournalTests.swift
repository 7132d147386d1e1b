import EPMDApp
import EPMDPosix
import EPMDProtocol
import EPMDRegistry
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The fd store's state journal: a memory file replayed by the registry's own rules.
@Suite struct FDStoreJournalTests {
    /// A registry on a fake clock whose every change is journaled, as `FDStore` journals it.
    final class Journaled: Sendable {
        let registry: NodeRegistry
        let journal: Mutex<FDStoreJournal>
        let meta = Mutex<[ConnectionID: FDStoreJournal.Meta]>([:])
        let compactions = Atomic<Int>(0)
        let written = Atomic<Int>(0)

        init(compacting: Bool = true) throws {
            let clock = Atomic<UInt64>(1_700_000_000)
            let registry = NodeRegistry(
                historyLimit: 50,
                eventCapacity: 64,
                initialGeneration: 1000,
                clock: { Double(clock.add(1, ordering: .relaxed).newValue) }
            )
            self.registry = registry
            let file = try MemoryFile.create(name: "journal-test")
            self.journal = Mutex(try FDStoreJournal.create(in: file, state: registry.copyState(), meta: [:]))
            registry.addChangeObserver { [self] event in self.record(event, compacting: compacting) }
        }

        private func record(_ event: RegistryEvent, compacting: Bool) {
            guard let node = event.node else { return }
            self.journal.withLock { journal in
                let before = journal.recordBytes
                switch event.kind {
                case .registered:
                    let meta = FDStoreJournal.Meta(
                        fdName: Systemd.storeName(slot: Int(node.connection.rawValue)),
                        acceptedAt: node.connection.rawValue * 7,
                        peer: "127.0.0.1:\(node.connection.rawValue)"
                    )
                    self.meta.withLock { $0[node.connection] = meta }
                    try? journal.appendRegistered(eventID: event.id, node: node, meta: meta)
                case .unregistered(let reason):
                    self.meta.withLock { _ = $0.removeValue(forKey: node.connection) }
                    try? journal.appendUnregistered(
                        eventID: event.id,
                        connection: node.connection,
                        reason: reason,
                        time: event.time
                    )
                case .restarted:
                    break
                }
                _ = self.written.add(journal.recordBytes - before, ordering: .relaxed)
                if compacting, journal.wantsCompaction {
                    let meta = self.meta.withLock { $0 }
                    try? journal.compact(state: self.registry.copyState(), meta: meta)
                    _ = self.compactions.add(1, ordering: .relaxed)
                }
            }
        }

        var file: MemoryFile { self.journal.withLock { $0.file } }
    }

    static func request(_ name: String, port: UInt16 = 5000) -> Alive2Request {
        Alive2Request(
            port: port,
            nodeType: 77,
            nodeProtocol: 0,
            highestVersion: 6,
            lowestVersion: 5,
            name: Array(name.utf8),
            extra: []
        )
    }

    static func expectSame(_ contents: FDStoreJournal.Contents, _ journaled: Journaled) {
        let registry = journaled.registry
        #expect(contents.state.generation == registry.generation)
        #expect(contents.state.newestFirst() == registry.snapshot())
        #expect(contents.state.unregisteredOldestFirst() == registry.copyState().unregisteredOldestFirst())
        #expect(contents.state.history().events == registry.history().events)
        #expect(contents.meta == journaled.meta.withLock { $0 })
    }

    @Test(
        "registrations, unregistrations (closed, STOP) and re-registrations replay to the same table, creations included"
    )
    func replay() throws {
        let journaled = try Journaled(compacting: false)
        let registry = journaled.registry
        for index in 0..<40 {
            _ = registry.register(
                Self.request("node\(index)"),
                connection: ConnectionID(UInt64(index + 1)),
                fd: 10,
                peer: "127.0.0.1"
            )
        }
        for index in stride(from: 0, to: 40, by: 3) { registry.unregister(connection: ConnectionID(UInt64(index + 1))) }
        registry.unregister(name: Array("node1".utf8))
        // Names back: their creation is bumped from the unregistered record.
        for index in stride(from: 0, to: 12, by: 3) {
            _ = registry.register(
                Self.request("node\(index)"),
                connection: ConnectionID(UInt64(100 + index)),
                fd: 11,
                peer: "::1"
            )
        }
        let (_, contents) = try FDStoreJournal.open(journaled.file)
        #expect(contents.damage == nil)
        #expect(contents.records == 40 + 14 + 1 + 4)
        Self.expectSame(contents, journaled)
    }

    @Test(
        "thousands of changes: compactions keep the records below twice the image and the memory bounded; the state reads back"
    )
    func compaction() throws {
        let journaled = try Journaled()
        let registry = journaled.registry
        var connection: UInt64 = 0
        for round in 0..<3000 {
            connection += 1
            _ = registry.register(
                Self.request("n\(round % 200)"),
                connection: ConnectionID(connection),
                fd: 9,
                peer: "127.0.0.1"
            )
            if round % 200 >= 100 {
                // Half the names come and go: the table stays ~100 live nodes.
                registry.unregister(name: Array("n\(round % 200)".utf8))
            }
        }
        #expect(journaled.compactions.load(ordering: .relaxed) > 0)
        let (journal, contents) = try FDStoreJournal.open(journaled.file)
        Self.expectSame(contents, journaled)
        #expect(!journal.wantsCompaction)
        // Freed images are holes: the memory used stays near one image and its records, whatever the history.
        var status = stat()
        #expect(fstat(journaled.file.descriptor, &status) == 0)
        let resident = Int(status.st_blocks) * 512
        #expect(resident < 1_000_000, "\(resident) bytes resident")
        // O(n) in all: the records written are a constant size each.
        #expect(journaled.written.load(ordering: .relaxed) < 3000 * 300)
    }

    @Test(
        "a damaged or cut tail is cut at the last whole record and reported; the next record goes after the last whole one"
    )
    func damagedTail() throws {
        func journaled() throws -> Journaled {
            let journaled = try Journaled(compacting: false)
            for index in 0..<5 {
                _ = journaled.registry.register(
                    Self.request("a\(index)"),
                    connection: ConnectionID(UInt64(index + 1)),
                    fd: 9,
                    peer: "127.0.0.1"
                )
            }
            return journaled
        }
        // The last record's last byte changes: its checksum fails.
        let flipped = try journaled().file
        let size = try flipped.size()
        let last = try flipped.read(count: 1, at: size - 1)
        try flipped.write([last[0] ^ 0xFF], at: size - 1)
        let (_, damaged) = try FDStoreJournal.open(flipped)
        #expect(damaged.records == 4)
        #expect(damaged.damage != nil)
        #expect(damaged.state.nodes.count == 4)
        // Cut in the middle of a record (a crash in a write): the same.
        let cut = try journaled().file
        try cut.truncate(to: try cut.size() - 3)
        var (journal, contents) = try FDStoreJournal.open(cut)
        #expect(contents.records == 4)
        #expect(contents.damage != nil)
        // Journaling goes on after the last whole record: nothing of the cut one is read again.
        try journal.appendUnregistered(
            eventID: contents.state.generation + 1,
            connection: ConnectionID(4),
            reason: .closed,
            time: 1_800_000_000
        )
        (journal, contents) = try FDStoreJournal.open(cut)
        #expect(contents.damage == nil)
        #expect(contents.records == 5)
        #expect(contents.state.nodes.count == 3)
    }

    @Test("garbage and corrupted journals never trap: an error or a shorter journal")
    func garbage() throws {
        let journaled = try Journaled(compacting: false)
        for index in 0..<20 {
            _ = journaled.registry.register(
                Self.request("g\(index)"),
                connection: ConnectionID(UInt64(index + 1)),
                fd: 9,
                peer: "127.0.0.1"
            )
        }
        let file = journaled.file
        let original = try file.read(count: try file.size(), at: 0)
        var generator = SystemRandomNumberGenerator()
        for round in 0..<300 {
            var bytes = original
            switch round % 3 {
            case 0:
                for _ in 0..<Int.random(in: 1...8, using: &generator) {
                    let index = Int.random(in: 0..<bytes.count, using: &generator)
                    bytes[index] = UInt8.random(in: 0...255, using: &generator)
                }
            case 1:
                bytes = Array(bytes.prefix(Int.random(in: 0..<bytes.count, using: &generator)))
            default:
                bytes = (0..<Int.random(in: 0..<9000, using: &generator)).map { _ in
                    UInt8.random(in: 0...255, using: &generator)
                }
                if round % 2 == 0, bytes.count >= 24 {
                    bytes.replaceSubrange(0..<8, with: FDStoreJournal.magic)
                }
            }
            let copy = try MemoryFile.create(name: "garbage")
            defer { System.close(copy.descriptor) }
            try copy.write(bytes, at: 0)
            if let (_, contents) = try? FDStoreJournal.open(copy) {
                #expect(contents.records <= 20)
            }
        }
    }

    @Test("store names: n and a base-62 slot, one spelling each; state and probe; nothing a socket unit uses")
    func storeNames() {
        #expect(Systemd.storeName(slot: 0) == "n0")
        #expect(Systemd.storeName(slot: 61) == "nz")
        #expect(Systemd.storeName(slot: 62) == "n10")
        #expect(Systemd.storeName(slot: 238_327) == "nzzz")
        for slot in [0, 1, 9, 10, 61, 62, 3843, 3844, 24_575, 238_328] {
            #expect(Systemd.slot(storeName: Systemd.storeName(slot: slot)) == slot)
        }
        for name in ["n", "n00", "n01", "x1", "n-1", "n1:2", "epmd", "http", "stored", "unknown", "nzzzzzz"] {
            #expect(Systemd.slot(storeName: name) == nil, "\(name)")
        }
        #expect(Systemd.isStoreName("state") && Systemd.isStoreName("probe") && Systemd.isStoreName("n5"))
        for name in ["epmd", "http", "epmd.socket", "stored", "unknown", nil] {
            #expect(!Systemd.isStoreName(name))
        }
        // 24,575 names and the sockets' fit in one environment string (execve's 128 KiB).
        let names = ["epmd", "http", "state"] + (0..<FDStore.maximumStored).map { Systemd.storeName(slot: $0) }
        #expect("LISTEN_FDNAMES=".utf8.count + names.joined(separator: ":").utf8.count + 1 <= 131_072)
    }

    @Test("classify: what the fd store gave back is set aside by name, unchecked; the listeners are checked as before")
    func classifyStored() throws {
        let tcp = Systemd.SocketKind(family: AF_INET, type: Int32(SOCK_STREAM.rawValue), listening: true)
        let sockets = try Systemd.classify(
            descriptors: [3, 4, 5, 6, 7],
            names: ["n3", "epmd", "state", "http", "n0"],
            kind: { [4, 6].contains($0) ? tcp : nil }
        )
        #expect(sockets.epmd == [4])
        #expect(sockets.http == 6)
        #expect(
            sockets.stored == [
                .init(name: "n3", fd: 3), .init(name: "state", fd: 5), .init(name: "n0", fd: 7),
            ]
        )
        #expect(Systemd.listenDescriptors(environment: ["LISTEN_FDS": "20000"])?.count == 20000)
    }
}
