import CMicroHTTPD
import EPMDPosix
import Logging

/// HTTPS through libmicrohttpd's GnuTLS support, and the optional client-certificate check (mutual TLS).
///
/// libmicrohttpd 0.9.75 keeps the key, certificate and trust pointers of `MHD_OPTION_HTTPS_MEM_*` as
/// they are (it never copies them): it reads them while `MHD_start_daemon` loads its credentials, the
/// workers of a thread pool get a copy of the daemon structure holding the same pointers, and the
/// trust pointer is tested on every new connection (the client certificate is requested when it is
/// set). So the texts live in ``PinnedText`` buffers owned by the ``TLS`` value, which the server's
/// configuration holds for the server's life: longer than the daemon, which `stop` ends first.
///
/// libmicrohttpd only REQUESTS a client certificate; it never checks one. With a client CA, every
/// request is checked before any handler runs (`gnutls_certificate_verify_peers2` on the connection's
/// session, against that CA), and a client without a certificate signed by it gets 403 and a closed
/// connection.
extension MicroHTTPDServer {
    /// The certificate chain and key the daemon serves HTTPS with, and the CA client certificates must
    /// be signed by (nil: no client certificate asked for).
    public struct TLS: Sendable {
        let certificate: PinnedText
        let key: PinnedText
        let clientAuthority: PinnedText?

        /// Whether clients must present a certificate signed by the client CA.
        public var verifiesClients: Bool { self.clientAuthority != nil }

        /// Takes PEM texts and checks them as libmicrohttpd will load them.
        /// - Parameters:
        ///   - certificate: the server's certificate (chain), PEM, and the file it came from (for errors).
        ///   - key: its private key, PEM (unencrypted), and its file.
        ///   - clientAuthority: the CA (one or more certificates, PEM) client certificates must be
        ///     signed by, and its file; nil for HTTPS without client certificates.
        /// - Throws: `MicroHTTPDError` naming the file that is not PEM, holds no certificate, or whose
        ///   key does not belong to the certificate; or when libmicrohttpd was built without TLS.
        public init(
            certificate: (pem: [UInt8], file: String),
            key: (pem: [UInt8], file: String),
            clientAuthority: (pem: [UInt8], file: String)? = nil
        ) throws(MicroHTTPDError) {
            guard cmhd_tls_supported() != 0 else {
                throw MicroHTTPDError(message: "this libmicrohttpd was built without TLS support")
            }
            self.certificate = try PinnedText(certificate.pem, file: certificate.file, what: "certificate")
            self.key = try PinnedText(key.pem, file: key.file, what: "private key")
            let certificates = cmhd_check_trust(self.certificate.pointer)
            guard certificates > 0 else {
                throw MicroHTTPDError(
                    message: "no PEM certificate in \(certificate.file)\(Self.reason(certificates))"
                )
            }
            let pair = cmhd_check_key_pair(self.certificate.pointer, self.key.pointer)
            if pair == GNUTLS_E_CERTIFICATE_KEY_MISMATCH {
                throw MicroHTTPDError(
                    message: "the private key in \(key.file) does not belong to the certificate in \(certificate.file)"
                )
            }
            guard pair == 0 else {
                throw MicroHTTPDError(message: "cannot load the private key in \(key.file)\(Self.reason(pair))")
            }
            if let clientAuthority {
                let authority = try PinnedText(clientAuthority.pem, file: clientAuthority.file, what: "client CA")
                let count = cmhd_check_trust(authority.pointer)
                guard count > 0 else {
                    throw MicroHTTPDError(
                        message: "no PEM CA certificate in \(clientAuthority.file)\(Self.reason(count))"
                    )
                }
                self.clientAuthority = authority
            } else {
                self.clientAuthority = nil
            }
        }

        /// Reads the files and checks them (see ``init(certificate:key:clientAuthority:)``).
        /// - Throws: `MicroHTTPDError` naming the file that is missing, unreadable or wrong.
        public static func load(
            certificateFile: String,
            keyFile: String,
            clientAuthorityFile: String? = nil
        ) throws(MicroHTTPDError) -> TLS {
            let certificate = try Self.read(certificateFile, what: "certificate")
            let key = try Self.read(keyFile, what: "private key")
            let authority = try clientAuthorityFile.map { file throws(MicroHTTPDError) in
                (pem: try Self.read(file, what: "client CA"), file: file)
            }
            return try TLS(
                certificate: (certificate, certificateFile),
                key: (key, keyFile),
                clientAuthority: authority
            )
        }

        private static func read(_ file: String, what: String) throws(MicroHTTPDError) -> [UInt8] {
            do {
                return try ConfigurationFile.read(file).bytes
            } catch {
                throw MicroHTTPDError(message: "cannot read the TLS \(what) \(file): \(error.message)")
            }
        }

        private static func reason(_ code: Int32) -> String {
            guard code < 0, let text = cmhd_tls_error(code) else { return "" }
            return ": " + String(cString: text)
        }

        /// The daemon flag for HTTPS.
        var flags: UInt32 { MHD_USE_TLS.rawValue }

        /// Adds the key, certificate and (for mutual TLS) trust options. The pointers stay valid while
        /// this value lives (see the type's note).
        func add(to options: inout MicroHTTPDOptions) {
            options.add(.HTTPS_MEM_KEY, pointer: self.key.rawPointer)
            options.add(.HTTPS_MEM_CERT, pointer: self.certificate.rawPointer)
            if let authority = self.clientAuthority {
                options.add(.HTTPS_MEM_TRUST, pointer: authority.rawPointer)
            }
        }
    }
}

extension MicroHTTPDCallbacks {
    /// With mutual TLS: queues 403 (connection closed) for a client whose certificate is missing or
    /// not signed by the client CA and returns the queueing result; nil for a trusted client, or when
    /// the daemon does not check clients. Called on a request's first access call, before anything
    /// else looks at the request.
    static func untrustedClient(_ connection: OpaquePointer, cls: UnsafeMutableRawPointer) -> MHD_Result? {
        let context = Unmanaged<CallbackContext>.fromOpaque(cls).takeUnretainedValue()
        guard context.verifiesClients else { return nil }
        let verdict = cmhd_verify_peer(connection)
        guard verdict != CMHD_PEER_TRUSTED else { return nil }
        let detail: String
        switch verdict {
        case CMHD_PEER_NO_CERTIFICATE: detail = "A client certificate is required."
        case CMHD_PEER_UNTRUSTED: detail = "The client certificate is not trusted."
        case CMHD_PEER_NO_SESSION: detail = "The connection is not TLS."
        default: detail = "The client certificate could not be checked."
        }
        context.logger.debug("HTTPS client refused", metadata: ["reason": "\(detail)"])
        var response = HTTPResponse.problem(403, "Forbidden", detail)
        response.headers.append(("Connection", "close"))
        return Self.queue(response, on: connection, context: context, started: 0)
    }
}

/// A NUL-terminated copy of a PEM text at an address that never moves, for libmicrohttpd to keep
/// (see ``MicroHTTPDServer/TLS``). Zeroed before it is freed: one of them is a private key.
final class PinnedText: Sendable {
    /// Never written after `init` (until `deinit`), so sharing it between threads is safe.
    nonisolated(unsafe) private let buffer: UnsafeMutablePointer<CChar>
    private let capacity: Int

    /// - Throws: `MicroHTTPDError` when the text is empty or holds a NUL (not PEM).
    init(_ bytes: [UInt8], file: String, what: String) throws(MicroHTTPDError) {
        guard !bytes.isEmpty else { throw MicroHTTPDError(message: "the TLS \(what) \(file) is empty") }
        guard !bytes.contains(0) else {
            throw MicroHTTPDError(message: "the TLS \(what) \(file) is not PEM text (it holds a NUL byte)")
        }
        let buffer = UnsafeMutablePointer<CChar>.allocate(capacity: bytes.count + 1)
        bytes.withUnsafeBytes { raw in
            raw.withMemoryRebound(to: CChar.self) { chars in
                if let base = chars.baseAddress { buffer.initialize(from: base, count: chars.count) }
            }
        }
        (buffer + bytes.count).initialize(to: 0)
        self.buffer = buffer
        self.capacity = bytes.count + 1
    }

    var pointer: UnsafePointer<CChar> { UnsafePointer(self.buffer) }

    /// The address as libmicrohttpd's option array takes it (it only reads the text).
    var rawPointer: UnsafeMutableRawPointer { UnsafeMutableRawPointer(self.buffer) }

    deinit {
        self.buffer.update(repeating: 0, count: self.capacity)
        self.buffer.deallocate()
    }
}
