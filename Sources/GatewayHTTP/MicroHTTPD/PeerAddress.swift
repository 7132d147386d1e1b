import CMicroHTTPD

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A client's IP address as a table key: what the per-address share counts by. An IPv4 peer seen
/// through a dual-stack IPv6 socket (`::ffff:a.b.c.d`) is the same key as the plain IPv4 one, so one
/// client cannot double its share by connecting both ways. Loopback is an address like any other.
struct PeerAddress: Hashable, Sendable, CustomStringConvertible {
    /// The 16 bytes of the IPv6 address, or of the IPv4-mapped one (`::ffff:a.b.c.d`) for IPv4.
    private let high: UInt64
    private let low: UInt64

    /// The IPv4 address `a.b.c.d` (as `::ffff:a.b.c.d`).
    init(ipv4 bytes: (UInt8, UInt8, UInt8, UInt8)) {
        self.high = 0
        self.low =
            0x0000_FFFF_0000_0000 | UInt64(truncatingIfNeeded: bytes.0) << 24 | UInt64(truncatingIfNeeded: bytes.1)
            << 16
            | UInt64(truncatingIfNeeded: bytes.2) << 8 | UInt64(truncatingIfNeeded: bytes.3)
    }

    /// The IPv6 address of 16 bytes, network order.
    init(ipv6 bytes: some Collection<UInt8>) {
        var high: UInt64 = 0
        var low: UInt64 = 0
        for (index, byte) in bytes.prefix(16).enumerated() {
            if index < 8 {
                high = high << 8 | UInt64(truncatingIfNeeded: byte)
            } else {
                low = low << 8 | UInt64(truncatingIfNeeded: byte)
            }
        }
        self.high = high
        self.low = low
    }

    /// The address of a socket address libmicrohttpd hands over; nil for a family other than IPv4
    /// and IPv6, or a length too short for its family.
    init?(_ address: UnsafePointer<sockaddr>, length: socklen_t) {
        let family = Int32(truncatingIfNeeded: address.pointee.sa_family)
        if family == AF_INET, Int(truncatingIfNeeded: length) >= MemoryLayout<sockaddr_in>.size {
            let host = UnsafeRawPointer(address).loadUnaligned(as: sockaddr_in.self).sin_addr.s_addr
            // `s_addr` is in network order: its first byte in memory is the first of the dotted four.
            let bytes = withUnsafeBytes(of: host) { ($0[0], $0[1], $0[2], $0[3]) }
            self.init(ipv4: bytes)
        } else if family == AF_INET6, Int(truncatingIfNeeded: length) >= MemoryLayout<sockaddr_in6>.size {
            var host = UnsafeRawPointer(address).loadUnaligned(as: sockaddr_in6.self).sin6_addr
            self = withUnsafeBytes(of: &host) { PeerAddress(ipv6: $0) }
        } else {
            return nil
        }
    }

    /// Whether it is an IPv4 address (kept as `::ffff:a.b.c.d`).
    var isIPv4: Bool { self.high == 0 && self.low >> 32 == 0x0000_FFFF }

    /// `a.b.c.d` for IPv4, the usual IPv6 text otherwise (for log lines).
    var description: String {
        if self.isIPv4 {
            let value = UInt32(truncatingIfNeeded: self.low)
            return "\(value >> 24).\(value >> 16 & 0xFF).\(value >> 8 & 0xFF).\(value & 0xFF)"
        }
        var host = in6_addr()
        withUnsafeMutableBytes(of: &host) { raw in
            for index in 0..<8 {
                raw[index] = UInt8(truncatingIfNeeded: self.high >> (56 - 8 * index))
                raw[8 + index] = UInt8(truncatingIfNeeded: self.low >> (56 - 8 * index))
            }
        }
        var text = [CChar](repeating: 0, count: Int(truncatingIfNeeded: INET6_ADDRSTRLEN))
        guard inet_ntop(AF_INET6, &host, &text, socklen_t(truncatingIfNeeded: text.count)) != nil else { return "?" }
        return text.withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: UInt8.self) { bytes in
                String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
            }
        }
    }
}
