import Foundation
import GatewayTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `deploy/docker/`: no Docker engine here, so the Dockerfile is linted by `hadolint` and read: every
/// path it copies from the build context is in the repository and not excluded by
/// `Dockerfile.dockerignore`, the path it copies from the build stage is where its `scripts/install`
/// run puts the files (`DESTDIR` + prefix), and the stages match `Package.swift` and the Kubernetes
/// manifests. The install layout itself is checked by running `scripts/install` into a DESTDIR.
@Suite(.timeLimit(.minutes(1)))
struct DeployDockerTests {
    static let folder = RepositoryRoot.appending("deploy/docker")

    /// One Dockerfile instruction: its keyword (upper case) and the rest, continuation lines joined.
    struct Instruction: Sendable {
        var keyword: String
        var arguments: String
        var stage: Int
    }

    /// The Dockerfile's instructions, comments and parser directives left out; `stage` counts `FROM`s.
    static func instructions() throws -> [Instruction] {
        let text = try String(contentsOf: self.folder.appendingPathComponent("Dockerfile"), encoding: .utf8)
        var instructions: [Instruction] = []
        var pending = ""
        var stage = -1
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.hasPrefix("#") || (pending.isEmpty && trimmed.isEmpty) { continue }
            if trimmed.hasSuffix("\\") {
                pending += trimmed.dropLast() + " "
                continue
            }
            let whole = pending + trimmed
            pending = ""
            let keyword = String(whole.prefix { !$0.isWhitespace }).uppercased()
            let arguments = whole.dropFirst(keyword.count).trimmingCharacters(in: .whitespaces)
            if keyword == "FROM" { stage += 1 }
            instructions.append(Instruction(keyword: keyword, arguments: arguments, stage: stage))
        }
        return instructions
    }

    /// `COPY`'s flags (`--from=build`) and its sources and destination.
    static func copyParts(_ arguments: String) -> (flags: [String], sources: [String], destination: String) {
        let words = arguments.split(separator: " ").map(String.init)
        let flags = words.filter { $0.hasPrefix("--") }
        let paths = words.filter { !$0.hasPrefix("--") }
        return (flags, Array(paths.dropLast()), paths.last ?? "")
    }

    // MARK: - .dockerignore

    /// The patterns of `Dockerfile.dockerignore` (BuildKit reads `<Dockerfile>.dockerignore`).
    static func ignorePatterns() throws -> [String] {
        let text = try String(
            contentsOf: self.folder.appendingPathComponent("Dockerfile.dockerignore"),
            encoding: .utf8
        )
        return text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty && !$0.hasPrefix("#") }
    }

    /// Whether Docker leaves `path` (relative to the context's root) out: a pattern matches it or one
    /// of its parent folders (`*` within a segment, `**/` any number of leading folders). No pattern
    /// here uses `!`, which this does not implement (checked by the test).
    static func isIgnored(_ path: String, by patterns: [String]) -> Bool {
        let segments = path.split(separator: "/")
        let prefixes = (1...segments.count).map { segments.prefix($0).joined(separator: "/") }
        return patterns.contains { pattern in
            prefixes.contains { prefix in
                if pattern.hasPrefix("**/") {
                    let rest = String(pattern.dropFirst(3))
                    let parts = prefix.split(separator: "/")
                    return (0..<parts.count).contains { start in
                        fnmatch(rest, parts[start...].joined(separator: "/"), FNM_PATHNAME) == 0
                    }
                }
                return fnmatch(pattern, prefix, FNM_PATHNAME) == 0
            }
        }
    }

    // MARK: - Tests

    @Test(
        "hadolint passes the Dockerfile; the only rule ignored is DL3008, each time with its reason",
        .enabled(if: ExternalTool.usable("hadolint"))
    )
    func hadolint() async throws {
        let hadolint = try ExternalTool.require("hadolint")
        let dockerfile = Self.folder.appendingPathComponent("Dockerfile").path
        let result = try await Blocking.run { try Command.run(hadolint, [dockerfile], timeout: 30) }
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        #expect(result.stdout.isEmpty, "\(result.stdout)")

        // Unpinned apt packages (Debian stable's versions move with security updates): the one
        // exception, and a comment says so before the first.
        let lines = try String(contentsOfFile: dockerfile, encoding: .utf8).split(separator: "\n")
        let ignores = lines.filter { $0.contains("hadolint ignore") }
        #expect(ignores.count == 2, "\(ignores)")
        #expect(ignores.allSatisfy { $0 == "# hadolint ignore=DL3008" }, "\(ignores)")
        let first = try #require(lines.firstIndex { $0.contains("hadolint ignore") })
        #expect(lines[first - 1].contains("(DL3008)"), "no reason before \(lines[first])")
    }

    @Test(
        "every COPY from the build context names repository paths the .dockerignore keeps, and it keeps every tracked file",
        .enabled(if: ExternalTool.usable("git"))
    )
    func contextCopies() async throws {
        let patterns = try Self.ignorePatterns()
        #expect(!patterns.contains { $0.hasPrefix("!") }, "negated patterns: isIgnored does not know them")
        let contextCopies = try Self.instructions().filter { $0.keyword == "COPY" || $0.keyword == "ADD" }
            .map { Self.copyParts($0.arguments) }.filter { !$0.flags.contains { $0.hasPrefix("--from") } }
        #expect(contextCopies.count == 2, "\(contextCopies)")
        for copy in contextCopies {
            for source in copy.sources {
                let url = source == "." ? RepositoryRoot.url : RepositoryRoot.appending(source)
                #expect(FileManager.default.fileExists(atPath: url.path), "COPY \(source): not in the repository")
                if source != "." { #expect(!Self.isIgnored(source, by: patterns), "COPY \(source) is dockerignored") }
            }
        }

        // `COPY . .`: the whole repository reaches the build (the manifest declares the test targets,
        // scripts/install reads deploy/ and docs/), local build products do not.
        let git = try ExternalTool.require("git")
        let root = RepositoryRoot.url.path
        let files = try await Blocking.run { try Command.run(git, ["-C", root, "ls-files"], timeout: 30) }
        try #require(files.status == 0, "\(files.stderr)")
        let tracked = files.stdout.split(separator: "\n").map(String.init)
        #expect(tracked.contains("Package.swift") && tracked.count > 100)
        let ignored = tracked.filter { Self.isIgnored($0, by: patterns) }
        #expect(ignored.isEmpty, "tracked files the build would not see: \(ignored)")
        for local in [".git/HEAD", ".build/debug/epmd-gateway", ".build-asan/x", "Fuzz/.build/x", "Package.resolved"] {
            #expect(Self.isIgnored(local, by: patterns), "\(local) would reach the build context")
        }
    }

    @Test("the runtime stage copies exactly what the build stage's scripts/install run installs")
    func stagesAgree() throws {
        let instructions = try Self.instructions()
        let froms = instructions.filter { $0.keyword == "FROM" }
        #expect(froms.count == 2)
        #expect(froms.first?.arguments.hasSuffix(" AS build") == true, "\(froms)")

        // Build stage: the system libraries Package.swift names for CMicroHTTPD, then scripts/install.
        let manifest = try String(contentsOf: RepositoryRoot.appending("Package.swift"), encoding: .utf8)
        let aptList = try #require(manifest.firstMatch(of: #/\.apt\(\[([^\]]*)\]\)/#)?.output.1)
        let aptPackages = aptList.split(separator: ",").map { $0.trimmingCharacters(in: .init(charactersIn: " \"")) }
        let buildRuns = instructions.filter { $0.stage == 0 && $0.keyword == "RUN" }.map(\.arguments)
        let buildInstall = try #require(buildRuns.first { $0.contains("apt-get install") })
        for package in aptPackages + ["pkg-config"] {
            #expect(buildInstall.contains(" \(package)"), "the build stage does not install \(package)")
        }
        let install = try #require(
            buildRuns.lazy.compactMap { $0.wholeMatch(of: #/DESTDIR=(\S+) scripts/install (?:--\S+ )*(/\S*)/#) }.first,
            "no `DESTDIR=... scripts/install PREFIX` in the build stage: \(buildRuns)"
        )
        let staged = "\(install.output.1)\(install.output.2)/"

        // Runtime stage: that tree, and nothing else from the build stage.
        let runtimeCopies = instructions.filter { $0.stage == 1 && $0.keyword == "COPY" }.map {
            Self.copyParts($0.arguments)
        }
        #expect(runtimeCopies.count == 1)
        let copy = try #require(runtimeCopies.first)
        #expect(copy.flags == ["--from=build"])
        #expect(copy.sources == [staged], "the runtime copies \(copy.sources), scripts/install fills \(staged)")
        #expect(copy.destination == "\(install.output.2)/")
        let runtimeRuns = instructions.filter { $0.stage == 1 && $0.keyword == "RUN" }.map(\.arguments)
        #expect(runtimeRuns.contains { $0.contains("--no-install-recommends libmicrohttpd12") }, "\(runtimeRuns)")

        // scripts/install puts the binary in PREFIX/bin (on PATH as /usr/bin): the entrypoint and the
        // health check name it; the user is the Kubernetes manifests' 65532; the ports are the defaults.
        func arguments(_ keyword: String) -> String? { instructions.last { $0.keyword == keyword }?.arguments }
        #expect(install.output.2 == "/usr")
        #expect(arguments("ENTRYPOINT") == #"["epmd-gateway"]"#)
        #expect(arguments("CMD") == #"["--http-address", "0.0.0.0"]"#)
        #expect(arguments("USER") == "65532:65532")
        #expect(arguments("EXPOSE") == "4369 4370")
        #expect(arguments("HEALTHCHECK")?.hasSuffix(#"CMD ["epmd-gateway", "-names"]"#) == true)
    }

    @Test(
        "scripts/install with DESTDIR puts an executable epmd-gateway where the Dockerfile copies it from",
        .disabled(if: TestBinary.isCEPMD, "installs the gateway's binary")
    )
    func installLayout() async throws {
        let destination = FileManager.default.temporaryDirectory.appendingPathComponent("staging-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: destination) }
        let script = RepositoryRoot.appending("scripts/install").path
        let binary = TestBinary.url.path
        let result = try await Blocking.run {
            try Command.run(
                script,
                ["--binary", binary, "/usr"],
                environment: ["DESTDIR": destination.path],
                timeout: 60
            )
        }
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        let installed = destination.appendingPathComponent("usr/bin/epmd-gateway").path
        #expect(FileManager.default.isExecutableFile(atPath: installed), "\(installed) missing")
        let version = try await Blocking.run { try Command.run(installed, ["--version"], timeout: 10) }
        #expect(version.status == 0 && version.stdout.hasPrefix("epmd-gateway "), "\(version.stdout)")
    }
}
