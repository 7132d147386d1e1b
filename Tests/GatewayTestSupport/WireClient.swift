import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The one raw-socket epmd client of the tests, for the in-process server and for the binary under test.
///
/// Every reading call comes twice, with the same name and arguments: from async code it never blocks a
/// thread (it polls with `MSG_DONTWAIT` and waits with `Task.sleep`, so that the many tests that wait for
/// timeouts can run in parallel on two cores); from synchronous code it blocks in `poll(2)`. Both are
/// bounded by the `within`/`for` time given.
public enum WireClient {
    /// How a read ended.
    public enum Ending: Equatable, Sendable, CustomStringConvertible {
        /// The server closed (FIN).
        case eof
        /// The connection was reset (or another socket error, errno kept).
        case reset(Int32)
        /// Still open when the time ran out (or when the wanted byte count arrived).
        case open

        public var closed: Bool { self != .open }

        public var description: String {
            switch self {
            case .eof: "EOF"
            case .reset(let err): "reset (errno \(err))"
            case .open: "still open"
            }
        }
    }

    public struct Outcome: Sendable, CustomStringConvertible {
        public var bytes: [UInt8]
        public var ending: Ending
        /// Time spent in `collect`.
        public var elapsed: Duration

        /// The bytes if the server closed the connection after them (FIN, or a reset: ECONNRESET), nil if
        /// it was still open when the time ran out or another socket error ended the read.
        public var untilClose: [UInt8]? {
            switch self.ending {
            case .eof, .reset(ECONNRESET): self.bytes
            default: nil
            }
        }

        public var description: String { "\(ending) after \(elapsed) with bytes [\(WireClient.hex(bytes))]" }
    }

    // MARK: Bytes

    public static func hex(_ bytes: some Collection<UInt8>) -> String {
        let shown = bytes.prefix(64).map { String(format: "%02x", $0) }.joined(separator: " ")
        return bytes.count > 64 ? shown + " … (\(bytes.count) bytes)" : shown
    }

    public static func be16(_ value: Int) -> [UInt8] { [UInt8(value >> 8 & 0xff), UInt8(value & 0xff)] }

    public static func be32(_ value: UInt32) -> [UInt8] {
        [UInt8(value >> 24 & 0xff), UInt8(value >> 16 & 0xff), UInt8(value >> 8 & 0xff), UInt8(value & 0xff)]
    }

    public static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    /// The 2-byte big-endian length, then `body`.
    public static func frame(_ body: [UInt8]) -> [UInt8] {
        self.be16(body.count) + body
    }

    /// An ALIVE2_REQ body.
    public static func alive2(
        name: [UInt8],
        port: UInt16,
        type: UInt8 = 77,
        protocol proto: UInt8 = 0,
        high: UInt16 = 6,
        low: UInt16 = 5,
        extra: [UInt8] = []
    ) -> [UInt8] {
        [120] + self.be16(Int(port)) + [type, proto] + self.be16(Int(high)) + self.be16(Int(low))
            + self.be16(name.count) + name + self.be16(extra.count) + extra
    }

    /// The reply `77 00 …` that PORT_PLEASE2 gives for a registration.
    public static func port2Found(
        name: [UInt8],
        nodePort: UInt16,
        type: UInt8 = 77,
        protocol proto: UInt8 = 0,
        high: UInt16 = 6,
        low: UInt16 = 5,
        extra: [UInt8] = []
    ) -> [UInt8] {
        [119, 0] + self.be16(Int(nodePort)) + [type, proto] + self.be16(Int(high)) + self.be16(Int(low))
            + self.be16(name.count) + name + self.be16(extra.count) + extra
    }

    // MARK: Sockets

    /// Calls `body` with the socket address of `host` (an IPv4 or IPv6 literal) and `port`.
    public static func withSocketAddress<R>(
        host: String,
        port: UInt16,
        _ body: (UnsafePointer<sockaddr>, socklen_t) -> R
    ) -> R {
        if host.contains(":") {
            var addr = sockaddr_in6()
            addr.sin6_family = sa_family_t(AF_INET6)
            inet_pton(AF_INET6, host, &addr.sin6_addr)
            addr.sin6_port = port.bigEndian
            return withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    body($0, socklen_t(MemoryLayout<sockaddr_in6>.size))
                }
            }
        }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        inet_pton(AF_INET, host, &addr.sin_addr)
        addr.sin_port = port.bigEndian
        return withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                body($0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
    }

    public static func canConnect(port: UInt16, host: String = "127.0.0.1") -> Bool {
        guard let fd = try? self.connect(port: port, host: host) else { return false }
        close(fd)
        return true
    }

    /// Opens a TCP connection to host:port (IPv4 or IPv6 literal). Blocking, like `connect(2)`; reads on
    /// it go through `collect`, which is bounded.
    public static func connect(port: UInt16, host: String = "127.0.0.1", from source: String? = nil) throws -> Int32 {
        // Close-on-exec: a program another test starts at this moment must not keep the connection open
        // (a registration would then outlive its close here).
        let fd = socket(
            host.contains(":") ? AF_INET6 : AF_INET,
            Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue),
            0
        )
        guard fd >= 0 else { throw TestFailure("socket: errno \(errno)") }
        if let source {
            // A source address of its own (127.0.0.2, ...): a second client host on loopback.
            let bound = self.withSocketAddress(host: source, port: 0) { Glibc.bind(fd, $0, $1) }
            guard bound == 0 else {
                let err = errno
                close(fd)
                throw TestFailure("bind to \(source): errno \(err)")
            }
        }
        let rc = self.withSocketAddress(host: host, port: port) { Glibc.connect(fd, $0, $1) }
        guard rc == 0 else {
            let err = errno
            close(fd)
            throw TestFailure("connect to \(host):\(port): errno \(err)")
        }
        return fd
    }

    /// Sends everything; returns false if the peer had already closed (EPIPE/ECONNRESET).
    @discardableResult
    public static func send(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return false }
            offset += n
        }
        return true
    }

    /// Closes with SO_LINGER {1, 0}: the peer gets an RST instead of a FIN.
    public static func resetClose(_ fd: Int32) {
        var lingerOption = linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lingerOption, socklen_t(MemoryLayout<linger>.size))
        close(fd)
    }

    // MARK: Reads

    /// One read in progress: what `collect` gathered so far and when it must stop.
    private struct Reader {
        let fd: Int32
        let count: Int?
        let clock = ContinuousClock()
        let start: ContinuousClock.Instant
        let deadline: ContinuousClock.Instant
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        var pause = Duration.microseconds(200)

        init(fd: Int32, limit: Duration, count: Int?) {
            self.fd = fd
            self.count = count
            self.start = self.clock.now
            self.deadline = self.start.advanced(by: limit)
        }

        private func outcome(_ ending: Ending) -> Outcome {
            Outcome(bytes: self.bytes, ending: ending, elapsed: self.start.duration(to: self.clock.now))
        }

        /// Reads whatever is there without blocking. Returns the outcome once the read is over; nil when
        /// the caller must wait for more.
        mutating func step() -> Outcome? {
            while true {
                let want = self.count.map { min($0 - self.bytes.count, self.buffer.count) } ?? self.buffer.count
                let fd = self.fd
                let n = self.buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, want, Int32(MSG_DONTWAIT)) }
                if n > 0 {
                    self.bytes += self.buffer[0..<n]
                    self.pause = .microseconds(200)
                    if let count = self.count, self.bytes.count >= count { return self.outcome(.open) }
                    continue
                }
                if n == 0 { return self.outcome(.eof) }
                let err = errno
                if err == EINTR { continue }
                if err != EAGAIN && err != EWOULDBLOCK { return self.outcome(.reset(err)) }
                if self.clock.now >= self.deadline { return self.outcome(.open) }
                return nil
            }
        }

        /// The next `Task.sleep`: 200 µs after data, doubling up to 20 ms.
        mutating func nextPause() -> Duration {
            defer { self.pause = min(self.pause * 2, .milliseconds(20)) }
            return self.pause
        }

        /// Blocks in `poll(2)` until the socket is readable or the deadline passes.
        func waitReadable() {
            let left = self.clock.now.duration(to: self.deadline)
            let milliseconds = Int32(clamping: max(1, Int((left / .milliseconds(1)).rounded(.up))))
            var entry = pollfd(fd: self.fd, events: Int16(POLLIN), revents: 0)
            _ = poll(&entry, 1, milliseconds)
        }
    }

    /// Reads whatever arrives until the peer closes, `limit` passes, or `count` bytes have arrived.
    public static func collect(_ fd: Int32, for limit: Duration, upTo count: Int? = nil) async -> Outcome {
        var reader = Reader(fd: fd, limit: limit, count: count)
        while true {
            if let outcome = reader.step() { return outcome }
            try? await Task.sleep(for: reader.nextPause())
        }
    }

    /// `collect`, blocking the calling thread in `poll(2)`.
    public static func collect(_ fd: Int32, for limit: Duration, upTo count: Int? = nil) -> Outcome {
        var reader = Reader(fd: fd, limit: limit, count: count)
        while true {
            if let outcome = reader.step() { return outcome }
            reader.waitReadable()
        }
    }

    /// Reads until the peer closes: the bytes, or nil if it had not closed within `limit` (see
    /// `Outcome.untilClose`).
    public static func readToEOF(_ fd: Int32, within limit: Duration = .seconds(5)) async -> [UInt8]? {
        await self.collect(fd, for: limit).untilClose
    }

    /// `readToEOF`, blocking the calling thread.
    public static func readToEOF(_ fd: Int32, within limit: Duration = .seconds(5)) -> [UInt8]? {
        self.collect(fd, for: limit).untilClose
    }

    /// Reads exactly `count` bytes; throws if the connection ends or the time runs out first.
    public static func read(_ fd: Int32, count: Int, within limit: Duration = .seconds(10)) async throws -> [UInt8] {
        try self.exactly(count, await self.collect(fd, for: limit, upTo: count))
    }

    /// `read`, blocking the calling thread.
    public static func read(_ fd: Int32, count: Int, within limit: Duration = .seconds(10)) throws -> [UInt8] {
        try self.exactly(count, self.collect(fd, for: limit, upTo: count))
    }

    private static func exactly(_ count: Int, _ outcome: Outcome) throws -> [UInt8] {
        guard outcome.bytes.count == count else {
            throw TestFailure("wanted \(count) bytes, got \(outcome)")
        }
        return outcome.bytes
    }

    // MARK: Requests

    /// Connects, sends `raw` as is (no framing added) and collects until the server closes.
    public static func exchange(
        port: UInt16,
        raw: [UInt8],
        host: String = "127.0.0.1",
        within limit: Duration = .seconds(10)
    ) async throws -> Outcome {
        let fd = try self.connect(port: port, host: host)
        defer { close(fd) }
        self.send(fd, raw)
        return await self.collect(fd, for: limit)
    }

    /// `exchange`, blocking the calling thread.
    public static func exchange(
        port: UInt16,
        raw: [UInt8],
        host: String = "127.0.0.1",
        within limit: Duration = .seconds(10)
    ) throws -> Outcome {
        let fd = try self.connect(port: port, host: host)
        defer { close(fd) }
        self.send(fd, raw)
        return self.collect(fd, for: limit)
    }

    /// One framed request on a fresh connection; everything up to the server's close.
    public static func request(
        port: UInt16,
        _ body: [UInt8],
        host: String = "127.0.0.1",
        within limit: Duration = .seconds(10)
    ) async throws -> Outcome {
        try await self.exchange(port: port, raw: self.frame(body), host: host, within: limit)
    }

    /// `request`, blocking the calling thread.
    public static func request(
        port: UInt16,
        _ body: [UInt8],
        host: String = "127.0.0.1",
        within limit: Duration = .seconds(10)
    ) throws -> Outcome {
        try self.exchange(port: port, raw: self.frame(body), host: host, within: limit)
    }

    /// Sends an ALIVE2_REQ body on a new connection and reads the 6- or 4-byte reply.
    /// The connection stays open (closing it unregisters the name).
    public static func register(
        port: UInt16,
        body: [UInt8],
        replySize: Int,
        host: String = "127.0.0.1"
    ) async throws -> (fd: Int32, reply: [UInt8]) {
        let fd = try self.sendRegistration(port: port, body: body, host: host)
        do {
            return (fd, try await self.read(fd, count: replySize))
        } catch {
            close(fd)
            throw error
        }
    }

    /// `register`, blocking the calling thread.
    public static func register(
        port: UInt16,
        body: [UInt8],
        replySize: Int,
        host: String = "127.0.0.1"
    ) throws -> (fd: Int32, reply: [UInt8]) {
        let fd = try self.sendRegistration(port: port, body: body, host: host)
        do {
            return (fd, try self.read(fd, count: replySize))
        } catch {
            close(fd)
            throw error
        }
    }

    private static func sendRegistration(port: UInt16, body: [UInt8], host: String) throws -> Int32 {
        let fd = try self.connect(port: port, host: host)
        guard self.send(fd, self.frame(body)) else {
            let err = errno
            close(fd)
            throw TestFailure("send failed: errno \(err)")
        }
        return fd
    }

    /// Registers `name` (UTF-8) with the usual fields; returns the open connection and the reply.
    public static func register(
        port: UInt16,
        name: String,
        nodePort: UInt16,
        type: UInt8 = 77,
        high: UInt16 = 6,
        low: UInt16 = 5,
        extra: [UInt8] = [],
        host: String = "127.0.0.1"
    ) async throws -> (fd: Int32, reply: [UInt8]) {
        let body = self.alive2(name: Array(name.utf8), port: nodePort, type: type, high: high, low: low, extra: extra)
        return try await self.register(port: port, body: body, replySize: high >= 6 ? 6 : 4, host: host)
    }

    /// `register`, blocking the calling thread.
    public static func register(
        port: UInt16,
        name: String,
        nodePort: UInt16,
        type: UInt8 = 77,
        high: UInt16 = 6,
        low: UInt16 = 5,
        extra: [UInt8] = [],
        host: String = "127.0.0.1"
    ) throws -> (fd: Int32, reply: [UInt8]) {
        let body = self.alive2(name: Array(name.utf8), port: nodePort, type: type, high: high, low: low, extra: extra)
        return try self.register(port: port, body: body, replySize: high >= 6 ? 6 : 4, host: host)
    }

    /// Registers many names with pipelining (connect a batch, send all, then read all replies).
    /// Returns the open connections and replies in the order of `names`. The work runs on a thread of
    /// its own: thousands of blocking connects (each can wait for a full accept queue) would otherwise
    /// hold a thread of the 2-thread cooperative pool, and every test running beside it would wake late.
    public static func registerMany(
        port: UInt16,
        names: [String],
        nodePort: (Int) -> UInt16,
        batch: Int = 250
    ) async throws -> [(fd: Int32, reply: [UInt8])] {
        let requests = names.indices.map { self.frame(self.alive2(name: Array(names[$0].utf8), port: nodePort($0))) }
        let registered = try await Blocking.run { try self.registerMany(port: port, requests: requests, batch: batch) }
        return registered.map { ($0.fd, $0.reply) }
    }

    private struct Registered: Sendable {
        var fd: Int32
        var reply: [UInt8]
    }

    private static func registerMany(port: UInt16, requests: [[UInt8]], batch: Int) throws -> [Registered] {
        var result: [Registered] = []
        result.reserveCapacity(requests.count)
        var pending: [Int32] = []
        do {
            var index = 0
            while index < requests.count {
                let end = min(index + batch, requests.count)
                for i in index..<end {
                    let fd = try self.connect(port: port)
                    pending.append(fd)
                    guard self.send(fd, requests[i]) else {
                        throw TestFailure("send of ALIVE2 request \(i) failed: errno \(errno)")
                    }
                }
                for fd in pending {
                    let reply: [UInt8] = try self.read(fd, count: 6, within: .seconds(30))
                    result.append(Registered(fd: fd, reply: reply))
                }
                pending.removeAll()
                index = end
            }
            return result
        } catch {
            for fd in pending { close(fd) }
            for entry in result { close(entry.fd) }
            throw error
        }
    }

    // MARK: NAMES

    /// The whole NAMES reply; the server must close after it.
    public static func namesReply(port: UInt16, host: String = "127.0.0.1") async throws -> [UInt8] {
        try self.checkedNames(try await self.request(port: port, [110], host: host, within: .seconds(30)))
    }

    /// `namesReply`, blocking the calling thread.
    public static func namesReply(port: UInt16, host: String = "127.0.0.1") throws -> [UInt8] {
        try self.checkedNames(try self.request(port: port, [110], host: host, within: .seconds(30)))
    }

    private static func checkedNames(_ outcome: Outcome) throws -> [UInt8] {
        guard outcome.ending.closed, outcome.bytes.count >= 4 else {
            throw TestFailure("NAMES: \(outcome)")
        }
        return outcome.bytes
    }

    /// The NAMES reply split into its 4-byte port prefix and the text after it.
    public static func names(port: UInt16, host: String = "127.0.0.1") async throws -> (prefix: UInt32, text: String) {
        self.splitNames(try await self.namesReply(port: port, host: host))
    }

    /// `names`, blocking the calling thread.
    public static func names(port: UInt16, host: String = "127.0.0.1") throws -> (prefix: UInt32, text: String) {
        self.splitNames(try self.namesReply(port: port, host: host))
    }

    private static func splitNames(_ reply: [UInt8]) -> (prefix: UInt32, text: String) {
        let prefix = reply[0..<4].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        return (prefix, String(decoding: reply[4...], as: UTF8.self))
    }

    /// The NAMES text lines (without the 4-byte port prefix and without the trailing newlines).
    public static func nameLines(port: UInt16, host: String = "127.0.0.1") async throws -> [String] {
        try await self.names(port: port, host: host).text.split(separator: "\n").map(String.init)
    }

    /// Polls NAMES until `predicate` holds or `limit` passes; returns the last lines seen.
    public static func waitForNames(
        port: UInt16,
        within limit: Duration = .seconds(10),
        _ predicate: ([String]) -> Bool
    ) async throws -> [String] {
        var lines: [String] = []
        _ = try await Poll.until(timeout: limit, interval: .milliseconds(200)) {
            lines = try await self.nameLines(port: port)
            return predicate(lines)
        }
        return lines
    }
}

/// Parsing of NAMES text (`name X at port N\n` lines).
public enum NamesText {
    public static func entries(_ text: String) -> [(name: String, port: UInt16)] {
        text.split(separator: "\n").compactMap { line in
            guard line.hasPrefix("name "), let range = line.range(of: " at port ", options: .backwards) else {
                return nil
            }
            let name = String(line[line.index(line.startIndex, offsetBy: 5)..<range.lowerBound])
            guard let port = UInt16(line[range.upperBound...]) else { return nil }
            return (name, port)
        }
    }

    public static func port(of name: String, in text: String) -> UInt16? {
        self.entries(text).first { $0.name == name }?.port
    }
}
