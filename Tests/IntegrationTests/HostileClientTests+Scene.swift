import Foundation
import GatewayTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

// The stage of every hostile-client case: a gateway with its HTTP front, two real erl nodes registered
// with it, and the checks that must hold while an attack is in place.

/// A gateway option of a hostile case.
struct HostileOption {
    var words: [String]

    init(_ words: String...) {
        self.words = words
    }
}

/// A gateway (epmd port and HTTP port) with two real erl nodes registered, for one hostile case.
final class HostileScene: @unchecked Sendable {
    // @unchecked: used by the one test that made it.
    let gateway: GatewayProcess
    let httpPort: UInt16
    let cookie: String
    let nodes: [ErlangNode]
    let nodePorts: [UInt16]
    /// The options the gateway was started with.
    let options: [String]

    var port: UInt16 { self.gateway.port }
    var pid: pid_t { self.gateway.process.processIdentifier }

    private init(
        gateway: GatewayProcess,
        httpPort: UInt16,
        cookie: String,
        nodes: [ErlangNode],
        nodePorts: [UInt16],
        options: [String]
    ) {
        self.gateway = gateway
        self.httpPort = httpPort
        self.cookie = cookie
        self.nodes = nodes
        self.nodePorts = nodePorts
        self.options = options
    }

    /// Starts the gateway with `--http-port` and `options`, then two erl nodes, and waits until both
    /// are registered.
    static func start(_ options: [HostileOption] = [], shellPrefix: String? = nil) async throws -> HostileScene {
        let httpPort = try FreePort.next()
        let words = options.flatMap(\.words)
        let gateway = try await GatewayProcess.start(
            arguments: ["--http-port", String(httpPort)] + words,
            shellPrefix: shellPrefix
        )
        do {
            let cookie = NodeNames.cookie()
            var nodes: [ErlangNode] = []
            for prefix in ["hsa", "hsb"] {
                nodes.append(
                    try await ErlangNode.start(name: NodeNames.unique(prefix), cookie: cookie, epmdPort: gateway.port)
                )
            }
            var ports: [UInt16] = []
            for node in nodes { ports.append(try await node.waitUntilRegistered(epmdPort: gateway.port)) }
            return HostileScene(
                gateway: gateway,
                httpPort: httpPort,
                cookie: cookie,
                nodes: nodes,
                nodePorts: ports,
                options: words
            )
        } catch {
            await gateway.stop()
            throw error
        }
    }

    /// Stops the nodes and the gateway, by pid (blocking for the few milliseconds that takes: for `defer`).
    func stopBlocking() {
        for node in self.nodes { node.kill() }
        self.gateway.stop()
    }

    /// `GET /metrics` through curl from 127.0.0.1, parsed.
    func metrics() async throws -> Samples {
        let response = try await Curl.run(["http://127.0.0.1:\(self.httpPort)/metrics"], maxTime: 5)
        guard response.status == 200 else { throw TestFailure("/metrics answered \(response)") }
        return Samples(response.body)
    }

    // MARK: - The checks made while an attack is in place

    /// The gateway still runs (its pid is alive and not a zombie).
    func expectRunning(sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(
            self.gateway.process.exitStatus == nil && kill(self.pid, 0) == 0,
            "the gateway exited: \(self.gateway.log.suffix(2000))",
            sourceLocation: sourceLocation
        )
    }

    /// `GET /livez` from a new client on 127.0.0.1 answers 200 within 1 s (twice).
    func expectLivez(sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let port = self.httpPort
        for _ in 0..<2 {
            let (status, took) = try await Blocking.run {
                let clock = ContinuousClock()
                let start = clock.now
                let fd = try RawHTTP.send(port: port, "/livez")
                defer { close(fd) }
                let status = (try? RawHTTP.statusCode(fd, timeout: 3)) ?? nil
                return (status, start.duration(to: clock.now))
            }
            #expect(
                status == 200,
                "/livez answered \(status.map(String.init) ?? "nothing")",
                sourceLocation: sourceLocation
            )
            #expect(took < .seconds(1), "/livez took \(took)", sourceLocation: sourceLocation)
        }
    }

    /// A raw PORT_PLEASE2 from a new client on 127.0.0.1 finds each node, and NAMES lists both (each
    /// answered within 3 s). Returns whether all of it held.
    @discardableResult
    func expectLookups(sourceLocation: SourceLocation = #_sourceLocation) async throws -> Bool {
        var held = true
        for (node, nodePort) in zip(self.nodes, self.nodePorts) {
            let reply = try await WireClient.request(
                port: self.port,
                [122] + Array(node.name.utf8),
                within: .seconds(3)
            )
            let found = reply.bytes.count >= 4 && reply.bytes[0..<4] == [119, 0] + WireClient.be16(Int(nodePort))[...]
            #expect(found, "PORT_PLEASE2 \(node.name): \(reply)", sourceLocation: sourceLocation)
            held = held && found
        }
        let names = try await WireClient.request(port: self.port, [110], within: .seconds(3))
        let text = String(decoding: names.bytes.dropFirst(4), as: UTF8.self)
        for (node, nodePort) in zip(self.nodes, self.nodePorts) {
            let listed = names.ending.closed && NamesText.port(of: node.name, in: text) == nodePort
            #expect(
                listed,
                "\(node.name) not in NAMES: \(names.ending), \(names.bytes.count) bytes",
                sourceLocation: sourceLocation
            )
            held = held && listed
        }
        return held
    }

    /// A third, short-lived erl node registers through the gateway, looks both nodes up through it and
    /// pings them (`net_adm:ping` answers pong).
    func expectThirdNodePings(sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let targets = self.nodes.map { "\"\($0.name)\"" }.joined(separator: ", ")
        let expression = """
            [_, Host] = string:split(atom_to_list(node()), "@"),
            Pings = [net_adm:ping(list_to_atom(N ++ "@" ++ Host)) || N <- [\(targets)]],
            io:format("pings=~p~n", [Pings]),
            halt().
            """
        let result = try await ErlangNode.eval(
            name: NodeNames.unique("hsc"),
            cookie: self.cookie,
            epmdPort: self.port,
            expression: expression,
            timeout: 30
        )
        #expect(
            result.stdout.contains("pings=[pong,pong]"),
            "third node: status \(result.status), \(result.stdout) \(result.stderr.suffix(1000))",
            sourceLocation: sourceLocation
        )
        for node in self.nodes {
            #expect(node.process.isRunning, "erl node \(node.name) died: \(node.log)", sourceLocation: sourceLocation)
        }
    }

    /// Every check of the brief, made now (while the attack is in place): the gateway runs, `/livez`
    /// answers another client within 1 s, lookups and NAMES answer, a third erl node registers and
    /// pings both nodes.
    func expectServing(sourceLocation: SourceLocation = #_sourceLocation) async throws {
        self.expectRunning(sourceLocation: sourceLocation)
        try await self.expectLivez(sourceLocation: sourceLocation)
        if try await self.expectLookups(sourceLocation: sourceLocation) {
            try await self.expectThirdNodePings(sourceLocation: sourceLocation)
        } else {
            Issue.record("third erl node not started: the lookups already fail", sourceLocation: sourceLocation)
        }
        try await self.expectLivez(sourceLocation: sourceLocation)
        self.expectRunning(sourceLocation: sourceLocation)
    }

    /// Lines of the gateway's stderr so far.
    var logLines: Int { self.gateway.log.split(separator: "\n", omittingEmptySubsequences: false).count - 1 }
}
