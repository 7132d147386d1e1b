import CEPMDSystem

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// An IPv4 or IPv6 socket address, as a value.
public enum SocketAddress: Hashable, Sendable, CustomStringConvertible {
    /// IPv4: address in network byte order as 4 bytes, and the port.
    case v4(address: [UInt8], port: UInt16)
    /// IPv6: 16 address bytes, the port, and the scope id.
    case v6(address: [UInt8], port: UInt16, scope: UInt32)
    /// Anything else (Unix sockets, failed lookups).
    case other

    /// Parses an IP literal (IPv6 first, then IPv4, as C epmd does).
    public init?(literal: String, port: UInt16) {
        var v6 = in6_addr()
        if inet_pton(AF_INET6, literal, &v6) == 1 {
            self = .v6(address: withUnsafeBytes(of: v6) { Array($0) }, port: port, scope: 0)
            return
        }
        var v4 = in_addr()
        if inet_pton(AF_INET, literal, &v4) == 1 {
            self = .v4(address: withUnsafeBytes(of: v4) { Array($0) }, port: port)
            return
        }
        return nil
    }

    public static func anyIPv4(port: UInt16) -> SocketAddress { .v4(address: [0, 0, 0, 0], port: port) }
    public static func anyIPv6(port: UInt16) -> SocketAddress {
        .v6(address: [UInt8](repeating: 0, count: 16), port: port, scope: 0)
    }
    public static func loopbackIPv4(port: UInt16) -> SocketAddress { .v4(address: [127, 0, 0, 1], port: port) }
    public static func loopbackIPv6(port: UInt16) -> SocketAddress {
        .v6(address: [UInt8](repeating: 0, count: 15) + [1], port: port, scope: 0)
    }

    init(storage: sockaddr_storage) {
        var storage = storage
        switch Int32(storage.ss_family) {
        case AF_INET:
            self = withUnsafePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { pointer in
                    .v4(
                        address: withUnsafeBytes(of: pointer.pointee.sin_addr) { Array($0) },
                        port: UInt16(bigEndian: pointer.pointee.sin_port)
                    )
                }
            }
        case AF_INET6:
            self = withUnsafePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { pointer in
                    .v6(
                        address: withUnsafeBytes(of: pointer.pointee.sin6_addr) { Array($0) },
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
        case .v4(let address, _), .v6(let address, _, _): address
        case .other: []
        }
    }

    /// 127.0.0.0/8 or ::1.
    public var isLoopback: Bool {
        switch self {
        case .v4(let address, _): address.first == 127
        case .v6(let address, _, _): address == [UInt8](repeating: 0, count: 15) + [1]
        case .other: false
        }
    }

    /// For `::ffff:a.b.c.d`, the IPv4 address it maps; `nil` otherwise.
    public var mappedIPv4: SocketAddress? {
        guard case .v6(let address, let port, _) = self,
            address[0..<10].allSatisfy({ $0 == 0 }), address[10] == 0xFF, address[11] == 0xFF
        else { return nil }
        return .v4(address: Array(address[12..<16]), port: port)
    }

    /// The host part as text (`127.0.0.1`, `::1`).
    public var host: String {
        switch self {
        case .v4(let address, _):
            return address.map(String.init).joined(separator: ".")
        case .v6(let address, _, _):
            var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
            var raw = in6_addr()
            withUnsafeMutableBytes(of: &raw) { $0.copyBytes(from: address) }
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
            withUnsafeMutableBytes(of: &raw.sin_addr) { $0.copyBytes(from: address) }
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
            withUnsafeMutableBytes(of: &raw.sin6_addr) { $0.copyBytes(from: address) }
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
