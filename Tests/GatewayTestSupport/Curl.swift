import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The one curl runner of the tests: `curl -s` with a time bound, through `Command.run` (output in
/// files, the child's signal mask empty).
public enum Curl {
    /// What curl saw: the HTTP status (0 when nothing answered), the body (headers first with `-i`), and
    /// the response's Content-Type ("" when none).
    public struct Response: Sendable, CustomStringConvertible {
        public var status: Int
        public var body: String
        public var contentType: String

        public var description: String { "\(self.status) \(self.contentType): \(self.body.prefix(2000))" }
    }

    /// Put after the body by `-w`; the last occurrence is curl's own.
    private static let marker = "\n--curl-write-out--"

    /// Runs `curl -s -m maxTime -o - <arguments>` on a thread of its own (see `Blocking`).
    public static func run(_ arguments: [String], maxTime: Int = 10) async throws -> Response {
        try await Blocking.run { try self.runBlocking(arguments, maxTime: maxTime) }
    }

    /// `run`, blocking the calling thread: for synchronous tests.
    public static func runBlocking(_ arguments: [String], maxTime: Int = 10) throws -> Response {
        let curl = try ExternalTool.require("curl")
        let command =
            ["-s", "-m", String(maxTime), "-o", "-", "-w", "\(self.marker)%{http_code} %{content_type}"] + arguments
        let result = try Command.run(curl, command, timeout: TimeInterval(maxTime + 5))
        guard let range = result.stdout.range(of: self.marker, options: .backwards) else {
            throw TestFailure("curl \(arguments): exit \(result.status), no status: \(result.stderr)")
        }
        let trailer = result.stdout[range.upperBound...].split(separator: " ", maxSplits: 1).map(String.init)
        return Response(
            status: trailer.first.flatMap { Int($0) } ?? -1,
            body: String(result.stdout[..<range.lowerBound]),
            contentType: trailer.count == 2 ? trailer[1] : ""
        )
    }
}

/// `curl -sN` reading an event stream (or any long response) into a file until it ends, `seconds` pass,
/// or `stop()`. Files, not pipes: see `Command.run`.
public final class CurlStream: @unchecked Sendable {
    // @unchecked: the process is started in init and afterwards only waited for or killed.
    public let process = Process()
    private let output: URL
    private let head: URL

    public init(_ url: String, seconds: Int = 60, headers: [String] = []) throws {
        let curl = try ExternalTool.require("curl")
        let name = "curl-stream-\(UUID().uuidString)"
        self.output = FileManager.default.temporaryDirectory.appendingPathComponent(name)
        self.head = FileManager.default.temporaryDirectory.appendingPathComponent("\(name).head")
        _ = FileManager.default.createFile(atPath: self.output.path, contents: nil)
        self.process.executableURL = URL(fileURLWithPath: curl)
        self.process.arguments =
            ["-sN", "-m", String(seconds), "-o", self.output.path, "-D", self.head.path]
            + headers.flatMap { ["-H", $0] } + [url]
        self.process.standardOutput = FileHandle.nullDevice
        self.process.standardError = FileHandle.nullDevice
        try self.process.runUnmasked()
    }

    /// Everything received so far.
    public var text: String { (try? String(contentsOf: self.output, encoding: .utf8)) ?? "" }

    /// The server-sent event frames so far that carry an id: (event, id, data).
    public var frames: [(event: String, id: UInt64, data: String)] {
        self.text.components(separatedBy: "\n\n").compactMap { block in
            var event = ""
            var id: UInt64?
            var data = ""
            for line in block.split(separator: "\n") {
                if line.hasPrefix("event: ") { event = String(line.dropFirst(7)) }
                if line.hasPrefix("id: ") { id = UInt64(line.dropFirst(4)) }
                if line.hasPrefix("data: ") { data = String(line.dropFirst(6)) }
            }
            return id.map { (event, $0, data) }
        }
    }

    /// Polls (bounded) until `condition` holds; records a failure naming `description` if it never does.
    public func waitFor(
        _ description: String,
        timeout: Duration = .seconds(20),
        sourceLocation: SourceLocation = #_sourceLocation,
        _ condition: (CurlStream) -> Bool
    ) async throws {
        let seen = try await Poll.until(timeout: timeout, interval: .milliseconds(20)) { condition(self) }
        #expect(seen != nil, "the stream never showed \(description): \(self.text)", sourceLocation: sourceLocation)
    }

    /// Polls (bounded) until the text holds `needle`; records a failure if it never does.
    public func wait(
        for needle: String,
        timeout: Duration = .seconds(10),
        sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        try await self.waitFor(needle.debugDescription, timeout: timeout, sourceLocation: sourceLocation) {
            $0.text.contains(needle)
        }
    }

    /// Waits for curl to end (its `-m` bounds that) and returns the HTTP status it saw (-1 if none).
    public func finish() -> Int {
        self.process.waitUntilExit()
        let head = (try? String(contentsOf: self.head, encoding: .utf8)) ?? ""
        // "HTTP/1.1 200 OK"
        return head.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? -1
    }

    /// SIGKILL, and wait (bounded) for the exit.
    public func stop() {
        self.process.killAndWait()
    }

    deinit {
        self.process.killAndWait()
        try? FileManager.default.removeItem(at: self.output)
        try? FileManager.default.removeItem(at: self.head)
    }
}
