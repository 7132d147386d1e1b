#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A failed system call: which one, and its errno.
public struct SystemError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The system call's name.
    public var operation: String
    /// The errno it left.
    public var errno: Int32

    public init(_ operation: String, errno: Int32) {
        self.operation = operation
        self.errno = errno
    }

    /// The C library's text for the errno.
    public var message: String {
        guard let text = strerror(self.errno) else { return "errno \(self.errno)" }
        return String(cString: text)
    }

    public var description: String { "\(self.operation): \(self.message)" }

    /// EMFILE / ENFILE / ENOBUFS / ENOMEM: the process or system is out of descriptors or memory.
    public var isResourceExhaustion: Bool {
        self.errno == EMFILE || self.errno == ENFILE || self.errno == ENOBUFS || self.errno == ENOMEM
    }
}
