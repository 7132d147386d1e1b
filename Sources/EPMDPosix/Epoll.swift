import CEPMDSystem

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The readiness bits of an epoll registration or event, as a typed set.
public struct EpollEvents: OptionSet, Hashable, Sendable {
    public let rawValue: UInt32

    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// `EPOLLIN`: readable (for a listener: a connection to accept).
    public static let input = EpollEvents(rawValue: UInt32(EPOLLIN.rawValue))
    /// `EPOLLOUT`: writable.
    public static let output = EpollEvents(rawValue: UInt32(EPOLLOUT.rawValue))
    /// `EPOLLRDHUP`: the peer shut down its writing side.
    public static let readHangUp = EpollEvents(rawValue: UInt32(EPOLLRDHUP.rawValue))
    /// `EPOLLHUP`: both sides are shut (always reported, never asked for).
    public static let hangUp = EpollEvents(rawValue: UInt32(EPOLLHUP.rawValue))
    /// `EPOLLERR`: a pending socket error (always reported, never asked for).
    public static let error = EpollEvents(rawValue: UInt32(EPOLLERR.rawValue))
}

/// An epoll instance and the buffer its events are read into. One thread owns it (the loop's);
/// nothing outside this module sees a pointer: events come back as `(EpollEvents, UInt64)` values.
public final class Epoll {
    /// The epoll descriptor (close-on-exec); closed when the instance goes away.
    public let descriptor: Int32
    /// The most events one `wait` returns.
    public let capacity: Int
    private var bits: [UInt32]
    private var data: [UInt64]

    /// Creates the epoll instance.
    /// - Parameter capacity: the most events one `wait` returns (at most 256, the C shim's buffer).
    /// - Throws: `SystemError` when no epoll instance can be made.
    public init(capacity: Int = 256) throws(SystemError) {
        self.capacity = max(1, min(capacity, 256))
        self.descriptor = try System.epollCreate()
        self.bits = [UInt32](repeating: 0, count: self.capacity)
        self.data = [UInt64](repeating: 0, count: self.capacity)
    }

    deinit { System.close(self.descriptor) }

    /// Watches `fd` for `events`; `data` comes back with each of its events.
    @inline(never)
    public func add(_ fd: Int32, events: EpollEvents, data: UInt64) throws(SystemError) {
        _ = try System.syscall("epoll_ctl") {
            cepmd_epoll_ctl(self.descriptor, EPOLL_CTL_ADD, fd, events.rawValue, data)
        }
    }

    /// Changes what `fd` is watched for (an empty set pauses it, errors and hang-ups aside).
    @inline(never)
    public func modify(_ fd: Int32, events: EpollEvents, data: UInt64) throws(SystemError) {
        _ = try System.syscall("epoll_ctl") {
            cepmd_epoll_ctl(self.descriptor, EPOLL_CTL_MOD, fd, events.rawValue, data)
        }
    }

    /// Stops watching `fd` (closing a descriptor does this by itself).
    @inline(never)
    public func delete(_ fd: Int32) throws(SystemError) {
        _ = try System.syscall("epoll_ctl") { cepmd_epoll_ctl(self.descriptor, EPOLL_CTL_DEL, fd, 0, 0) }
    }

    /// Waits for events; read them with `event(at:)`.
    /// - Parameter timeoutMilliseconds: the longest wait; -1 waits for ever.
    /// - Returns: how many events are ready (0 on timeout, or when a signal interrupted the wait).
    /// - Throws: `SystemError` when epoll itself fails.
    @inline(never)
    public func wait(timeoutMilliseconds: Int32) throws(SystemError) -> Int {
        let capacity = Int32(self.capacity)
        let epfd = self.descriptor
        let result = self.bits.withUnsafeMutableBufferPointer { bits in
            self.data.withUnsafeMutableBufferPointer { data in
                Result { () throws(SystemError) in
                    // EINTR here means a signal arrived: report no events so the loop re-checks its state.
                    try System.syscall("epoll_wait") {
                        let result = cepmd_epoll_wait(
                            epfd,
                            bits.baseAddress,
                            data.baseAddress,
                            capacity,
                            timeoutMilliseconds
                        )
                        return result < 0 && errno == EINTR ? 0 : result
                    }
                }
            }
        }
        return Int(try result.get())
    }

    /// The `index`th event of the last `wait` (below the count it returned).
    public func event(at index: Int) -> (events: EpollEvents, data: UInt64) {
        (EpollEvents(rawValue: self.bits[index]), self.data[index])
    }
}
