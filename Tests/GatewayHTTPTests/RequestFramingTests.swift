import EPMDProtocol
import EPMDRegistry
import Foundation
import GatewayHTTP
import GatewayTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Request heads libmicrohttpd 0.9.75 lets through, refused by the gateway: 400 (413 for a body) and a
/// closed connection, while other clients are served as usual. Raw sockets: no real client sends these.
@Suite(.timeLimit(.minutes(1))) struct RequestFramingTests {
    static let refused: [(name: String, head: String, status: Int)] = [
        ("two Content-Length", "GET /livez HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 5\r\n", 400),
        (
            "the same Content-Length twice",
            "GET /livez HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 0\r\n", 400
        ),
        ("a Content-Length that is no number", "GET /livez HTTP/1.1\r\nHost: a\r\nContent-Length: 5x\r\n", 400),
        ("Transfer-Encoding: xchunked", "GET /livez HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n", 400),
        ("a chunked body", "GET /livez HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n", 413),
        ("a body", "GET /livez HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n", 413),
        ("HTTP/1.1 without Host", "GET /livez HTTP/1.1\r\n", 400),
        ("a control character in a value", "GET /livez HTTP/1.1\r\nHost: a\r\nX-Trace: a\u{01}b\r\n", 400),
        ("DEL in a value", "GET /livez HTTP/1.1\r\nHost: a\r\nX-Trace: a\u{7F}b\r\n", 400),
    ]

    /// Sends `head` plus the blank line (and `body`), then reads the status and checks the close.
    static func exchange(port: UInt16, _ head: String, body: String = "") throws -> (status: Int?, closed: Bool) {
        let fd = try WireClient.connect(port: port)
        defer { close(fd) }
        WireClient.send(fd, Array((head + "\r\n" + body).utf8))
        let status = try RawHTTP.statusCode(fd, timeout: 5)
        // The rest of the answer, then EOF: the connection must not stay open for another request.
        let rest = WireClient.readToEOF(fd, within: .seconds(5))
        return (status, rest != nil)
    }

    @Test("smuggling-prone, body-carrying or malformed heads get 400/413 and a closed connection")
    func refusals() throws {
        let router = HTTPRouter(registry: NodeRegistry(), build: .init(version: "test", libmicrohttpd: "0.9.75"))
        let server = try MicroHTTPDServer.started(configuration: .init(port: 0)) { router.respond(to: $0) }
        defer { server.stop() }
        for (name, head, status) in Self.refused {
            let body = status == 413 ? (head.contains("chunked") ? "5\r\nhello\r\n0\r\n\r\n" : "hello") : ""
            let answer = try Self.exchange(port: server.port, head, body: body)
            #expect(answer.status == status, "\(name): \(String(describing: answer.status))")
            #expect(answer.closed, "\(name): the connection stayed open")
        }
        // Well-formed heads are served: HTTP/1.1 with Host, HTTP/1.0 without it, an empty body announced.
        #expect(
            try Self.exchange(port: server.port, "GET /livez HTTP/1.1\r\nHost: a\r\nConnection: close\r\n").status
                == 200
        )
        #expect(try Self.exchange(port: server.port, "GET /livez HTTP/1.0\r\n").status == 200)
        #expect(
            try Self.exchange(
                port: server.port,
                "GET /livez HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nConnection: close\r\n"
            )
            .status == 200
        )
    }
}
