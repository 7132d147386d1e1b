import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A test's own failure, thrown by the support code with a message saying what went wrong.
public struct TestFailure: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// The one rule for tests that need something the machine may lack (a tool, IPv6 loopback, a Python
/// module): outside CI they are skipped when it is missing; in CI (`CI` set, as `.ci/run` does) they
/// always run, so a missing precondition is a failure, never a skip.
public enum CIRule {
    /// True when the environment variable `CI` is set (to anything).
    public static var inCI: Bool { ProcessInfo.processInfo.environment["CI"] != nil }

    /// For `.enabled(if: CIRule.enabled(ifAvailable: …))`: true in CI, otherwise `available`. The test
    /// must then `try #require` its precondition, so that in CI it fails on what is missing.
    public static func enabled(ifAvailable available: @autoclosure () -> Bool) -> Bool {
        self.inCI || available()
    }
}

/// External tools (erl, elixir, epmd, curl, python3, promtool…), found on `PATH`.
public enum ExternalTool {
    /// The first executable `name` on `PATH`, or nil.
    public static func path(_ name: String) -> String? {
        let dirs = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":")
        for dir in dirs {
            let candidate = "\(dir)/\(name)"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        return nil
    }

    /// Use as a trait: `.enabled(if: ExternalTool.usable("erl"))`. In CI this is always true (see
    /// `CIRule`), so the test runs and fails on the missing tool instead of being skipped.
    public static func usable(_ name: String) -> Bool {
        CIRule.enabled(ifAvailable: self.path(name) != nil)
    }

    /// The tool's path; records a failure (and throws) when it is not installed.
    public static func require(_ name: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        try #require(
            self.path(name),
            "\(name) is not installed (CI installs it in .ci/run)",
            sourceLocation: sourceLocation
        )
    }
}
