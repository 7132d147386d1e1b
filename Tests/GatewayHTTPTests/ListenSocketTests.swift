import Foundation
import GatewayHTTP
import GatewayTestSupport
import Logging
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A socket that listens already (systemd's, named `http`) handed to libmicrohttpd with
/// `MHD_OPTION_LISTEN_SOCKET`: it serves there, binds nothing itself, reports the socket's port, and
/// keeps its accept policy and TLS.
@Suite(.timeLimit(.minutes(1))) struct ListenSocketTests {
    /// A TCP socket listening on 127.0.0.1 (port 0: a free one) and its port.
    static func listeningSocket() throws -> (fd: Int32, port: UInt16) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        try #require(fd >= 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bind(fd, pointer, length) == 0 && listen(fd, 64) == 0 && getsockname(fd, pointer, &length) == 0
            }
        }
        try #require(bound)
        return (fd, UInt16(bigEndian: address.sin_port))
    }

    @Test("a passed socket serves; libmicrohttpd binds nothing itself; stop closes the socket")
    func servesPassedSocket() throws {
        let (fd, port) = try Self.listeningSocket()
        var before = stat()
        try #require(fstat(fd, &before) == 0)
        // The configured address and port are the passed socket's own: a bind there would fail with
        // EADDRINUSE, so a start proves that libmicrohttpd did not bind.
        let server = try MicroHTTPDServer.started(
            configuration: .init(address: "127.0.0.1", port: port, listenSocket: fd)
        ) { _ in HTTPResponse(status: 200, body: Array("passed\n".utf8)) }
        #expect(server.port == port)
        #expect(server.address == "127.0.0.1")
        let response = try Curl.runBlocking(["http://127.0.0.1:\(port)/x"])
        #expect(response.status == 200 && response.body == "passed\n", "\(response)")
        server.stop()
        #expect(server.address == nil)
        // Closed: the descriptor is gone, or its number now holds another file.
        var after = stat()
        #expect(fstat(fd, &after) != 0 || after.st_ino != before.st_ino, "the passed socket is open after stop")
    }

    @Test("a passed socket on another port than the configured one: the socket's port is the one reported")
    func reportsSocketPort() throws {
        let (fd, port) = try Self.listeningSocket()
        let server = try MicroHTTPDServer.started(
            configuration: .init(address: "127.0.0.1", port: 9, listenSocket: fd)
        ) { _ in HTTPResponse(status: 200, body: Array("passed\n".utf8)) }
        defer { server.stop() }
        #expect(server.port == port)
        let response = try Curl.runBlocking(["http://127.0.0.1:\(port)/x"])
        #expect(response.status == 200, "\(response)")
    }

    @Test("the accept policy holds on a passed socket: past the per-address share, connections are refused")
    func acceptPolicy() throws {
        let (fd, port) = try Self.listeningSocket()
        let server = try MicroHTTPDServer.started(
            configuration: .init(connectionLimit: 16, connectionsPerAddress: 2, listenSocket: fd)
        ) { _ in HTTPResponse(status: 200, body: []) }
        defer { server.stop() }
        var held: [Int32] = []
        defer { for fd in held { close(fd) } }
        for _ in 0..<6 { held.append(try WireClient.connect(port: port, from: "127.0.0.2")) }
        let closed = held.filter { WireClient.readToEOF($0, within: .milliseconds(500)) == [] }.count
        #expect(closed >= 4, "only \(closed) of 6 connections past a share of 2 were refused")
        #expect(server.connectionStatistics.refusedPerAddress >= 4)
        let probe = try RawHTTP.send(port: port, "/x")
        defer { close(probe) }
        #expect(RawHTTP.status(probe) == 200)
    }

    @Test("HTTPS on a passed socket")
    func tls() throws {
        let pki = try TestCertificates.make()
        defer { pki.remove() }
        let (fd, port) = try Self.listeningSocket()
        let server = try MicroHTTPDServer.started(
            configuration: .init(tls: try TLSTests.tls(pki), listenSocket: fd)
        ) { _ in HTTPResponse(status: 200, body: Array("secure\n".utf8)) }
        defer { server.stop() }
        #expect(server.port == port)
        let secure = try Curl.runBlocking(["--cacert", pki.caFile, "https://127.0.0.1:\(port)/x"])
        #expect(secure.status == 200 && secure.body == "secure\n", "\(secure)")
    }

    @Test("a descriptor that is not a TCP socket is refused before the daemon starts")
    func notASocket() throws {
        var pipeEnds: [Int32] = [-1, -1]
        try #require(pipe(&pipeEnds) == 0)
        defer { for fd in pipeEnds { close(fd) } }
        let server = MicroHTTPDServer(
            configuration: .init(listenSocket: pipeEnds[0]),
            logger: .init(label: "test.http"),
            handler: { _ in HTTPResponse(status: 200, body: []) }
        )
        let error = #expect(throws: MicroHTTPDError.self) { try server.start() }
        #expect(error?.message == "the HTTP socket \(pipeEnds[0]) is not a TCP socket")
    }
}
