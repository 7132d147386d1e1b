import GatewayHTTP
import GatewayTestSupport
import Synchronization
import Testing

/// The daemon reads `GET` and `HEAD` as constants and copies any other method: each reaches the
/// handler exactly as sent, prefixes and extensions of the two included.
@Suite struct MicroHTTPDMethodTests {
    @Test("GET, HEAD and methods that start like them reach the handler as sent")
    func methods() throws {
        let seen = Mutex<[String]>([])
        let server = try MicroHTTPDServer.started(configuration: .init(address: "127.0.0.1", port: 0)) { request in
            seen.withLock { $0.append(request.method) }
            return HTTPResponse(status: 200, body: Array(request.method.utf8))
        }
        defer { server.stop() }
        let url = "http://127.0.0.1:\(server.port)/m"
        #expect(try Curl.runBlocking([url]).body == "GET")
        #expect(try Curl.runBlocking(["-I", url]).status == 200)
        for method in ["GE", "GETS", "HEA", "HEADS", "G", "H", "POST", "PATCH"] {
            let response = try Curl.runBlocking(["-X", method, url])
            #expect(response.status == 200 && response.body == method, "\(method)")
        }
        #expect(seen.withLock { $0 } == ["GET", "HEAD", "GE", "GETS", "HEA", "HEADS", "G", "H", "POST", "PATCH"])
    }
}
