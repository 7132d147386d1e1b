import EPMDPosix
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The fd store's messages, sent in order on a thread of their own, so that the epmd loop never waits
/// for systemd. PID 1 reads its notification socket when it can (the kernel queues 10 datagrams by
/// default, `net.unix.max_dgram_qlen`), and systemd 252 compares each new stored descriptor with every
/// one it holds: at 19,000 registrations one `FDSTORE=1` costs it milliseconds. A registration's socket
/// is duplicated when queued (the loop may close its own copy at once), and the copy is closed once
/// sent; `FDStore` bounds how many copies are queued (``FDStore/sendingLimit``). Each message is retried while systemd's queue stays full (up to about 20 s), then given up.
///
/// At most ``window`` messages are in systemd's queue at a time: after each window a `BARRIER=1` is
/// sent and its answer awaited, so that the queue (shared by every service) keeps room for the loop's
/// own `WATCHDOG=1` and `STATUS=`, which never wait: a flood of registrations must not starve the
/// watchdog (systemd would kill the gateway).
final class FDStoreSender: Sendable {
    private struct Message: Sendable {
        var text: String
        var descriptor: Int32?
        var completion: (@Sendable (Bool) -> Void)?
    }

    private struct Queue {
        var messages: [Message] = []
        var head = 0
        var stopped = false
        var idle = true
    }

    /// Tries per message: each send waits up to 2 s behind a full queue.
    static let attempts = 10
    /// Messages sent before waiting for systemd to have read them (the kernel queues 10 by default).
    static let window = 4
    /// How long one barrier is waited for, milliseconds.
    static let barrierTimeout: Int32 = 30_000

    /// The queue, shared with the thread (which must not keep the sender alive).
    private final class Shared: Sendable {
        let queue = Mutex(Queue())
    }

    private let shared = Shared()
    private let wake: WakeEvent
    /// The sender's thread (never joined: it ends by itself once stopped).
    private let thread: PosixThread

    /// - Parameter send: sends one message with descriptors (blocking, bounded).
    /// - Throws: `SystemError` when the thread or its wake-up cannot be made.
    init(send: @escaping @Sendable (_ message: String, _ descriptors: [Int32]) -> Bool) throws(SystemError) {
        let wake = try WakeEvent()
        self.wake = wake
        let thread = try PosixThread(name: "fdstore-send") { [shared = self.shared, wake] in
            Self.run(shared: shared, wake: wake, send: send)
        }
        self.thread = thread
    }

    deinit { self.stop() }

    /// Queues `text`, with a duplicate of `descriptor` (the caller keeps its own); `completion` (on the
    /// sender's thread) tells whether it was sent. A descriptor that cannot be duplicated, or a stopped
    /// sender, fails at once: `completion(false)` on the caller's thread, and false returned.
    @discardableResult
    func enqueue(
        _ text: String,
        duplicating descriptor: Int32? = nil,
        completion: (@Sendable (Bool) -> Void)? = nil
    ) -> Bool {
        var copy: Int32?
        if let descriptor {
            let duplicate = fcntl(descriptor, F_DUPFD_CLOEXEC, 3)
            guard duplicate >= 0 else {
                completion?(false)
                return false
            }
            copy = duplicate
        }
        let accepted = self.shared.queue.withLock { queue -> Bool in
            guard !queue.stopped else { return false }
            queue.messages.append(Message(text: text, descriptor: copy, completion: completion))
            queue.idle = false
            return true
        }
        guard accepted else {
            if let copy { System.close(copy) }
            completion?(false)
            return false
        }
        self.wake.signal()
        return true
    }

    /// Whether every queued message was handled (for tests and the shutdown).
    var isIdle: Bool { self.shared.queue.withLock { $0.idle } }

    /// Waits (at most `milliseconds`) until everything queued was sent.
    @discardableResult
    func drain(milliseconds: Int) -> Bool {
        for _ in 0..<max(1, milliseconds / 5) {
            if self.isIdle { return true }
            usleep(5000)
        }
        return self.isIdle
    }

    /// Stops the thread; what is still queued is dropped (its descriptors closed). Never waits: the
    /// thread ends after the barrier it may be waiting for (the deinit must not block a caller's thread).
    func stop() {
        self.shared.queue.withLock { $0.stopped = true }
        self.wake.signal()
    }

    private static func run(
        shared: Shared,
        wake: WakeEvent,
        send: @Sendable (_ message: String, _ descriptors: [Int32]) -> Bool
    ) {
        while true {
            let (batch, stopped) = shared.queue.withLock { queue -> ([Message], Bool) in
                let batch = Array(queue.messages[queue.head...])
                queue.messages.removeAll(keepingCapacity: true)
                queue.head = 0
                if batch.isEmpty { queue.idle = true }
                return (batch, queue.stopped)
            }
            if stopped {
                for message in batch {
                    if let fd = message.descriptor { System.close(fd) }
                    message.completion?(false)
                }
                return
            }
            if batch.isEmpty {
                wake.wait(milliseconds: -1)
                continue
            }
            for (index, message) in batch.enumerated() {
                if index > 0 && index % self.window == 0 {
                    _ = self.barrier(send: send, timeout: self.barrierTimeout)
                }
                var sent = false
                for _ in 0..<self.attempts {
                    sent = send(message.text, message.descriptor.map { [$0] } ?? [])
                    if sent || shared.queue.withLock({ $0.stopped }) { break }
                }
                if let fd = message.descriptor { System.close(fd) }
                message.completion?(sent)
            }
            _ = self.barrier(send: send, timeout: self.barrierTimeout)
        }
    }

    /// Sends `BARRIER=1` with a pipe's write end and waits until systemd closed it (it does once every
    /// message before it was handled), at most `timeout` milliseconds.
    /// - Returns: whether the answer came (false: not sent, or no answer in time).
    static func barrier(send: @Sendable (_ message: String, _ descriptors: [Int32]) -> Bool, timeout: Int32) -> Bool {
        // Close-on-exec from the start: a program that another thread starts meanwhile without closing
        // what it does not pass must not hold the write end, or the barrier would wait its whole timeout.
        guard let ends = try? System.makePipe() else { return false }
        defer { System.close(ends.read) }
        let sent = send("BARRIER=1", [ends.write])
        System.close(ends.write)
        guard sent else { return false }
        var entry = pollfd(fd: ends.read, events: 0, revents: 0)
        return ((try? System.syscall("poll") { poll(&entry, 1, timeout) }) ?? 0) > 0
    }
}
