/// Identifies one accepted connection for the life of the process. Registrations are keyed by it,
/// never by file descriptor (descriptors are reused; ids are not).
public struct ConnectionID: Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64

    public init(_ rawValue: UInt64) { self.rawValue = rawValue }

    public var description: String { "#\(self.rawValue)" }
}
