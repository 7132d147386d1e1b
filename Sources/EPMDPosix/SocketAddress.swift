import CEPMDSystem

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// An IPv4 or IPv6 socket address, as a value. The address bytes are kept inline (no heap
/// allocation per accepted connection), exactly as they sit in `in_addr` / `in6_addr`.
public enum SocketAddress: Hashable, Sendable, CustomStringConvertible {
    /// IPv4: `s_addr` (network byte order, as in memory) and the port.
    case v4(address: UInt32, port: UInt16)
    /// IPv6: the 16 address bytes as two words (as in memory), the port, and the scope id.
    case v6(address: IPv6Words, port: UInt16, scope: UInt32)
    /// Anything else (Unix sockets, failed lookups).
    case other

    /// The 16 bytes of an IPv6 address, as two words in memory order.
    public struct IPv6Words: Hashable, Sendable {
        public var high: UInt64
        public var low: UInt64

        public init(high: UInt64, low: UInt64) {
            self.high = high
            self.low = low
        }

        init(_ raw: in6_addr) {
            self = withUnsafeBytes(of: raw) { bytes in
                IPv6Words(
                    high: bytes.loadUnaligned(fromByteOffset: 0, as: UInt64.self),
                    low: bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
                )
            }
        }

        init(bytes: [UInt8]) {
            var raw = in6_addr()
            withUnsafeMutableBytes(of: &raw) { $0.copyBytes(from: bytes.prefix(16)) }
            self.init(raw)
        }

        var raw: in6_addr {
            var raw = in6_addr()
            withUnsafeMutableBytes(of: &raw) { bytes in
                bytes.storeBytes(of: self.high, toByteOffset: 0, as: UInt64.self)
                bytes.storeBytes(of: self.low, toByteOffset: 8, as: UInt64.self)
            }
            return raw
        }

        var bytes: [UInt8] { withUnsafeBytes(of: self.raw) { Array($0) } }

        static let zero = IPv6Words(high: 0, low: 0)
        static let loopback = IPv6Words(bytes: [UInt8](repeating: 0, count: 15) + [1])
    }

    /// Parses an IP literal (IPv6 first, then IPv4, as C epmd does).
    public init?(literal: String, port: UInt16) {
        var v6 = in6_addr()
        if inet_pton(AF_INET6, literal, &v6) == 1 {
            self = .v6(address: IPv6Words(v6), port: port, scope: 0)
            return
        }
        var v4 = in_addr()
        if inet_pton(AF_INET, literal, &v4) == 1 {
            self = .v4(address: v4.s_addr, port: port)
            return
        }
        return nil
    }

    public static func anyIPv4(port: UInt16) -> SocketAddress { .v4(address: 0, port: port) }
    public static func anyIPv6(port: UInt16) -> SocketAddress { .v6(address: .zero, port: port, scope: 0) }
    public static func loopbackIPv4(port: UInt16) -> SocketAddress {
        .v4(address: UInt32(0x7F00_0001).bigEndian, port: port)
    }
    public static func loopbackIPv6(port: UInt16) -> SocketAddress { .v6(address: .loopback, port: port, scope: 0) }

    init(storage: sockaddr_storage) {
        var storage = storage
        switch Int32(storage.ss_family) {
        case AF_INET:
            self = withUnsafePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { pointer in
                    .v4(address: pointer.pointee.sin_addr.s_addr, port: UInt16(bigEndian: pointer.pointee.sin_port))
                }
            }
        case AF_INET6:
            self = withUnsafePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { pointer in
                    .v6(
                        address: IPv6Words(pointer.pointee.sin6_addr),
                        port: UInt16(bigEndian: pointer.pointee.sin6_port),
                        scope: pointer.pointee.sin6_scope_id
                    )
                }
            }
        default:
            self = .other
        }
    }

    public var family: Int32 {
        switch self {
        case .v4: AF_INET
        case .v6: AF_INET6
        case .other: AF_UNSPEC
        }
    }

    public var port: UInt16 {
        switch self {
        case .v4(_, let port), .v6(_, let port, _): port
        case .other: 0
        }
    }

    /// The address bytes without the port (for comparisons).
    public var hostBytes: [UInt8] {
        switch self {
        case .v4(let address, _): withUnsafeBytes(of: address) { Array($0) }
        case .v6(let address, _, _): address.bytes
        case .other: []
        }
    }

    /// 127.0.0.0/8 or ::1.
    public var isLoopback: Bool {
        switch self {
        case .v4(let address, _): UInt32(bigEndian: address) >> 24 == 127
        case .v6(let address, _, _): address == .loopback
        case .other: false
        }
    }

    /// For `::ffff:a.b.c.d`, the IPv4 address it maps; `nil` otherwise.
    public var mappedIPv4: SocketAddress? {
        guard case .v6(let address, let port, _) = self else { return nil }
        let bytes = address.bytes
        guard bytes[0..<10].allSatisfy({ $0 == 0 }), bytes[10] == 0xFF, bytes[11] == 0xFF else { return nil }
        return .v4(address: bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 12, as: UInt32.self) }, port: port)
    }

    /// The host part as text (`127.0.0.1`, `::1`).
    public var host: String {
        switch self {
        case .v4(let address, _):
            return withUnsafeBytes(of: address) { $0.map(String.init).joined(separator: ".") }
        case .v6(let address, _, _):
            var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
            var raw = address.raw
            guard inet_ntop(AF_INET6, &raw, &buffer, socklen_t(buffer.count)) != nil else { return "?" }
            return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        case .other:
            return "unknown"
        }
    }

    public var description: String {
        switch self {
        case .v4: "\(self.host):\(self.port)"
        case .v6: "[\(self.host)]:\(self.port)"
        case .other: "unknown"
        }
    }

    /// Calls `body` with a `sockaddr` pointer and its length.
    public func withSockaddrPublic<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        self.withSockaddr(body)
    }

    func withSockaddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        switch self {
        case .v4(let address, let port):
            var raw = sockaddr_in()
            raw.sin_family = sa_family_t(AF_INET)
            raw.sin_port = port.bigEndian
            raw.sin_addr.s_addr = address
            return withUnsafePointer(to: &raw) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    body($0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        case .v6(let address, let port, let scope):
            var raw = sockaddr_in6()
            raw.sin6_family = sa_family_t(AF_INET6)
            raw.sin6_port = port.bigEndian
            raw.sin6_scope_id = scope
            raw.sin6_addr = address.raw
            return withUnsafePointer(to: &raw) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    body($0, socklen_t(MemoryLayout<sockaddr_in6>.size))
                }
            }
        case .other:
            var raw = sockaddr()
            return body(&raw, 0)
        }
    }
}
