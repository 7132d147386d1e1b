import CEPMDSystem

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A plain POSIX thread running one closure: the epmd loop and the HTTP front's helper threads run on
/// these, never on the Swift concurrency pool (they block in epoll or poll) and without Foundation.
public final class PosixThread: Sendable {
    private final class Box {
        let name: String
        let body: @Sendable () -> Void
        init(_ name: String, _ body: @escaping @Sendable () -> Void) {
            self.name = name
            self.body = body
        }
    }

    // The pthread_t, as an integer (it is an unsigned long on Linux). Written once, before `init` returns.
    private let handle: UInt

    /// Starts `body` on a new thread.
    /// - Parameters:
    ///   - name: the thread's name as `top -H` shows it (15 bytes at most are kept).
    ///   - stackSize: the stack size in bytes (0: the system's default).
    ///   - body: what the thread runs; the thread ends when it returns.
    /// - Throws: `SystemError` when the thread cannot be created.
    public init(name: String, stackSize: Int = 0, _ body: @escaping @Sendable () -> Void) throws(SystemError) {
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        if stackSize > 0 { pthread_attr_setstacksize(&attributes, stackSize) }
        let box = Unmanaged.passRetained(Box(name, body)).toOpaque()
        var thread = pthread_t()
        let result = pthread_create(
            &thread,
            &attributes,
            { argument in
                guard let argument else { return nil }
                let box = Unmanaged<Box>.fromOpaque(argument).takeRetainedValue()
                cepmd_set_thread_name(box.name)
                box.body()
                return nil
            },
            box
        )
        guard result == 0 else {
            Unmanaged<Box>.fromOpaque(box).release()
            throw SystemError("pthread_create", errno: result)
        }
        self.handle = UInt(thread)
    }

    /// Waits for the thread to end. Call once, from another thread.
    public func join() {
        _ = pthread_join(pthread_t(self.handle), nil)
    }
}
