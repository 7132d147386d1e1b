import EPMDApp
import EPMDPosix
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// systemd's notification socket with its fd store, as systemd 252 handles it (reference §4): a
/// datagram socket bound at a path, read on a thread of its own. `FDSTORE=1` keeps the passed
/// descriptors under `FDNAME=` (unless disabled, or full at `limit`: then they are closed, silently);
/// `FDSTOREREMOVE=1` closes the named ones; `BARRIER=1` closes its descriptor once everything before it
/// was handled; every other message's descriptors are closed. Every message is kept as text.
final class FakeFDStore: Sendable {
    struct Entry: Sendable {
        var name: String
        var fd: Int32
    }

    private struct State {
        var entries: [Entry] = []
        var messages: [String] = []
        /// When each message was read (monotonic nanoseconds).
        var times: [UInt64] = []
        var limit: Int
    }

    let path: String
    private let delay: UInt32
    private let fd: Int32
    private let state: Mutex<State>
    private let stop = Atomic<Bool>(false)
    private let thread = Mutex<PosixThread?>(nil)

    /// - Parameters:
    ///   - path: where to bind.
    ///   - limit: `FileDescriptorStoreMax=` (0: disabled).
    ///   - delay: microseconds spent on each message (a busy PID 1).
    init(path: String, limit: Int, delay: UInt32 = 0) throws {
        self.path = path
        self.delay = delay
        self.state = Mutex(State(limit: limit))
        self.fd = try NotifySocket.bindDatagram(path: path)
        let thread = try PosixThread(name: "fake-systemd") { [self] in self.serve() }
        self.thread.withLock { $0 = thread }
    }

    private func serve() {
        while !self.stop.load(ordering: .acquiring) {
            guard ProcessControl.waitReadable(self.fd, milliseconds: 50) else { continue }
            // One at a time, as systemd reads its notification socket from its event loop.
            while let (bytes, descriptors) = (try? NotifyDatagram.receive(on: self.fd)) ?? nil {
                if self.delay > 0 { usleep(self.delay) }
                self.handle(String(decoding: bytes, as: UTF8.self), descriptors)
            }
        }
    }

    private func handle(_ message: String, _ descriptors: [Int32]) {
        var fields: [String: String] = [:]
        for line in message.split(separator: "\n") {
            guard let equals = line.firstIndex(of: "=") else { continue }
            fields[String(line[..<equals])] = String(line[line.index(after: equals)...])
        }
        var close: [Int32] = []
        let now = System.monotonicNanoseconds()
        self.state.withLock { state in
            state.messages.append(message)
            state.times.append(now)
            if fields["FDSTOREREMOVE"] == "1", let name = fields["FDNAME"] {
                close += state.entries.filter { $0.name == name }.map(\.fd)
                state.entries.removeAll { $0.name == name }
            }
            if fields["FDSTORE"] == "1" {
                let name = fields["FDNAME"] ?? "stored"
                for fd in descriptors {
                    if state.entries.count < state.limit {
                        state.entries.append(Entry(name: name, fd: fd))
                    } else {
                        close.append(fd)
                    }
                }
            } else {
                close += descriptors
            }
        }
        for fd in close { Glibc.close(fd) }
    }

    /// Every message so far, oldest first.
    var messages: [String] { self.state.withLock { $0.messages } }

    /// Every message so far with the time it was read.
    var timedMessages: [(message: String, time: UInt64)] {
        self.state.withLock { state in Array(zip(state.messages, state.times)) }
    }

    /// The names stored now, in store order.
    var names: [String] { self.state.withLock { $0.entries.map(\.name) } }

    /// Copies of what is stored (`dup`, close-on-exec), as systemd passes them at the next start: in an
    /// arbitrary order (reversed here), the caller's to close.
    func passBack() -> [Systemd.StoredDescriptor] {
        self.state.withLock { state in
            state.entries.reversed().map {
                Systemd.StoredDescriptor(name: $0.name, fd: fcntl($0.fd, F_DUPFD_CLOEXEC, 3))
            }
        }
    }

    /// Closes everything stored and stops (as `systemctl stop` releases the store).
    func close() {
        self.stop.store(true, ordering: .releasing)
        self.thread.withLock { thread in
            thread?.join()
            thread = nil
        }
        let entries = self.state.withLock { state in
            defer { state.entries = [] }
            return state.entries
        }
        for entry in entries { Glibc.close(entry.fd) }
        Glibc.close(self.fd)
        unlink(self.path)
    }
}

/// Stands in front of the fd store's sender (`FDStore.attach(..., send:)`, ``attach(to:environment:logger:sendingLimit:)``): while closed, the sender's
/// thread waits in `send` (PID 1 busy elsewhere), so the copies it takes stay held and what comes after
/// waits; at most 10 s, so that a failing test cannot hang the sender. A slow ``FakeFDStore`` alone does
/// not fall behind deterministically: under ASan on a loaded machine it kept up with a burst.
final class SenderGate: Sendable {
    private let closed = Atomic<Bool>(false)

    func close() { self.closed.store(true, ordering: .releasing) }
    func open() { self.closed.store(false, ordering: .releasing) }

    /// The fd store of `gateway` (nothing restored), its sender to `NOTIFY_SOCKET` behind this gate.
    func attach(
        to gateway: Gateway,
        environment: [String: String],
        logger: Logger,
        sendingLimit: Int = FDStore.sendingLimit
    ) -> FDStore? {
        let send = FDStore.notifySender(environment: environment)
        return FDStore.attach(
            to: gateway,
            environment: environment,
            restored: nil,
            logger: logger,
            sendingLimit: sendingLimit
        ) { message, descriptors in
            for _ in 0..<10_000 where self.closed.load(ordering: .acquiring) { usleep(1_000) }
            return send(message, descriptors)
        }
    }
}
