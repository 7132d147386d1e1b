import EPMDPosix
import EPMDProtocol
import EPMDServer

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The client modes (`-names`, `-started`, `-dump`, `-kill`, `-stop NAME`), with C epmd's outputs and
/// exit codes. Output is collected and written to stdout in one write at the end, as C's stdio does.
public enum EPMDClient {
    /// What the client prints and its exit status.
    public struct Outcome: Equatable, Sendable {
        public var stdout: [UInt8] = []
        public var stderr: [UInt8] = []
        public var status: Int32 = 0

        public init(stdout: [UInt8] = [], stderr: [UInt8] = [], status: Int32 = 0) {
            self.stdout = stdout
            self.stderr = stderr
            self.status = status
        }
    }

    /// Runs a client mode against the epmd on `port` ([::1] first, then 127.0.0.1).
    public static func run(_ mode: EPMDClientMode, port: UInt16) -> Outcome {
        var outcome = Outcome()
        let silent = mode == .started
        if case .stop(let name) = mode, name.utf8.count > 1000 {
            outcome.stdout = Array("epmd: Name too long!".utf8)
            outcome.status = 1
            return outcome
        }
        guard let fd = self.connect(port: port) else {
            if !silent { outcome.stderr = Array("epmd: Cannot connect to local epmd\n".utf8) }
            outcome.status = 1
            return outcome
        }
        defer { System.close(fd) }
        let body: [UInt8]
        switch mode {
        case .names, .started: body = [EPMDMessageCode.namesRequest.rawValue]
        case .dump: body = [EPMDMessageCode.dumpRequest.rawValue]
        case .kill: body = [EPMDMessageCode.killRequest.rawValue]
        case .stop(let name): body = [EPMDMessageCode.stopRequest.rawValue] + Array(name.utf8) + [0]
        }
        var request: [UInt8] = []
        request.appendUInt16(UInt16(body.count))
        request += body
        guard self.writeAll(fd, request) else {
            outcome.stdout = Array("epmd: Can't write to epmd\n".utf8)
            outcome.status = 1
            return outcome
        }
        switch mode {
        case .names, .started, .dump:
            let header = self.readOnce(fd, count: 4)
            guard header.count == 4 else {
                if !silent { outcome.stdout = Array("epmd: no response from local epmd\n".utf8) }
                outcome.status = 1
                return outcome
            }
            let reported = Int32(bitPattern: header.reduce(UInt32(0)) { $0 << 8 | UInt32($1) })
            let rest = self.readToEnd(fd)
            if !silent {
                outcome.stdout = Array("epmd: up and running on port \(reported) with data:\n".utf8) + rest
            }
        case .kill:
            switch self.readFill(fd, count: 2) {
            case .complete(let bytes) where bytes == Array("OK".utf8):
                outcome.stdout = Array("Killed\n".utf8)
            case .complete:
                outcome.stdout = Array("Killing not allowed - living nodes in database.\n".utf8)
                outcome.status = 1
            case let incomplete:
                outcome = self.incompleteReply(incomplete)
            }
        case .stop:
            switch self.readFill(fd, count: 7) {
            case .complete(let bytes):
                outcome.stdout = bytes + [UInt8(ascii: "\n")]
            case let incomplete:
                outcome = self.incompleteReply(incomplete)
            }
        }
        return outcome
    }

    private static func connect(port: UInt16) -> Int32? {
        for address in [SocketAddress.loopbackIPv6(port: port), .loopbackIPv4(port: port)] {
            let fd = socket(address.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { continue }
            let connected = address.withSockaddrPublic { pointer, length in
                while true {
                    let result = Glibc.connect(fd, pointer, length)
                    if result == 0 { return true }
                    if errno == EINTR { continue }
                    return false
                }
            }
            if connected { return fd }
            System.close(fd)
        }
        return nil
    }

    private static func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let written = Glibc.send(
                    fd,
                    raw.baseAddress.map { $0 + offset },
                    raw.count - offset,
                    Int32(MSG_NOSIGNAL)
                )
                if written < 0 && errno == EINTR { continue }
                if written <= 0 { return false }
                offset += written
            }
            return true
        }
    }

    /// One `read()` of up to `count` bytes, as C's `epmd_call` does for the port prefix.
    private static func readOnce(_ fd: Int32, count: Int) -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: count)
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, count) }
            if n < 0 && errno == EINTR { continue }
            return n > 0 ? Array(buffer[0..<n]) : []
        }
    }

    private static func readToEnd(_ fd: Int32) -> [UInt8] {
        var result: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return result }
            result += buffer[0..<n]
        }
    }

    /// What C's client prints when KILL or STOP gets less than the whole reply: exit 1.
    private static func incompleteReply(_ fill: Fill) -> Outcome {
        var outcome = Outcome(status: 1)
        switch fill {
        case .short(let bytes):
            outcome.stdout = Array("epmd: local epmd responded with <".utf8) + bytes + Array(">\n".utf8)
        case .failed, .complete:
            outcome.stdout = Array("epmd: failed to read answer from local epmd\n".utf8)
        }
        return outcome
    }

    private enum Fill {
        case complete([UInt8])
        case short([UInt8])
        case failed
    }

    /// C's `read_fill`: up to `count` bytes; EOF early gives what arrived, an error gives `failed`.
    private static func readFill(_ fd: Int32, count: Int) -> Fill {
        var result: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: count)
        while result.count < count {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, count - result.count) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { return .failed }
            if n == 0 { return .short(result) }
            result += buffer[0..<n]
        }
        return .complete(result)
    }
}
