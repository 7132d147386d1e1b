import EPMDProtocol
import EPMDRegistry
import Foundation
import GatewayHTTP
import GatewayTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// One client address cannot take every HTTP slot: a flood of idle connections from 127.0.0.2 stops at
/// its per-address share, and probes from 127.0.0.1 (a kubelet, a load balancer) are answered at once.
@Suite(.timeLimit(.minutes(1))) struct PerAddressLimitTests {
    @Test("a flood of idle connections from 127.0.0.2 is held to its share; /livez from 127.0.0.1 answers within 1 s")
    func floodFromAnotherAddress() throws {
        let router = HTTPRouter(registry: NodeRegistry(), build: .init(version: "test", libmicrohttpd: "0.9.75"))
        // A small front (32 slots, 8 per address): without the per-address share, 40 idle connections
        // from one address would fill it.
        let server = try MicroHTTPDServer.started(
            configuration: .init(port: 0, connectionLimit: 32, connectionsPerAddress: 8)
        ) { router.respond(to: $0) }
        defer { server.stop() }

        var flood: [Int32] = []
        defer { for fd in flood { close(fd) } }
        for _ in 0..<40 {
            flood.append(try WireClient.connect(port: server.port, from: "127.0.0.2"))
        }
        // Past its share, the flooder's connections are closed by the server at once (EOF, nothing sent).
        let closed = flood.filter { WireClient.readToEOF($0, within: .milliseconds(500)) == [] }.count
        #expect(closed >= 40 - 8, "only \(closed) of the flood's 40 connections were refused")

        let clock = ContinuousClock()
        for _ in 0..<3 {
            let started = clock.now
            let probe = try RawHTTP.send(port: server.port, "/livez")
            defer { close(probe) }
            #expect(RawHTTP.status(probe) == 200)
            #expect(started.duration(to: clock.now) < .seconds(1), "the probe waited behind the flood")
        }
    }
}
