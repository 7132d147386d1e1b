import Foundation
import GatewayTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A booted Debian 12 container with systemd 252 as its PID 1 (`scripts/systemd-container`): the real
/// service manager for the tests of the shipped units, on a machine whose own PID 1 is not systemd.
///
/// The container shares the host's network namespace, so a socket its systemd listens on is on the
/// host's loopback: erl, curl and epmd on the host reach it directly. Its root is a throwaway overlay
/// on the cached image, mounted at `<directory>/root` on the host: files are copied in by writing there.
/// `stop()` powers it off and waits for it by its PID; every suite that boots one stops it.
final class SystemdContainer: Sendable {
    /// The container's folder (`scripts/systemd-container`'s DIR), inside `base`.
    let directory: URL
    /// The temporary folder this test process made for it (with `owner.pid`), removed by `stop()`.
    let base: URL

    /// The container's root file system, as the host sees it.
    var root: URL { self.directory.appendingPathComponent("root") }

    private static var script: String { RepositoryRoot.appending("scripts/systemd-container").path }

    /// The prefix of `base` in the temporary folder: `boot()` stops leftovers of dead test processes.
    private static let basePrefix = "epmd-gateway-systemd-"

    /// What the container needs and this machine lacks (root, debootstrap, systemd-nspawn, nsenter).
    static var missingPrerequisites: [String] {
        var missing: [String] = []
        if getuid() != 0 { missing.append("root") }
        for tool in ["debootstrap", "systemd-nspawn", "nsenter"] where !Self.isInstalled(tool) {
            missing.append(tool)
        }
        return missing
    }

    /// For `.enabled(if:)`: true in CI (a missing prerequisite then fails the test), otherwise when nothing
    /// is missing.
    static var usable: Bool { CIRule.enabled(ifAvailable: Self.missingPrerequisites.isEmpty) }

    /// On PATH, or in the sbin folders root's PATH has and a test runner's may not.
    private static func isInstalled(_ tool: String) -> Bool {
        ExternalTool.path(tool) != nil
            || ["/usr/sbin", "/sbin", "/usr/bin"].contains { access("\($0)/\(tool)", X_OK) == 0 }
    }

    /// Boots a container (building the image first if it is missing: about a minute).
    /// - Throws: `TestFailure` naming what is missing, or the script's output if the boot failed (the
    ///   half-booted container is stopped first).
    static func boot() async throws -> SystemdContainer {
        let missing = Self.missingPrerequisites
        guard missing.isEmpty else {
            throw TestFailure("a systemd container needs \(missing.joined(separator: ", ")) (CI has them: .ci/run)")
        }
        Self.stopLeftovers()
        // Twice at most: a boot that fails under the load of the suites beside it (a CI rehearsal's boot
        // failed once that way) gets one more try; its failure is kept in the message either way.
        var failures: [String] = []
        for _ in 0..<2 {
            switch try await Self.bootOnce() {
            case .success(let container): return container
            case .failure(let failure): failures.append(failure.description)
            }
        }
        throw TestFailure("scripts/systemd-container boot failed twice: \(failures.joined(separator: "\n---\n"))")
    }

    private static func bootOnce() async throws -> Result<SystemdContainer, TestFailure> {
        let base = FileManager.default.temporaryDirectory
            .appendingPathComponent(Self.basePrefix + UUID().uuidString.prefix(8).lowercased())
        try FileManager.default.createDirectory(at: base, withIntermediateDirectories: true)
        try Data("\(getpid())\n".utf8).write(to: base.appendingPathComponent("owner.pid"))
        let container = SystemdContainer(directory: base.appendingPathComponent("c"), base: base)
        let script = Self.script
        let directory = container.directory.path
        let booted: CommandResult
        do {
            booted = try await Blocking.run { try Command.run(script, ["boot", directory], timeout: 600) }
        } catch {
            container.stop()
            throw error
        }
        guard booted.status == 0 else {
            let consoleURL = container.directory.appendingPathComponent("console.log")
            let console = (try? String(contentsOf: consoleURL, encoding: .utf8)) ?? ""
            container.stop()
            return .failure(
                TestFailure(
                    "exit \(booted.status): \(booted.stdout)\(booted.stderr); console: \(console.suffix(3000))"
                )
            )
        }
        return .success(container)
    }

    private init(directory: URL, base: URL) {
        self.directory = directory
        self.base = base
    }

    /// Powers the container off (bounded by the script: SIGKILL after 30 s), unmounts its root and removes
    /// its folders. Blocking, for cleanups; safe to call twice.
    @discardableResult
    func stop() -> CommandResult? {
        defer { try? FileManager.default.removeItem(at: self.base) }
        guard FileManager.default.fileExists(atPath: self.directory.path) else { return nil }
        return try? Command.run(Self.script, ["stop", self.directory.path], timeout: 90)
    }

    /// Stops the containers of test processes that died before their cleanup ran (a crash, a SIGKILL):
    /// each base folder names its owner's PID.
    private static func stopLeftovers() {
        let temporary = FileManager.default.temporaryDirectory
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: temporary.path)) ?? []
        for entry in entries where entry.hasPrefix(Self.basePrefix) {
            let base = temporary.appendingPathComponent(entry)
            let owner = (try? String(contentsOf: base.appendingPathComponent("owner.pid"), encoding: .utf8))
                .flatMap { pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
            // No PID yet: a boot in progress in another process. A live owner: its container.
            guard let owner, owner != getpid(), kill(owner, 0) != 0, errno == ESRCH else { continue }
            _ = try? Command.run(Self.script, ["stop", base.appendingPathComponent("c").path], timeout: 90)
            try? FileManager.default.removeItem(at: base)
        }
    }

    // MARK: - Inside

    /// Runs `arguments` inside (all namespaces but the network's), with root's plain PATH and no other
    /// variables of the host.
    func run(_ arguments: [String], timeout: TimeInterval = 60) async throws -> CommandResult {
        let script = Self.script
        let directory = self.directory.path
        return try await Blocking.run {
            try Command.run(script, ["exec", directory] + arguments, timeout: timeout)
        }
    }

    /// Runs a shell script inside (`/bin/sh -c`).
    func shell(_ script: String, timeout: TimeInterval = 60) async throws -> CommandResult {
        try await self.run(["/bin/sh", "-c", script], timeout: timeout)
    }

    /// Runs a shell script inside that must succeed; returns its stdout.
    /// - Throws: `TestFailure` with the script, its status and both outputs when it fails.
    @discardableResult
    func check(_ script: String, timeout: TimeInterval = 60) async throws -> String {
        let result = try await self.shell(script, timeout: timeout)
        guard result.status == 0 else {
            throw TestFailure(
                "in the container, `\(script)` exited with \(result.status): \(result.stdout)\(result.stderr)"
            )
        }
        return result.stdout
    }

    /// `systemctl show UNIT -p P1,P2...` as a dictionary.
    func show(_ unit: String, _ properties: [String]) async throws -> [String: String] {
        let result = try await self.run(
            ["systemctl", "show", unit, "-p", properties.joined(separator: ",")],
            timeout: 30
        )
        guard result.status == 0 else {
            throw TestFailure("systemctl show \(unit) exited with \(result.status): \(result.stderr)")
        }
        var values: [String: String] = [:]
        for line in result.stdout.split(separator: "\n") {
            guard let equals = line.firstIndex(of: "=") else { continue }
            values[String(line[..<equals])] = String(line[line.index(after: equals)...])
        }
        return values
    }

    /// The unit's journal (`journalctl -u UNIT`) since the boot, or after `cursor`; "" if that fails.
    func journal(_ unit: String, after cursor: String? = nil) async -> String {
        let from = cursor.map { ["--after-cursor=\($0)"] } ?? []
        let result = try? await self.run(
            ["journalctl", "--no-pager", "-o", "short-monotonic", "-u", unit] + from,
            timeout: 30
        )
        return result?.stdout ?? ""
    }

    /// The journal's current end, for `journal(_:after:)`.
    func journalCursor() async throws -> String {
        let shown = try await self.check("journalctl --no-pager -n 0 --show-cursor")
        guard let line = shown.split(separator: "\n").first(where: { $0.hasPrefix("-- cursor: ") }) else {
            throw TestFailure("no journal cursor: \(shown)")
        }
        return String(line.dropFirst("-- cursor: ".count))
    }

    /// Writes `text` to `path` (absolute, inside the container), making its folders.
    func write(_ text: String, to path: String) throws {
        let url = self.root.appendingPathComponent(String(path.drop { $0 == "/" }))
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(text.utf8).write(to: url)
    }

    /// Copies a host file to `path` inside the container.
    func copy(_ file: URL, to path: String) throws {
        let url = self.root.appendingPathComponent(String(path.drop { $0 == "/" }))
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try? FileManager.default.removeItem(at: url)
        try FileManager.default.copyItem(at: file, to: url)
    }

    /// Removes `path` (absolute, inside the container) if it exists.
    func remove(_ path: String) {
        try? FileManager.default.removeItem(at: self.root.appendingPathComponent(String(path.drop { $0 == "/" })))
    }
}

/// The Debian package under test: `EPMD_GATEWAY_DEB` if set, otherwise the one `scripts/package` builds
/// (a release build, several minutes from a cold cache: CI builds it once up front and sets the variable).
enum GatewayPackage {
    static func path() async throws -> URL {
        if let path = ProcessInfo.processInfo.environment["EPMD_GATEWAY_DEB"], !path.isEmpty {
            guard FileManager.default.fileExists(atPath: path) else {
                throw TestFailure("EPMD_GATEWAY_DEB=\(path): no such file")
            }
            return URL(fileURLWithPath: path)
        }
        let script = RepositoryRoot.appending("scripts/package").path
        guard FileManager.default.isExecutableFile(atPath: script) else {
            throw TestFailure("no EPMD_GATEWAY_DEB and no scripts/package to build the .deb")
        }
        let root = RepositoryRoot.url
        let built = try await Blocking.run { try Command.run(script, [], currentDirectory: root, timeout: 1800) }
        // The path it prints: its last line ending in .deb.
        let printed = built.stdout.split(separator: "\n").last { $0.hasSuffix(".deb") }.map {
            String($0).trimmingCharacters(in: .whitespaces)
        }
        guard built.status == 0, let printed else {
            throw TestFailure(
                "scripts/package exited with \(built.status): \(built.stdout.suffix(2000))\(built.stderr.suffix(4000))"
            )
        }
        let url = printed.hasPrefix("/") ? URL(fileURLWithPath: printed) : root.appendingPathComponent(printed)
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw TestFailure("scripts/package printed \(printed), which does not exist")
        }
        return url
    }
}
