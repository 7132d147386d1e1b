import Foundation
import GatewayTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `scripts/install`, the units of `deploy/systemd/`, the man page and the bash completion (both generated
/// from `--help` by `scripts/man`), and the `.deb` of `scripts/package`: each checked by the tool that
/// owns its format (systemd-analyze, groff, bash, dpkg-deb, lintian). They install the binary under test
/// (the debug build) to stay fast; the package test takes `EPMD_GATEWAY_DEB` if set, else builds one
/// (a release build, minutes). The same package under a real systemd: `RealSystemdTests`.
@Suite
struct InstallPackageTests {
    static let root = RepositoryRoot.url.path

    /// What `scripts/install --epmd-symlink /usr` puts under DESTDIR, with each file's mode.
    static let installedFiles: [String: Int] = [
        "usr/bin/epmd-gateway": 0o755,
        "usr/lib/systemd/system/epmd-gateway.service": 0o644,
        "usr/lib/systemd/system/epmd-gateway.socket": 0o644,
        "usr/lib/systemd/system/epmd-gateway-http.socket": 0o644,
        "usr/share/man/man8/epmd-gateway.8": 0o644,
        "usr/share/bash-completion/completions/epmd-gateway": 0o644,
        "usr/share/doc/epmd-gateway/examples/epmd-gateway-client.conf": 0o644,
        "usr/share/doc/epmd-gateway/examples/epmd-gateway-listen.conf": 0o644,
        "usr/share/doc/epmd-gateway/examples/epmd.service-gateway.conf": 0o644,
        "usr/share/doc/epmd-gateway/examples/epmd-gateway.default": 0o644,
        "usr/share/doc/epmd-gateway/examples/README.systemd.md": 0o644,
        "usr/share/doc/epmd-gateway/examples/prometheus/alerts.yml": 0o644,
        "usr/share/doc/epmd-gateway/examples/haproxy/haproxy.cfg": 0o644,
    ]

    static let units = ["epmd-gateway.service", "epmd-gateway.socket", "epmd-gateway-http.socket"]

    /// Runs `scripts/NAME` on a thread of its own.
    static func script(
        _ name: String,
        _ arguments: [String],
        environment: [String: String] = [:],
        timeout: TimeInterval = 120
    ) async throws -> CommandResult {
        let path = "\(self.root)/scripts/\(name)"
        return try await Blocking.run {
            try Command.run(path, arguments, environment: environment, timeout: timeout)
        }
    }

    /// Runs a tool found on PATH on a thread of its own; a missing tool fails the test.
    static func tool(
        _ name: String,
        _ arguments: [String],
        environment: [String: String] = [:],
        timeout: TimeInterval = 60
    ) async throws -> CommandResult {
        let path = try ExternalTool.require(name)
        return try await Blocking.run { try Command.run(path, arguments, environment: environment, timeout: timeout) }
    }

    /// A fresh temporary directory, removed after `body`.
    static func withTemporaryDirectory<T>(_ body: (URL) async throws -> T) async throws -> T {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("install-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: url) }
        return try await body(url)
    }

    static func read(_ url: URL) throws -> String { try String(contentsOf: url, encoding: .utf8) }

    /// The option names of `epmd-gateway --help` (each line at indent 4 starting with a dash), read here
    /// independently of `scripts/man`.
    static func helpOptions() async throws -> (text: String, options: Set<String>) {
        let help = try await Blocking.run { try Command.run(TestBinary.url.path, ["--help"], timeout: 10) }
        #expect(help.status == 0)
        let pattern = try Regex(#"(?m)^    (-{1,2}[A-Za-z_][A-Za-z0-9_-]*)"#)
        let options = Set(help.stdout.matches(of: pattern).compactMap { $0.output[1].substring.map(String.init) })
        return (help.stdout, options)
    }

    // MARK: - scripts/install

    @Test(
        "scripts/install into a DESTDIR: every file with its mode, @BINDIR@ replaced, the epmd symlink",
        .enabled(if: !TestBinary.isCEPMD),
        .timeLimit(.minutes(2))
    )
    func installIntoDestDir() async throws {
        try await Self.withTemporaryDirectory { dir in
            let stage = dir.appendingPathComponent("stage")
            let result = try await Self.script(
                "install",
                ["--binary", TestBinary.url.path, "--epmd-symlink", "/usr"],
                environment: ["DESTDIR": stage.path]
            )
            #expect(result.status == 0, "\(result.stderr)")
            let files = FileManager.default
            for (path, mode) in Self.installedFiles.sorted(by: { $0.key < $1.key }) {
                let attributes = try files.attributesOfItem(atPath: stage.appendingPathComponent(path).path)
                let actual = (attributes[.posixPermissions] as? NSNumber)?.intValue
                #expect(
                    actual == mode,
                    "\(path): mode \(String(actual ?? -1, radix: 8)), expected \(String(mode, radix: 8))"
                )
            }
            #expect(
                try files.destinationOfSymbolicLink(atPath: stage.appendingPathComponent("usr/bin/epmd").path)
                    == "epmd-gateway"
            )
            // Nothing is left templated, and the service runs the installed binary.
            let enumerator = try #require(files.enumerator(at: stage, includingPropertiesForKeys: nil))
            for case let url as URL in enumerator where !url.path.hasSuffix("/bin/epmd-gateway") {
                guard let text = try? Self.read(url) else { continue }
                #expect(!text.contains("@BINDIR@"), "\(url.path) still holds @BINDIR@")
            }
            let unitDir = stage.appendingPathComponent("usr/lib/systemd/system")
            let service = try Self.read(unitDir.appendingPathComponent("epmd-gateway.service"))
            #expect(service.contains("\nExecStart=/usr/bin/epmd-gateway -systemd $DAEMON_ARGS\n"))
            let installed = stage.appendingPathComponent("usr/bin/epmd-gateway").path
            let version = try await Blocking.run { try Command.run(installed, ["--version"], timeout: 10) }
            #expect(version.status == 0)
            #expect(version.stdout.hasPrefix("epmd-gateway "))
        }
    }

    @Test(
        "scripts/install /usr/local without DESTDIR: paths follow PREFIX, no epmd symlink unless asked; bad usage exits 2",
        .enabled(if: !TestBinary.isCEPMD),
        .timeLimit(.minutes(2))
    )
    func installPrefix() async throws {
        try await Self.withTemporaryDirectory { dir in
            let prefix = dir.appendingPathComponent("local")
            let result = try await Self.script("install", ["--binary", TestBinary.url.path, prefix.path])
            #expect(result.status == 0, "\(result.stderr)")
            let service = try Self.read(prefix.appendingPathComponent("lib/systemd/system/epmd-gateway.service"))
            #expect(service.contains("\nExecStart=\(prefix.path)/bin/epmd-gateway -systemd $DAEMON_ARGS\n"))
            let debian = try Self.read(
                prefix.appendingPathComponent("share/doc/epmd-gateway/examples/epmd.service-gateway.conf")
            )
            #expect(debian.contains("\nExecStart=\(prefix.path)/bin/epmd-gateway -systemd\n"))
            #expect(!FileManager.default.fileExists(atPath: prefix.appendingPathComponent("bin/epmd").path))

            let relative = try await Self.script("install", ["--binary", TestBinary.url.path, "usr"])
            #expect(relative.status == 2)
            let unknown = try await Self.script("install", ["--bogus", prefix.path])
            #expect(unknown.status == 2)
            let missing = try await Self.script(
                "install",
                ["--binary", dir.appendingPathComponent("none").path, prefix.path]
            )
            #expect(missing.status == 1)
        }
    }

    // MARK: - systemd-analyze

    /// Installs under a temporary PREFIX (no DESTDIR, so that ExecStart= names a binary that exists) and
    /// returns the unit folder.
    static func installForSystemd(_ dir: URL) async throws -> URL {
        let prefix = dir.appendingPathComponent("prefix")
        let result = try await self.script("install", ["--binary", TestBinary.url.path, prefix.path])
        #expect(result.status == 0, "\(result.stderr)")
        return prefix.appendingPathComponent("lib/systemd/system")
    }

    @Test(
        "systemd-analyze verify: the installed units, the socket override and an application unit with the drop-in",
        .enabled(if: !TestBinary.isCEPMD && ExternalTool.usable("systemd-analyze")),
        .timeLimit(.minutes(2))
    )
    func systemdVerify() async throws {
        try await Self.withTemporaryDirectory { dir in
            let unitDir = try await Self.installForSystemd(dir)
            let examples = unitDir.deletingLastPathComponent().deletingLastPathComponent()
                .deletingLastPathComponent().appendingPathComponent("share/doc/epmd-gateway/examples")
            let files = FileManager.default
            // The listen-address override as a drop-in of the shipped socket.
            let socketDropIns = unitDir.appendingPathComponent("epmd-gateway.socket.d")
            try files.createDirectory(at: socketDropIns, withIntermediateDirectories: true)
            try files.copyItem(
                at: examples.appendingPathComponent("epmd-gateway-listen.conf"),
                to: socketDropIns.appendingPathComponent("listen.conf")
            )
            // An application's unit with the client drop-in.
            try "[Unit]\nDescription=An Erlang node\n\n[Service]\nExecStart=/bin/sleep infinity\n".write(
                to: unitDir.appendingPathComponent("myapp.service"),
                atomically: true,
                encoding: .utf8
            )
            let appDropIns = unitDir.appendingPathComponent("myapp.service.d")
            try files.createDirectory(at: appDropIns, withIntermediateDirectories: true)
            try files.copyItem(
                at: examples.appendingPathComponent("epmd-gateway-client.conf"),
                to: appDropIns.appendingPathComponent("epmd-gateway.conf")
            )
            let paths = (Self.units + ["myapp.service"]).map { unitDir.appendingPathComponent($0).path }
            let verify = try await Self.tool("systemd-analyze", ["verify", "--man=no"] + paths)
            #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
            #expect(verify.stderr.isEmpty, "\(verify.stderr)")
            // What the drop-in adds: the application requires the socket, and starts after it.
            let dropIn = try Self.read(appDropIns.appendingPathComponent("epmd-gateway.conf"))
            #expect(dropIn.contains("\nRequires=epmd-gateway.socket\n"))
            #expect(dropIn.contains("\nAfter=epmd-gateway.socket\n"))
        }
    }

    @Test(
        "systemd-analyze security --offline: the service's exposure is at most 2.0",
        .enabled(if: !TestBinary.isCEPMD && ExternalTool.usable("systemd-analyze")),
        .timeLimit(.minutes(2))
    )
    func systemdSecurity() async throws {
        try await Self.withTemporaryDirectory { dir in
            let unitDir = try await Self.installForSystemd(dir)
            let service = unitDir.appendingPathComponent("epmd-gateway.service").path
            let result = try await Self.tool("systemd-analyze", ["security", "--offline=yes", "--no-pager", service])
            #expect(result.status == 0, "\(result.stderr)")
            let pattern = try Regex(#"Overall exposure level for epmd-gateway\.service: ([0-9]+\.[0-9])"#)
            let match = try #require(result.stdout.firstMatch(of: pattern), "\(result.stdout)")
            let score = try #require(match.output[1].substring.flatMap { Double($0) })
            #expect(score <= 2.0, "exposure \(score):\n\(result.stdout)")
            // The same bound as systemd's own check (the score times ten).
            let threshold = try await Self.tool(
                "systemd-analyze",
                ["security", "--offline=yes", "--threshold=20", service]
            )
            #expect(threshold.status == 0, "\(threshold.stdout)")
        }
    }

    // MARK: - Man page, completion, /etc/default

    @Test(
        "the man page's OPTIONS are `epmd-gateway --help` (scripts/man --check), every option is there, groff warns of nothing",
        .enabled(if: !TestBinary.isCEPMD && ExternalTool.usable("groff")),
        .timeLimit(.minutes(1))
    )
    func manPage() async throws {
        let check = try await Self.script("man", ["--binary", TestBinary.url.path, "--check"])
        #expect(check.status == 0, "\(check.stderr)")
        let page = try Self.read(RepositoryRoot.appending("docs/epmd-gateway.8"))
        for option in try await Self.helpOptions().options.sorted() {
            let dashes = option.prefix { $0 == "-" }.count
            let roff = String(repeating: "\\-", count: dashes) + option.dropFirst(dashes)
            #expect(
                page.contains(".B \(roff)\n") || page.contains(".BI \(roff) \""),
                "\(option) is not in the man page"
            )
        }
        let groff = try await Self.tool(
            "groff",
            ["-man", "-ww", "-z", RepositoryRoot.appending("docs/epmd-gateway.8").path]
        )
        #expect(groff.status == 0)
        #expect(groff.stderr.isEmpty, "\(groff.stderr)")
        // What `man -l` shows: the options section as text.
        let text = try await Self.tool(
            "groff",
            ["-man", "-Tutf8", "-P", "-cbou", "-ww", RepositoryRoot.appending("docs/epmd-gateway.8").path]
        )
        #expect(text.stdout.contains("\nOPTIONS\n"))
        #expect(text.stdout.contains("--http-port N"))
    }

    /// Drives the completion function as bash does on TAB: COMP_WORDS, COMP_CWORD, then COMPREPLY.
    static func complete(
        _ words: [String],
        environment: [String: String] = [:]
    ) async throws -> (registration: String, replies: [String]) {
        let file = RepositoryRoot.appending("deploy/bash-completion/epmd-gateway").path
        let quoted = words.map { "'\($0.replacingOccurrences(of: "'", with: "'\\''"))'" }.joined(separator: " ")
        let script = """
            source '\(file)' || exit 3
            complete -p epmd-gateway
            COMP_WORDS=(\(quoted)); COMP_CWORD=\(words.count - 1); COMP_LINE="${COMP_WORDS[*]}"; COMP_POINT=${#COMP_LINE}
            _epmd_gateway
            printf 'reply:%s\\n' "${COMPREPLY[@]}"
            """
        let result = try await Self.tool("bash", ["--norc", "--noprofile", "-c", script], environment: environment)
        #expect(result.status == 0, "\(result.stderr)")
        let lines = result.stdout.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let replies = lines.filter { $0.hasPrefix("reply:") }.map { String($0.dropFirst(6)) }.filter { !$0.isEmpty }
        return (lines.first ?? "", replies)
    }

    @Test(
        "bash completion: registered for epmd-gateway, completes every --help option, values by kind",
        .enabled(if: !TestBinary.isCEPMD),
        .timeLimit(.minutes(1))
    )
    func bashCompletion() async throws {
        let options = try await Self.helpOptions().options
        #expect(options.count >= 30)
        let all = try await Self.complete(["epmd-gateway", "-"])
        #expect(all.registration == "complete -F _epmd_gateway epmd-gateway")
        #expect(Set(all.replies) == options)
        let tls = try await Self.complete(["epmd-gateway", "-d", "--http-t"])
        #expect(Set(tls.replies) == ["--http-threads", "--http-tls-cert", "--http-tls-key", "--http-tls-client-ca"])
        // A number: nothing to offer. A file: the files.
        let port = try await Self.complete(["epmd-gateway", "--http-port", ""])
        #expect(port.replies.isEmpty)
        try await Self.withTemporaryDirectory { dir in
            try "x".write(to: dir.appendingPathComponent("cert.pem"), atomically: true, encoding: .utf8)
            let cert = try await Self.complete(["epmd-gateway", "--http-tls-cert", dir.path + "/ce"])
            #expect(cert.replies == [dir.path + "/cert.pem"])
        }
    }

    @Test(
        "bash completion: -stop completes the names registered with the running epmd",
        .enabled(if: !TestBinary.isCEPMD),
        .timeLimit(.minutes(1))
    )
    func bashCompletionOfNames() async throws {
        let gateway = try await GatewayProcess.start(arguments: ["--no-http"])
        defer { gateway.stop() }
        let fd = try WireClient.connect(port: gateway.port)
        defer { close(fd) }
        #expect(WireClient.send(fd, WireClient.frame(WireClient.alive2(name: Array("pkgnode".utf8), port: 5555))))
        let reply = try await WireClient.read(fd, count: 4)
        // ALIVE2_X_RESP (118) or ALIVE2_RESP (121), result 0.
        #expect([118, 121].contains(reply[0]) && reply[1] == 0, "\(reply)")
        // The function runs `COMP_WORDS[0] -names`: the binary under test, on the gateway's port.
        let names = try await Self.complete(
            [TestBinary.url.path, "-stop", "pkg"],
            environment: ["ERL_EPMD_PORT": String(gateway.port)]
        )
        #expect(names.replies == ["pkgnode"])
    }

    @Test(
        "/etc/default/epmd-gateway names only variables of --help; the maintainer scripts parse with sh -n",
        .enabled(if: !TestBinary.isCEPMD),
        .timeLimit(.minutes(1))
    )
    func defaultFileAndMaintainerScripts() async throws {
        let help = try await Self.helpOptions().text
        let defaults = try Self.read(RepositoryRoot.appending("deploy/systemd/epmd-gateway.default"))
        let pattern = try Regex(#"EPMD_GATEWAY_[A-Z_]+"#)
        let named = Set(defaults.matches(of: pattern).map { String(defaults[$0.range]) })
        #expect(named.count >= 5)
        for variable in named.sorted() {
            #expect(help.contains(variable), "\(variable) is not an option of --help")
        }
        for script in ["postinst", "prerm", "postrm"] {
            let result = try await Self.tool("sh", ["-n", RepositoryRoot.appending("deploy/debian/\(script)").path])
            #expect(result.status == 0, "\(script): \(result.stderr)")
        }
    }

    // MARK: - The Debian package

    /// `EPMD_GATEWAY_DEB`, or the path `scripts/package` prints (it builds the release binary: minutes).
    static func debianPackage() async throws -> String {
        if let path = ProcessInfo.processInfo.environment["EPMD_GATEWAY_DEB"], !path.isEmpty {
            return path
        }
        let result = try await self.script("package", [], timeout: 1500)
        #expect(result.status == 0, "\(result.stderr)")
        return try #require(result.stdout.split(separator: "\n").last.map(String.init), "\(result.stderr)")
    }

    @Test(
        "scripts/package: the .deb's control, contents and libraries are right, and lintian passes",
        .enabled(
            if: !TestBinary.isCEPMD && ExternalTool.usable("dpkg-deb") && ExternalTool.usable("dpkg-shlibdeps")
                && ExternalTool.usable("lintian")
        ),
        .timeLimit(.minutes(30))
    )
    func debianPackageChecks() async throws {
        let deb = try await Self.debianPackage()
        #expect(FileManager.default.fileExists(atPath: deb), "no package at \(deb)")
        #expect(URL(fileURLWithPath: deb).lastPathComponent.hasPrefix("epmd-gateway_"))

        let fields = try await Self.tool("dpkg-deb", ["-f", deb, "Package", "Version", "Architecture", "Depends"])
        #expect(fields.status == 0, "\(fields.stderr)")
        let control = fields.stdout
        #expect(control.contains("Package: epmd-gateway\n"))
        let versionLine = try await Blocking.run { try Command.run(TestBinary.url.path, ["--version"], timeout: 10) }
        let upstream = versionLine.stdout.split(separator: " ").last.map {
            $0.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        #expect(control.contains("Version: \(upstream ?? "?")-"), "\(control)")
        let depends = control.split(separator: "\n").first { $0.hasPrefix("Depends: ") }.map(String.init) ?? ""
        for library in ["libc6", "libmicrohttpd12", "libgnutls30"] {
            #expect(depends.contains(library), "\(depends)")
        }
        #expect(!depends.lowercased().contains("swift"), "\(depends)")

        let info = try await Self.tool("dpkg-deb", ["-I", deb])
        for member in ["postinst", "prerm", "postrm", "conffiles", "md5sums"] {
            #expect(info.stdout.contains(" \(member)"), "control archive lacks \(member)")
        }

        let contents = try await Self.tool("dpkg-deb", ["-c", deb])
        let lines = contents.stdout.split(separator: "\n").map(String.init)
        #expect(lines.allSatisfy { $0.contains(" root/root ") }, "every file root-owned")
        for path in [
            "./usr/bin/epmd-gateway", "./usr/lib/systemd/system/epmd-gateway.service",
            "./usr/lib/systemd/system/epmd-gateway.socket", "./usr/lib/systemd/system/epmd-gateway-http.socket",
            "./usr/lib/systemd/system/epmd.socket.d/epmd-gateway.conf",
            "./usr/lib/systemd/system/epmd.service.d/epmd-gateway.conf", "./usr/share/man/man8/epmd-gateway.8.gz",
            "./usr/share/bash-completion/completions/epmd-gateway", "./usr/share/doc/epmd-gateway/copyright",
            "./usr/share/doc/epmd-gateway/changelog.Debian.gz", "./etc/default/epmd-gateway",
            "./usr/share/lintian/overrides/epmd-gateway",
        ] {
            #expect(lines.contains { $0.hasSuffix(" \(path)") }, "\(path) is not in the package")
        }
        #expect(!lines.contains { $0.hasSuffix(" ./usr/bin/epmd") }, "the package must not shadow erlang-base's epmd")

        // The binary needs no Swift library: only libc, libm, libstdc++, libgcc_s, libmicrohttpd, GnuTLS.
        try await Self.withTemporaryDirectory { dir in
            let extract = try await Self.tool("dpkg-deb", ["-x", deb, dir.path])
            #expect(extract.status == 0, "\(extract.stderr)")
            let binary = dir.appendingPathComponent("usr/bin/epmd-gateway").path
            let readelf = try await Self.tool("readelf", ["-d", binary])
            let needed = readelf.stdout.matches(of: try Regex(#"\(NEEDED\)\s+Shared library: \[([^\]]+)\]"#))
                .compactMap { $0.output[1].substring.map(String.init) }
            #expect(!needed.isEmpty)
            let allowed = [
                "libc.so", "libm.so", "libstdc++.so", "libgcc_s.so", "ld-linux", "libmicrohttpd.so", "libgnutls.so",
            ]
            for library in needed {
                #expect(allowed.contains { library.hasPrefix($0) }, "unexpected library \(library)")
            }
            let service = try Self.read(dir.appendingPathComponent("usr/lib/systemd/system/epmd-gateway.service"))
            #expect(service.contains("\nExecStart=/usr/bin/epmd-gateway -systemd $DAEMON_ARGS\n"))
        }

        let lintian = try await Self.tool("lintian", ["--fail-on", "error,warning", deb], timeout: 300)
        #expect(lintian.status == 0, "\(lintian.stdout)\(lintian.stderr)")
        let findings = lintian.stdout.split(separator: "\n").filter { $0.hasPrefix("E: ") || $0.hasPrefix("W: ") }
        #expect(findings.isEmpty, "\(findings)")
    }
}
