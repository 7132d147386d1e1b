import EPMDPosix
import GatewayHTTP

/// The HTTP front's TLS material and admin token, read and checked once at start: a missing,
/// unreadable or wrong file stops the gateway before it serves anything, with a message naming the file.
struct HTTPSecurity: Sendable {
    /// HTTPS (and mutual TLS); nil: plain HTTP.
    var tls: MicroHTTPDServer.TLS?
    /// The admin API's bearer token; nil: admin is off.
    var adminToken: [UInt8]?

    /// What the start-up log line adds: ` (HTTPS)`, ` (HTTPS, client certificates, admin)`, ...
    var summary: String {
        var parts: [String] = []
        if let tls = self.tls { parts += tls.verifiesClients ? ["HTTPS", "client certificates"] : ["HTTPS"] }
        if self.adminToken != nil { parts.append("admin") }
        return parts.isEmpty ? "" : " (" + parts.joined(separator: ", ") + ")"
    }

    /// The longest token file read (a token is a line; this leaves room for any generator).
    static let tokenLimit = 4096

    /// Reads the files the options name (none when the HTTP front is off).
    /// - Throws: `GatewayError.cannotStart` naming the option or the file.
    static func load(_ options: EPMDOptions) throws(GatewayError) -> HTTPSecurity {
        guard options.httpEnabled else { return HTTPSecurity() }
        var security = HTTPSecurity()
        switch (options.httpTLSCertificateFile, options.httpTLSKeyFile) {
        case (nil, nil):
            if options.httpTLSClientCAFile != nil {
                throw .cannotStart("--http-tls-client-ca needs --http-tls-cert and --http-tls-key")
            }
        case (let certificate?, let key?):
            do {
                security.tls = try MicroHTTPDServer.TLS.load(
                    certificateFile: certificate,
                    keyFile: key,
                    clientAuthorityFile: options.httpTLSClientCAFile
                )
            } catch {
                throw .cannotStart(error.message)
            }
        case (nil, _?), (_?, nil):
            throw .cannotStart("--http-tls-cert and --http-tls-key go together")
        }
        if let file = options.adminTokenFile {
            security.adminToken = try Self.token(file)
        }
        return security
    }

    /// With `-daemon`, before the detached copy is spawned: the daemon's working directory is `/`, so
    /// the files must be named by absolute paths; and a wrong file is reported here, on the terminal
    /// that ran `-daemon` (the daemon itself logs to syslog).
    /// - Throws: `GatewayError.cannotStart` naming the option or the file.
    static func checkBeforeDaemon(_ options: EPMDOptions) throws(GatewayError) {
        guard options.httpEnabled else { return }
        let files = [
            ("--http-tls-cert", options.httpTLSCertificateFile), ("--http-tls-key", options.httpTLSKeyFile),
            ("--http-tls-client-ca", options.httpTLSClientCAFile), ("--admin-token-file", options.adminTokenFile),
        ]
        for case (let option, let file?) in files where !file.hasPrefix("/") {
            throw .cannotStart("with -daemon (working directory /), \(option) needs an absolute path, not \(file)")
        }
        _ = try self.load(options)
    }

    /// The token in `file`: its text without surrounding white space, visible ASCII only. The file
    /// must be a regular file that neither the group nor others may access (as ssh requires of keys).
    static func token(_ file: String) throws(GatewayError) -> [UInt8] {
        let contents: ConfigurationFile
        do {
            contents = try ConfigurationFile.read(file, limit: Self.tokenLimit)
        } catch {
            throw .cannotStart("cannot read the admin token file \(file): \(error.message)")
        }
        if contents.isAccessibleToOthers {
            throw .cannotStart(
                "the admin token file \(file) is accessible to its group or others (mode "
                    + "\(String(contents.permissions, radix: 8))); run chmod 600 \(file)"
            )
        }
        let isSpace: (UInt8) -> Bool = { $0 == 0x20 || $0 == 0x09 || $0 == 0x0A || $0 == 0x0D }
        let token = Array(contents.bytes.drop(while: isSpace).reversed().drop(while: isSpace).reversed())
        guard !token.isEmpty else { throw .cannotStart("the admin token file \(file) is empty") }
        guard token.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            throw .cannotStart("the admin token in \(file) must be one word of visible ASCII characters")
        }
        return token
    }
}
