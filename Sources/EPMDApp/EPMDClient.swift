import EPMDPosix
import EPMDProtocol
import EPMDServer

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
        guard let socket = self.connect(port: port) else {
            if !silent { outcome.stderr = Array("epmd: Cannot connect to local epmd\n".utf8) }
            outcome.status = 1
            return outcome
        }
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
        guard (try? socket.sendAll(request)) != nil else {
            outcome.stdout = Array("epmd: Can't write to epmd\n".utf8)
            outcome.status = 1
            return outcome
        }
        switch mode {
        case .names, .started, .dump:
            let header = self.readOnce(socket, count: 4)
            guard header.count == 4 else {
                if !silent { outcome.stdout = Array("epmd: no response from local epmd\n".utf8) }
                outcome.status = 1
                return outcome
            }
            let reported = Int32(bitPattern: header.reduce(UInt32(0)) { $0 << 8 | UInt32($1) })
            let rest = socket.readToEnd()
            if !silent {
                outcome.stdout = Array("epmd: up and running on port \(reported) with data:\n".utf8) + rest
            }
        case .kill:
            switch self.readFill(socket, count: 2) {
            case .complete(let bytes) where bytes == Array("OK".utf8):
                outcome.stdout = Array("Killed\n".utf8)
            case .complete:
                outcome.stdout = Array("Killing not allowed - living nodes in database.\n".utf8)
                outcome.status = 1
            case let incomplete:
                outcome = self.incompleteReply(incomplete)
            }
        case .stop:
            switch self.readFill(socket, count: 7) {
            case .complete(let bytes):
                outcome.stdout = bytes + [UInt8(ascii: "\n")]
            case let incomplete:
                outcome = self.incompleteReply(incomplete)
            }
        }
        return outcome
    }

    private static func connect(port: UInt16) -> ClientSocket? {
        for address in [SocketAddress.loopbackIPv6(port: port), .loopbackIPv4(port: port)] {
            if let socket = try? ClientSocket.connect(to: address) { return socket }
        }
        return nil
    }

    /// One `read()` of up to `count` bytes, as C's `epmd_call` does for the port prefix.
    private static func readOnce(_ socket: borrowing ClientSocket, count: Int) -> [UInt8] {
        (try? socket.read(upTo: count)) ?? []
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
    private static func readFill(_ socket: borrowing ClientSocket, count: Int) -> Fill {
        var result: [UInt8] = []
        while result.count < count {
            guard let chunk = try? socket.read(upTo: count - result.count) else { return .failed }
            if chunk.isEmpty { return .short(result) }
            result += chunk
        }
        return .complete(result)
    }
}
