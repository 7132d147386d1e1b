import Foundation
import GatewayTestSupport
import Testing

/// The built binary's HTTPS front (`--http-tls-cert`, `--http-tls-key`) and mutual TLS
/// (`--http-tls-client-ca`), against a CA made in the test: curl, and a real Prometheus scraping with
/// `scheme: https` and `tls_config`. Wrong files stop the gateway at start, naming the file.
@Suite("HTTPS and mutual TLS", .timeLimit(.minutes(3)))
struct GatewayTLSTests {
    static func tlsArguments(_ pki: TestCertificates, httpPort: UInt16, clientCA: Bool = false) -> [String] {
        [
            "--http-port", String(httpPort), "--http-tls-cert", pki.serverCertificateFile, "--http-tls-key",
            pki.serverKeyFile,
        ]
            + (clientCA ? ["--http-tls-client-ca", pki.caFile] : [])
    }

    @Test(
        "HTTPS: curl with the CA gets /livez and /metrics; plain HTTP fails and the gateway serves on; Prometheus scrapes",
        .enabled(
            if: !TestBinary.isCEPMD && ExternalTool.usable("curl") && ExternalTool.usable("openssl")
                && ExternalTool.usable("prometheus")
        )
    )
    func https() async throws {
        let pki = try TestCertificates.make()
        defer { pki.remove() }
        let httpPort = try FreePort.next()
        // `-d`: the info line that says the front is HTTPS is printed.
        let gateway = try await GatewayProcess.start(arguments: ["-d"] + Self.tlsArguments(pki, httpPort: httpPort))
        defer { gateway.stop() }
        let base = "https://127.0.0.1:\(httpPort)"
        let up = try await Poll.until(timeout: .seconds(10)) {
            try await Curl.run(["--cacert", pki.caFile, "\(base)/livez"]).status == 200
        }
        try #require(up != nil, "no HTTPS answer: \(gateway.log)")
        #expect(gateway.log.contains("HTTP front on 127.0.0.1 port \(httpPort) (HTTPS)"))
        let metrics = try await Curl.run(["--cacert", pki.caFile, "\(base)/metrics"])
        #expect(metrics.status == 200 && metrics.body.contains("epmd_gateway_http_up 1"))
        // Without the CA curl refuses the certificate; plain HTTP gets no HTTP answer; the gateway serves on.
        #expect(try await Curl.run(["\(base)/livez"]).status == 0)
        for _ in 0..<3 {
            #expect(try await Curl.run(["http://127.0.0.1:\(httpPort)/livez"], maxTime: 5).status == 0)
        }
        #expect(gateway.process.isRunning)
        #expect(try await Curl.run(["--cacert", pki.caFile, "\(base)/livez"]).body == "ok\n")
        #expect(try await WireClient.names(port: gateway.port).text.isEmpty)

        let prometheus = try await PrometheusServer.start(
            path: try ExternalTool.require("prometheus"),
            target: "127.0.0.1:\(httpPort)",
            scrapeOptions: ["scheme: https", "tls_config:", "  ca_file: \(pki.caFile)"]
        )
        defer { prometheus.stop() }
        var last: Double?
        let scraped = try await Poll.until(timeout: .seconds(30), interval: .milliseconds(250)) {
            last = try await prometheus.value(#"up{job="epmd-gateway"}"#)
            return last == 1
        }
        #expect(scraped != nil, "up is \(last.map { "\($0)" } ?? "absent"): \(prometheus.log)")
        #expect(try await prometheus.value("epmd_gateway_http_up") == 1)
    }

    @Test(
        "mutual TLS: a client certificate from the CA passes; none or another CA's gets 403; Prometheus with cert_file scrapes",
        .enabled(
            if: !TestBinary.isCEPMD && ExternalTool.usable("curl") && ExternalTool.usable("openssl")
                && ExternalTool.usable("prometheus")
        )
    )
    func mutual() async throws {
        let pki = try TestCertificates.make()
        defer { pki.remove() }
        let httpPort = try FreePort.next()
        let gateway = try await GatewayProcess.start(
            arguments: Self.tlsArguments(pki, httpPort: httpPort, clientCA: true)
        )
        defer { gateway.stop() }
        let url = "https://127.0.0.1:\(httpPort)/metrics"
        let client = ["--cacert", pki.caFile, "--cert", pki.clientCertificateFile, "--key", pki.clientKeyFile]
        let trusted = try await Poll.until(timeout: .seconds(10)) {
            try await Curl.run(client + [url]).status == 200
        }
        try #require(trusted != nil, "no HTTPS answer with the client certificate: \(gateway.log)")
        let anonymous = try await Curl.run(["--cacert", pki.caFile, url])
        #expect(anonymous.status == 403, "\(anonymous)")
        #expect(!anonymous.body.contains("epmd_"))
        let stranger = try await Curl.run([
            "--cacert", pki.caFile, "--cert", pki.otherClientCertificateFile, "--key", pki.otherClientKeyFile, url,
        ])
        #expect(stranger.status == 403, "\(stranger)")
        #expect(gateway.process.isRunning)

        let prometheus = try await PrometheusServer.start(
            path: try ExternalTool.require("prometheus"),
            target: "127.0.0.1:\(httpPort)",
            scrapeOptions: [
                "scheme: https", "tls_config:", "  ca_file: \(pki.caFile)",
                "  cert_file: \(pki.clientCertificateFile)", "  key_file: \(pki.clientKeyFile)",
            ]
        )
        defer { prometheus.stop() }
        var last: Double?
        let scraped = try await Poll.until(timeout: .seconds(30), interval: .milliseconds(250)) {
            last = try await prometheus.value(#"up{job="epmd-gateway"}"#)
            return last == 1
        }
        #expect(scraped != nil, "up is \(last.map { "\($0)" } ?? "absent"): \(prometheus.log)")
        // The refused clients were counted as 403s, the scrapes as 200s.
        let samples = Samples(try await Curl.run(client + [url]).body)
        #expect(samples["http_requests_total", ("route", "other"), ("code", "403")] == 2)
        #expect((samples["http_requests_total", ("route", "/metrics"), ("code", "200")] ?? 0) >= 2)
    }

    @Test(
        "a missing, mismatched or incomplete TLS setup stops the gateway at start (exit 1), naming the file",
        .enabled(if: !TestBinary.isCEPMD && ExternalTool.usable("openssl"))
    )
    func startupErrors() async throws {
        let pki = try TestCertificates.make()
        defer { pki.remove() }
        let missing = pki.path("missing.pem")
        let cases: [(arguments: [String], message: String)] = [
            (
                ["--http-tls-cert", missing, "--http-tls-key", pki.serverKeyFile],
                "cannot read the TLS certificate \(missing): No such file or directory"
            ),
            (
                ["--http-tls-cert", pki.serverCertificateFile, "--http-tls-key", pki.clientKeyFile],
                "the private key in \(pki.clientKeyFile) does not belong to the certificate in "
                    + pki.serverCertificateFile
            ),
            (
                ["--http-tls-cert", pki.serverCertificateFile, "--http-tls-key", pki.directory.path],
                "cannot read the TLS private key \(pki.directory.path): Is a directory"
            ),
            (
                [
                    "--http-tls-cert", pki.serverCertificateFile, "--http-tls-key", pki.serverKeyFile,
                    "--http-tls-client-ca", missing,
                ],
                "cannot read the TLS client CA \(missing)"
            ),
            (["--http-tls-cert", pki.serverCertificateFile], "--http-tls-cert and --http-tls-key go together"),
            (["--http-tls-client-ca", pki.caFile], "--http-tls-client-ca needs --http-tls-cert and --http-tls-key"),
        ]
        for (arguments, message) in cases {
            let result = try await Blocking.run {
                try Command.run(
                    TestBinary.url.path,
                    ["-port", String(try FreePort.next()), "--http-port", String(try FreePort.next())] + arguments,
                    timeout: 10
                )
            }
            #expect(result.status == 1, "\(arguments): \(result.status) \(result.stderr)")
            #expect(result.stderr.contains(message), "\(arguments): \(result.stderr)")
        }
        // The environment variables work the same way.
        let result = try await Blocking.run {
            try Command.run(
                TestBinary.url.path,
                ["-port", String(try FreePort.next()), "--http-port", String(try FreePort.next())],
                environment: ["EPMD_GATEWAY_HTTP_TLS_CERT": missing, "EPMD_GATEWAY_HTTP_TLS_KEY": pki.serverKeyFile],
                timeout: 10
            )
        }
        #expect(result.status == 1)
        #expect(result.stderr.contains("cannot read the TLS certificate \(missing)"), "\(result.stderr)")
    }
}
