import Foundation
import GatewayHTTP
import GatewayTestSupport
import Synchronization
import Testing

/// The daemon over HTTPS (libmicrohttpd's GnuTLS), and with a client CA (mutual TLS: a request whose
/// client certificate is missing or signed by another CA gets 403 before the handler runs). The TLS
/// material is checked before the daemon starts, with errors that name the file.
@Suite(.timeLimit(.minutes(2))) struct TLSTests {
    static func tls(_ pki: TestCertificates, clientCA: String? = nil) throws -> MicroHTTPDServer.TLS {
        try MicroHTTPDServer.TLS.load(
            certificateFile: pki.serverCertificateFile,
            keyFile: pki.serverKeyFile,
            clientAuthorityFile: clientCA
        )
    }

    @Test("HTTPS with the CA: 200; plain HTTP to the TLS port fails and the daemon serves on")
    func https() throws {
        let pki = try TestCertificates.make()
        defer { pki.remove() }
        let tls = try Self.tls(pki)
        #expect(!tls.verifiesClients)
        let calls = Atomic<Int>(0)
        let server = try MicroHTTPDServer.started(configuration: .init(tls: tls)) { _ in
            calls.add(1, ordering: .relaxed)
            return HTTPResponse(status: 200, body: Array("secure\n".utf8))
        }
        defer { server.stop() }
        let url = "https://127.0.0.1:\(server.port)/x"
        let secure = try Curl.runBlocking(["--cacert", pki.caFile, url])
        #expect(secure.status == 200 && secure.body == "secure\n", "\(secure)")
        let localhost = try Curl.runBlocking(["--cacert", pki.caFile, "https://localhost:\(server.port)/x"])
        #expect(localhost.status == 200, "\(localhost)")
        // No CA: curl refuses the certificate; plain HTTP: no HTTP answer at all.
        #expect(try Curl.runBlocking([url]).status == 0)
        #expect(try Curl.runBlocking(["http://127.0.0.1:\(server.port)/x"], maxTime: 5).status == 0)
        #expect(try Curl.runBlocking(["--cacert", pki.caFile, url]).status == 200)
        #expect(calls.load(ordering: .relaxed) == 3)
    }

    @Test("mutual TLS: a client certificate from the CA passes; none, or one from another CA, gets 403")
    func mutual() throws {
        let pki = try TestCertificates.make()
        defer { pki.remove() }
        let tls = try Self.tls(pki, clientCA: pki.caFile)
        #expect(tls.verifiesClients)
        let calls = Atomic<Int>(0)
        let server = try MicroHTTPDServer.started(configuration: .init(tls: tls)) { _ in
            calls.add(1, ordering: .relaxed)
            return HTTPResponse(status: 200, body: Array("hello\n".utf8))
        }
        defer { server.stop() }
        let url = "https://127.0.0.1:\(server.port)/x"
        let trusted = try Curl.runBlocking([
            "--cacert", pki.caFile, "--cert", pki.clientCertificateFile, "--key", pki.clientKeyFile, url,
        ])
        #expect(trusted.status == 200 && trusted.body == "hello\n", "\(trusted)")
        let anonymous = try Curl.runBlocking(["--cacert", pki.caFile, url])
        #expect(anonymous.status == 403, "\(anonymous)")
        #expect(anonymous.body.contains("A client certificate is required."))
        let stranger = try Curl.runBlocking([
            "--cacert", pki.caFile, "--cert", pki.otherClientCertificateFile, "--key", pki.otherClientKeyFile, url,
        ])
        #expect(stranger.status == 403, "\(stranger)")
        #expect(stranger.body.contains("not trusted"))
        // Keep-alive: each request is checked, and the handler ran only for the trusted one.
        let twice = try Curl.runBlocking([
            "--cacert", pki.caFile, "--cert", pki.clientCertificateFile, "--key", pki.clientKeyFile, url, url,
        ])
        #expect(twice.status == 200)
        #expect(calls.load(ordering: .relaxed) == 3)
    }

    @Test("wrong material is refused before the daemon starts, naming the file")
    func refusals() throws {
        let pki = try TestCertificates.make()
        defer { pki.remove() }
        func message(_ body: () throws -> MicroHTTPDServer.TLS) -> String {
            do {
                _ = try body()
                return "accepted"
            } catch let error as MicroHTTPDError {
                return error.message
            } catch {
                return "unexpected \(error)"
            }
        }
        let missing = pki.path("missing.pem")
        #expect(
            message { try .load(certificateFile: missing, keyFile: pki.serverKeyFile) }
                == "cannot read the TLS certificate \(missing): No such file or directory"
        )
        #expect(
            message { try .load(certificateFile: pki.serverCertificateFile, keyFile: pki.directory.path) }
                == "cannot read the TLS private key \(pki.directory.path): Is a directory"
        )
        #expect(
            message { try .load(certificateFile: pki.serverCertificateFile, keyFile: pki.clientKeyFile) }
                == "the private key in \(pki.clientKeyFile) does not belong to the certificate in "
                + pki.serverCertificateFile
        )
        #expect(
            message { try .load(certificateFile: pki.serverKeyFile, keyFile: pki.serverKeyFile) }
                .hasPrefix("no PEM certificate in \(pki.serverKeyFile)")
        )
        #expect(
            message { try .load(certificateFile: pki.serverCertificateFile, keyFile: pki.serverCertificateFile) }
                .hasPrefix("cannot load the private key in \(pki.serverCertificateFile)")
        )
        #expect(
            message {
                try .load(
                    certificateFile: pki.serverCertificateFile,
                    keyFile: pki.serverKeyFile,
                    clientAuthorityFile: pki.serverKeyFile
                )
            }.hasPrefix("no PEM CA certificate in \(pki.serverKeyFile)")
        )
        let key = try pki.bytes(pki.serverKeyFile)
        let empty = pki.path("empty.pem")
        try [UInt8]().write(to: empty)
        #expect(
            message { try .load(certificateFile: empty, keyFile: pki.serverKeyFile) }
                == "the TLS certificate \(empty) is empty"
        )
        #expect(
            message {
                try MicroHTTPDServer.TLS(
                    certificate: (Array("-----BEGIN CERTIFICATE-----\0".utf8), "nul.pem"),
                    key: (key, pki.serverKeyFile)
                )
            } == "the TLS certificate nul.pem is not PEM text (it holds a NUL byte)"
        )
    }
}

extension [UInt8] {
    fileprivate func write(to path: String) throws {
        try Data(self).write(to: URL(fileURLWithPath: path))
    }
}
