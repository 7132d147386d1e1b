import Foundation
import GatewayTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The admin API of the built binary: off by default (every mutating method 405); with
/// `--admin-token-file`, `DELETE /v1/nodes/{name}` and the bearer token forcibly unregister a real
/// `erl` node (STOP's equivalent), seen by `epmd -names` and the event stream, and counted in
/// `epmd_gateway_admin_requests_total`. A token file others may read, or an empty one, stops the start.
@Suite("Admin API", .timeLimit(.minutes(3)))
struct AdminTests {
    static let token = "t0ken-\(UUID().uuidString)"

    /// A token file with `mode`, in a directory of its own.
    static func tokenFile(_ contents: String, mode: mode_t = 0o600) throws -> URL {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("epmd-gateway-admin-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let file = directory.appendingPathComponent("token")
        try Data(contents.utf8).write(to: file)
        guard chmod(file.path, mode) == 0 else { throw TestFailure("chmod \(file.path) failed") }
        return file
    }

    @Test(
        "DELETE with the token unregisters a real erl node: 204, gone from epmd -names, an unregistered event (stop)",
        .enabled(
            if: !TestBinary.isCEPMD && ExternalTool.usable("erl") && ExternalTool.usable("curl")
                && ExternalTool.usable("epmd")
        )
    )
    func forcedUnregister() async throws {
        let epmd = try ExternalTool.require("epmd")
        let file = try Self.tokenFile(Self.token + "\n")
        defer { try? FileManager.default.removeItem(at: file.deletingLastPathComponent()) }
        let httpPort = try FreePort.next()
        let gateway = try await GatewayProcess.start(arguments: [
            "--http-port", String(httpPort), "--admin-token-file", file.path,
        ])
        defer { gateway.stop() }
        let base = "http://127.0.0.1:\(httpPort)"
        let node = try await ErlangNode.start(
            name: NodeNames.unique("adm"),
            cookie: NodeNames.cookie(),
            epmdPort: gateway.port
        )
        defer { node.kill() }
        try await node.waitUntilRegistered(epmdPort: gateway.port)
        let stream = try CurlStream("\(base)/v1/events")
        defer { stream.stop() }
        try await stream.waitFor("the reset") { $0.frames.first?.event == "reset" }
        let url = "\(base)/v1/nodes/\(node.name)"

        let anonymous = try await Curl.run(["-i", "-X", "DELETE", url])
        #expect(anonymous.status == 401)
        #expect(anonymous.body.contains("WWW-Authenticate: Bearer realm=\"epmd-gateway\""), "\(anonymous)")
        let wrong = try await Curl.run(["-i", "-X", "DELETE", "-H", "Authorization: Bearer \(Self.token)x", url])
        #expect(wrong.status == 401)
        #expect(wrong.body.contains("error=\"invalid_token\""), "\(wrong)")
        #expect(try await WireClient.names(port: gateway.port).text.contains(node.name))

        let deleted = try await Curl.run(["-X", "DELETE", "-H", "Authorization: Bearer \(Self.token)", url])
        #expect(deleted.status == 204, "\(deleted)")
        #expect(deleted.body.isEmpty)
        // Done when the answer came: C epmd's own client no longer lists the node, unless erl has
        // already registered again (it does within about 2 s of losing its registration, as after
        // `epmd -stop`; a slow run, e.g. under a sanitizer, can see that first). Then the stream must
        // show the unregistration first and the new registration after it.
        let names = try await Command.epmd(epmd, port: gateway.port, ["-names"])
        #expect(names.status == 0)
        try await stream.waitFor("the unregistration") { $0.frames.contains { $0.event == "unregistered" } }
        let unregisteredAt = try #require(stream.frames.firstIndex { $0.event == "unregistered" })
        if names.stdout.contains(node.name) {
            try await stream.waitFor("the registration again, after the unregistration") { stream in
                stream.frames.dropFirst(unregisteredAt + 1).contains { frame in
                    frame.event == "registered" && frame.data.contains("\"name\":\"\(node.name)\"")
                }
            }
        }
        let unregistered = stream.frames[unregisteredAt]
        #expect(unregistered.data.contains("\"reason\":\"stop\""), "\(unregistered.data)")
        #expect(unregistered.data.contains("\"name\":\"\(node.name)\""))
        #expect(gateway.log.contains("forcibly unregistering '\(node.name)' (admin request)"))

        let unknown = try await Curl.run(["-X", "DELETE", "-H", "Authorization: Bearer \(Self.token)", "\(url)zz"])
        #expect(unknown.status == 404)
        // The node itself lives on (erl registers again on its own, as after `epmd -stop`).
        #expect(node.process.isRunning)

        let samples = Samples(try await Curl.run(["\(base)/metrics"]).body)
        #expect(samples["epmd_gateway_admin_requests_total", ("result", "ok")] == 1)
        #expect(samples["epmd_gateway_admin_requests_total", ("result", "unauthorized")] == 2)
        #expect(samples["epmd_gateway_admin_requests_total", ("result", "not_found")] == 1)
        #expect(samples["epmd_unregistrations_total", ("reason", "stop")] == 1)
    }

    @Test(
        "without --admin-token-file every mutating method answers 405, token or not, and nothing is unregistered",
        .enabled(if: !TestBinary.isCEPMD && ExternalTool.usable("curl"))
    )
    func offByDefault() async throws {
        let httpPort = try FreePort.next()
        let gateway = try await GatewayProcess.start(arguments: ["--http-port", String(httpPort)])
        defer { gateway.stop() }
        let (fd, _) = try await WireClient.register(port: gateway.port, name: "keepme", nodePort: 4242)
        defer { close(fd) }
        for method in ["DELETE", "POST", "PUT", "PATCH"] {
            let response = try await Curl.run([
                "-i", "-X", method, "-H", "Authorization: Bearer anything",
                "http://127.0.0.1:\(httpPort)/v1/nodes/keepme",
            ])
            #expect(response.status == 405, "\(method): \(response)")
            #expect(response.body.contains("Allow: GET, HEAD"), "\(method): \(response)")
        }
        #expect(try await WireClient.names(port: gateway.port).text == "name keepme at port 4242\n")
        let samples = Samples(try await Curl.run(["http://127.0.0.1:\(httpPort)/metrics"]).body)
        #expect(samples["epmd_gateway_admin_requests_total", ("result", "unauthorized")] == 0)
    }

    @Test(
        "a token file its group or others may access, an empty one or a missing one stops the start (exit 1)",
        .enabled(if: !TestBinary.isCEPMD)
    )
    func tokenFileRefused() async throws {
        let readable = try Self.tokenFile(Self.token, mode: 0o644)
        let groupOnly = try Self.tokenFile(Self.token, mode: 0o640)
        let empty = try Self.tokenFile(" \n")
        let controls = try Self.tokenFile("two words\n")
        let files = [readable, groupOnly, empty, controls]
        defer { for file in files { try? FileManager.default.removeItem(at: file.deletingLastPathComponent()) } }
        let missing = empty.deletingLastPathComponent().appendingPathComponent("missing").path
        let cases: [(file: String, message: String)] = [
            (readable.path, "the admin token file \(readable.path) is accessible to its group or others (mode 644)"),
            (groupOnly.path, "the admin token file \(groupOnly.path) is accessible to its group or others (mode 640)"),
            (empty.path, "the admin token file \(empty.path) is empty"),
            (controls.path, "the admin token in \(controls.path) must be one word of visible ASCII characters"),
            (missing, "cannot read the admin token file \(missing): No such file or directory"),
        ]
        for (file, message) in cases {
            let result = try await Blocking.run {
                try Command.run(
                    TestBinary.url.path,
                    [
                        "-port", String(try FreePort.next()), "--http-port", String(try FreePort.next()),
                        "--admin-token-file", file,
                    ],
                    timeout: 10
                )
            }
            #expect(result.status == 1, "\(file): \(result.status) \(result.stderr)")
            #expect(result.stderr.contains(message), "\(result.stderr)")
        }
    }
}
