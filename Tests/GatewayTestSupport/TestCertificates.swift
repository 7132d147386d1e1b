import Foundation
import Testing

/// A throwaway PKI made with `openssl` in a temporary directory: a CA, a server certificate it signed
/// for `127.0.0.1` and `localhost`, a client certificate it signed, and a second CA with a client
/// certificate of its own (which the first CA must not accept). Everything goes with `remove()`.
public struct TestCertificates: Sendable {
    public let directory: URL

    public var caFile: String { self.path("ca.pem") }
    public var serverCertificateFile: String { self.path("server.pem") }
    public var serverKeyFile: String { self.path("server.key") }
    public var clientCertificateFile: String { self.path("client.pem") }
    public var clientKeyFile: String { self.path("client.key") }
    /// A second CA, and a client certificate it signed.
    public var otherCAFile: String { self.path("other-ca.pem") }
    public var otherClientCertificateFile: String { self.path("other-client.pem") }
    public var otherClientKeyFile: String { self.path("other-client.key") }

    public func path(_ name: String) -> String { self.directory.appendingPathComponent(name).path }

    /// Makes the files (EC P-256 keys: quick to generate).
    public static func make() throws -> TestCertificates {
        let openssl = try ExternalTool.require("openssl")
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("epmd-gateway-pki-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let certificates = TestCertificates(directory: directory)
        let key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
        func run(_ arguments: [String]) throws {
            let result = try Command.run(openssl, arguments, currentDirectory: directory, timeout: 30)
            guard result.status == 0 else {
                throw TestFailure("openssl \(arguments.joined(separator: " ")): \(result.status) \(result.stderr)")
            }
        }
        func authority(_ name: String, _ subject: String) throws {
            try run(
                ["req", "-x509"] + key + [
                    "-keyout", "\(name).key", "-out", "\(name).pem", "-days", "2", "-subj", subject,
                    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                ]
            )
        }
        func leaf(_ name: String, _ subject: String, signer: String, extensions: String) throws {
            try run(["req"] + key + ["-keyout", "\(name).key", "-out", "\(name).csr", "-subj", subject])
            try Data(extensions.utf8).write(to: directory.appendingPathComponent("\(name).ext"))
            try run([
                "x509", "-req", "-in", "\(name).csr", "-CA", "\(signer).pem", "-CAkey", "\(signer).key",
                "-CAcreateserial", "-out", "\(name).pem", "-days", "2", "-extfile", "\(name).ext",
            ])
        }
        try authority("ca", "/CN=epmd-gateway test CA")
        try authority("other-ca", "/CN=another CA")
        try leaf(
            "server",
            "/CN=localhost",
            signer: "ca",
            extensions: "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
        )
        try leaf("client", "/CN=scraper", signer: "ca", extensions: "extendedKeyUsage=clientAuth\n")
        try leaf("other-client", "/CN=intruder", signer: "other-ca", extensions: "extendedKeyUsage=clientAuth\n")
        return certificates
    }

    /// The contents of one of the files.
    public func bytes(_ file: String) throws -> [UInt8] { Array(try Data(contentsOf: URL(fileURLWithPath: file))) }

    public func remove() { try? FileManager.default.removeItem(at: self.directory) }
}
