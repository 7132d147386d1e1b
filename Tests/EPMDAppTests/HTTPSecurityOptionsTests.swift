import EPMDApp
import Foundation
import Testing

@testable import EPMDApp

/// `--http-tls-cert`, `--http-tls-key`, `--http-tls-client-ca` and `--admin-token-file` (and their
/// environment variables), and the start-time checks of the admin token file.
@Suite struct HTTPSecurityOptionsTests {
    @Test("the four options and their environment variables; an empty value is a usage error")
    func parsing() throws {
        let options = try #require(
            EPMDArguments.parse(
                [
                    "--http-tls-cert", "/c.pem", "--http-tls-key=/k.pem", "--http-tls-client-ca", "/ca.pem",
                    "--admin-token-file", "/t",
                ],
                environment: [:]
            ).securityServeOptions
        )
        #expect(options.httpTLSCertificateFile == "/c.pem" && options.httpTLSKeyFile == "/k.pem")
        #expect(options.httpTLSClientCAFile == "/ca.pem" && options.adminTokenFile == "/t")
        let defaults = try #require(EPMDArguments.parse([], environment: [:]).securityServeOptions)
        #expect(defaults.httpTLSCertificateFile == nil && defaults.httpTLSKeyFile == nil)
        #expect(defaults.httpTLSClientCAFile == nil && defaults.adminTokenFile == nil)
        let environment = [
            "EPMD_GATEWAY_HTTP_TLS_CERT": "/e.pem", "EPMD_GATEWAY_HTTP_TLS_KEY": "/ek.pem",
            "EPMD_GATEWAY_HTTP_TLS_CLIENT_CA": "/eca.pem", "EPMD_GATEWAY_ADMIN_TOKEN_FILE": "/et",
        ]
        let fromEnvironment = try #require(
            EPMDArguments.parse(["--http-tls-cert", "/flag.pem"], environment: environment).securityServeOptions
        )
        #expect(fromEnvironment.httpTLSCertificateFile == "/flag.pem" && fromEnvironment.httpTLSKeyFile == "/ek.pem")
        #expect(fromEnvironment.httpTLSClientCAFile == "/eca.pem" && fromEnvironment.adminTokenFile == "/et")
        for bad in [["--http-tls-cert="], ["--http-tls-key"], ["--admin-token-file", ""], ["--http-tls-client-ca="]] {
            #expect(EPMDArguments.parse(bad, environment: [:]) == .usage, "\(bad)")
        }
    }

    @Test("without the HTTP front nothing is read; half a TLS setup is refused")
    func combinations() throws {
        var options = EPMDOptions()
        options.httpTLSCertificateFile = "/nonexistent.pem"
        options.adminTokenFile = "/nonexistent"
        options.httpEnabled = false
        let off = try HTTPSecurity.load(options)
        #expect(off.tls == nil && off.adminToken == nil)
        options.httpEnabled = true
        #expect(throws: GatewayError.cannotStart("--http-tls-cert and --http-tls-key go together")) {
            try HTTPSecurity.load(options)
        }
        options.httpTLSCertificateFile = nil
        options.httpTLSClientCAFile = "/ca.pem"
        #expect(throws: GatewayError.cannotStart("--http-tls-client-ca needs --http-tls-cert and --http-tls-key")) {
            try HTTPSecurity.load(options)
        }
    }

    @Test("with -daemon (working directory /) every file needs an absolute path, checked before the spawn")
    func daemon() throws {
        var options = EPMDOptions()
        options.daemon = true
        try HTTPSecurity.checkBeforeDaemon(options)
        options.adminTokenFile = "token"
        #expect(
            throws: GatewayError.cannotStart(
                "with -daemon (working directory /), --admin-token-file needs an absolute path, not token"
            )
        ) { try HTTPSecurity.checkBeforeDaemon(options) }
        options.adminTokenFile = nil
        options.httpTLSCertificateFile = "/c.pem"
        options.httpTLSKeyFile = "k.pem"
        #expect(
            throws: GatewayError.cannotStart(
                "with -daemon (working directory /), --http-tls-key needs an absolute path, not k.pem"
            )
        ) { try HTTPSecurity.checkBeforeDaemon(options) }
        options.httpTLSKeyFile = "/nonexistent-\(UInt64.random(in: 0...UInt64.max)).key"
        #expect(throws: GatewayError.self) { try HTTPSecurity.checkBeforeDaemon(options) }
        options.httpEnabled = false
        try HTTPSecurity.checkBeforeDaemon(options)
    }

    @Test("the token: trimmed, owner-only, non-empty, one word of visible ASCII")
    func token() throws {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("epmd-gateway-token-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        func file(_ name: String, _ text: String, mode: Int) throws -> String {
            let path = directory.appendingPathComponent(name).path
            try Data(text.utf8).write(to: URL(fileURLWithPath: path))
            try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: path)
            return path
        }
        #expect(
            try HTTPSecurity.token(try file("good", "  abc-DEF_123~\r\n", mode: 0o600)) == Array("abc-DEF_123~".utf8)
        )
        #expect(try HTTPSecurity.token(try file("readonly", "x", mode: 0o400)) == Array("x".utf8))
        for (name, text, mode, message) in [
            ("world", "abc", 0o604, "is accessible to its group or others (mode 604)"),
            ("group", "abc", 0o620, "is accessible to its group or others (mode 620)"),
            ("empty", "", 0o600, "is empty"),
            ("blank", " \n\t\n", 0o600, "is empty"),
            ("words", "two words", 0o600, "must be one word of visible ASCII characters"),
            ("utf8", "tökén", 0o600, "must be one word of visible ASCII characters"),
        ] {
            let path = try file(name, text, mode: mode)
            do {
                _ = try HTTPSecurity.token(path)
                Issue.record("\(name) accepted")
            } catch {
                #expect(error.description.contains(message), "\(name): \(error)")
                #expect(error.description.contains(path), "\(name): \(error)")
            }
        }
        let big = try file("big", String(repeating: "a", count: HTTPSecurity.tokenLimit + 1), mode: 0o600)
        #expect(throws: GatewayError.cannotStart("cannot read the admin token file \(big): File too large")) {
            try HTTPSecurity.token(big)
        }
    }
}

extension EPMDInvocation {
    /// The options of `.serve`, nil for anything else (for `try #require`).
    fileprivate var securityServeOptions: EPMDOptions? {
        if case .serve(let options) = self { options } else { nil }
    }
}
