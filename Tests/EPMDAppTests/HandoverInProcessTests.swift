import EPMDApp
import EPMDPosix
import EPMDRegistry
import Foundation
import InMemoryLogging
import Logging
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The hand-over protocol end to end inside one process: gateway A serves, the test takes A's place as
/// the successor's client (``HandoverClient``), builds gateway B from what it received, and runs it.
@Suite(.serialized, .timeLimit(.minutes(1))) struct HandoverInProcessTests {
    static func options(socket: String) -> EPMDOptions {
        var options = GatewayTests.options()
        options.handoverSocket = socket
        return options
    }

    /// An ALIVE2 request for `name` (HighestVersion 6), framed.
    static func alive2(_ name: String, port: UInt16) -> [UInt8] {
        let bytes = Array(name.utf8)
        var body: [UInt8] = [120, UInt8(port >> 8), UInt8(port & 0xFF), 77, 0, 0, 6, 0, 5]
        body += [UInt8(bytes.count >> 8), UInt8(bytes.count & 0xFF)] + bytes + [0, 0]
        return [UInt8(body.count >> 8), UInt8(body.count & 0xFF)] + body
    }

    /// Registers `name` on `port`; the connection is the registration.
    static func register(_ name: String, port: UInt16) throws -> ClientSocket {
        let socket = try ClientSocket.connect(to: .loopbackIPv4(port: port))
        try socket.sendAll(Self.alive2(name, port: 4000))
        let reply = try socket.read(upTo: 6)
        try #require(reply.count == 6 && reply[0] == 118 && reply[1] == 0, "registration refused: \(reply)")
        return socket
    }

    static func temporarySocket() -> (directory: String, socket: String) {
        let directory = "/tmp/egw-hoin-\(UUID().uuidString.prefix(8))"
        mkdir(directory, 0o700)
        return (directory, "\(directory)/ho.sock")
    }

    @Test(
        "a node that died during the switch is unregistered by the successor; ids contiguous; the HTTP port and the hand-over socket go on"
    )
    func nodeDiedDuringTheSwitch() async throws {
        let (directory, path) = Self.temporarySocket()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (logger, _) = GatewayTests.logger()
        let a = try Gateway.build(options: Self.options(socket: path), environment: [:], logger: logger)
        #expect(a.handoverPath == path)
        let runnerA = try GatewayTests.Runner(a)
        defer { a.shutdown() }
        try #require(await GatewayTests.poll(seconds: 10) { a.state == .running })
        let httpPort = try #require(a.httpPort)
        let stays = try Self.register("stays", port: a.epmdPort)
        var dies: ClientSocket? = try Self.register("dies", port: a.epmdPort)
        let generation = a.registry.generation
        let creation = try #require(a.registry.lookup(Array("stays".utf8))).creation

        let client = try HandoverClient.connect(path: path)
        let (restoration, predecessor) = try client.receive()
        #expect(predecessor == getpid())
        #expect(restoration.registry.nodes.count == 2 && restoration.connections.count == 2)
        #expect(restoration.handoverListener != nil && restoration.httpListener != nil)
        // The node dies while the successor builds: its EOF waits in the socket for whoever reads it.
        dies = nil
        _ = dies

        let b = try Gateway.build(
            options: Self.options(socket: path),
            environment: [:],
            logger: logger,
            restoring: restoration
        )
        let acknowledged = Mutex<Bool?>(nil)
        let runB = try PosixThread(name: "gateway-b") {
            _ = try? b.run { acknowledged.withLock { $0 = client.acknowledge() } }
        }
        defer {
            b.shutdown()
            runB.join()
        }
        let resultA = try await runnerA.finish()
        #expect(resultA == .success(.handedOver(getpid())))
        #expect(acknowledged.withLock { $0 } == true)
        #expect(b.epmdPort == a.epmdPort && b.httpPort == httpPort)
        #expect(b.handoverPath == path && FileManager.default.fileExists(atPath: path), "A removed B's socket file")

        let gone = await GatewayTests.poll(seconds: 5) { b.registry.lookup(Array("dies".utf8)) == nil }
        #expect(gone, "the node that died during the switch is still registered")
        let kept = try #require(b.registry.lookup(Array("stays".utf8)))
        #expect(kept.creation == creation)
        let events = b.registry.history().events.suffix(2)
        #expect(events.map(\.id) == [generation + 1, generation + 2])
        #expect(events.first?.kind == .restarted(.handover) && events.first?.nodeCount == 2)
        #expect(events.last?.kind == .unregistered(.closed) && events.last?.node?.name == Array("dies".utf8))
        #expect(GatewayTests.httpStatus(httpPort, "/v1/nodes/stays/health") == 200)
        #expect(GatewayTests.namesPort(b.epmdPort) == 0)
        _ = stays
    }

    @Test(
        "--takeover with nothing listening fails cleanly; a hand-over socket path that does not fit is logged, not fatal"
    )
    func nothingToTakeOver() throws {
        let (directory, path) = Self.temporarySocket()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        #expect(throws: HandoverError.self) { try HandoverClient.connect(path: path) }
        let (logger, handler) = GatewayTests.logger()
        let long = "/tmp/" + String(repeating: "x", count: 120) + "/ho.sock"
        let gateway = try Gateway.build(options: Self.options(socket: long), environment: [:], logger: logger)
        #expect(gateway.handoverPath == nil)
        #expect(handler.entries.contains { $0.level == .warning && "\($0.message)".contains("no hand-over socket") })
        gateway.shutdown()
    }

    @Test("the default socket path: /run for root, XDG_RUNTIME_DIR, else /tmp per uid; none for port 0 or \"none\"")
    func defaultPaths() {
        #expect(
            HandoverService.defaultPath(port: 4369, userID: 0, environment: [:])
                == "/run/epmd-gateway/handover-4369.sock"
        )
        #expect(
            HandoverService.defaultPath(port: 4369, userID: 1000, environment: ["XDG_RUNTIME_DIR": "/run/user/1000"])
                == "/run/user/1000/epmd-gateway/handover-4369.sock"
        )
        #expect(
            HandoverService.defaultPath(port: 7, userID: 1000, environment: [:])
                == "/tmp/epmd-gateway-1000/handover-7.sock"
        )
        var options = EPMDOptions()
        #expect(HandoverService.path(for: options, port: 0, environment: [:]) == nil)
        options.handoverSocket = "none"
        #expect(HandoverService.path(for: options, port: 4369, environment: [:]) == nil)
        options.handoverSocket = "/x/y.sock"
        #expect(HandoverService.path(for: options, port: 0, environment: [:]) == "/x/y.sock")
    }
}
