import EPMDProtocol
import EPMDRegistry
import Foundation
import GatewayHTTP
import GatewayTestSupport
import Testing

/// The libmicrohttpd daemon for real, driven by curl on loopback.
@Suite(.timeLimit(.minutes(1))) struct MicroHTTPDServerTests {
    @Test(
        "curl against a live daemon on 127.0.0.1 and ::1: nodes, health, probes, errors",
        .enabled(if: ExternalTool.usable("curl"))
    )
    func live() throws {
        let registry = NodeRegistry()
        _ = registry.register(
            Alive2Request(port: 4242, name: Array("web".utf8)),
            connection: ConnectionID(1),
            fd: 3,
            peer: "127.0.0.1"
        )
        let router = HTTPRouter(registry: registry, build: .init(version: "test", libmicrohttpd: "0.9.75"))
        for address in ["127.0.0.1", "::1"] {
            let server = try MicroHTTPDServer(configuration: .init(address: address, port: 0, threads: 2)) {
                router.respond(to: $0)
            }
            defer { server.stop() }
            #expect(server.port != 0)
            let host = address.contains(":") ? "[\(address)]" : address
            let base = "http://\(host):\(server.port)"
            let nodes = try Curl.runBlocking(["\(base)/v1/nodes"])
            #expect(nodes.status == 200)
            #expect(nodes.body.contains("\"name\":\"web\",\"port\":4242"))
            #expect(try Curl.runBlocking(["\(base)/v1/nodes/web/health"]).status == 200)
            #expect(try Curl.runBlocking(["-I", "\(base)/v1/nodes/web/health"]).status == 200)
            #expect(try Curl.runBlocking(["\(base)/v1/nodes/gone/health"]).status == 503)
            #expect(try Curl.runBlocking(["\(base)/livez"]).body == "ok\n")
            #expect(try Curl.runBlocking(["-X", "DELETE", "\(base)/v1/nodes"]).status == 405)
            #expect(try Curl.runBlocking(["\(base)/nowhere"]).status == 404)
            #expect(try Curl.runBlocking(["-H", "If-None-Match: \"1\"", "\(base)/v1/nodes"]).status == 304)
            // A request with a body is read and discarded, then answered.
            #expect(
                try Curl.runBlocking(["-X", "POST", "--data", String(repeating: "x", count: 100_000), "\(base)/livez"])
                    .status
                    == 405
            )
        }
    }

    @Test(
        "long-poll: a waiting GET /v1/nodes returns when a node registers, or when its wait ends",
        .enabled(if: ExternalTool.usable("curl"))
    )
    func longPoll() async throws {
        let registry = NodeRegistry()
        let router = HTTPRouter(registry: registry, build: .init(version: "test", libmicrohttpd: "0.9.75"))
        let server = try MicroHTTPDServer(
            configuration: .init(port: 0),
            longPoll: { router.longPollWait(for: $0) },
            handler: { router.respond(to: $0) }
        )
        defer { server.stop() }
        registry.addChangeObserver { server.generationChanged($0.id) }
        let base = "http://127.0.0.1:\(server.port)"
        let clock = ContinuousClock()

        var start = clock.now
        let timedOut = try Curl.runBlocking(["\(base)/v1/nodes?index=0&wait=1"])
        #expect(timedOut.body.hasPrefix("{\"generation\":0,"))
        #expect(start.duration(to: clock.now) >= .milliseconds(900))

        start = clock.now
        async let woken = Task.detached { try Curl.runBlocking(["\(base)/v1/nodes?index=0&wait=20"]) }.value
        try await Task.sleep(for: .milliseconds(300))
        _ = registry.register(
            Alive2Request(port: 9, name: Array("late".utf8)),
            connection: ConnectionID(1),
            fd: 3,
            peer: ""
        )
        let answer = try await woken
        #expect(answer.body.contains("\"generation\":1") && answer.body.contains("late"))
        #expect(start.duration(to: clock.now) < .seconds(10))
    }

    @Test("a port already in use is an error, not a crash")
    func portInUse() throws {
        let router = HTTPRouter(registry: NodeRegistry(), build: .init(version: "test", libmicrohttpd: "0.9.75"))
        let first = try MicroHTTPDServer(configuration: .init(port: 0)) { router.respond(to: $0) }
        defer { first.stop() }
        #expect(throws: MicroHTTPDError.self) {
            _ = try MicroHTTPDServer(configuration: .init(port: first.port)) { router.respond(to: $0) }
        }
        #expect(throws: MicroHTTPDError.self) {
            _ = try MicroHTTPDServer(configuration: .init(address: "localhost")) { router.respond(to: $0) }
        }
    }
}
