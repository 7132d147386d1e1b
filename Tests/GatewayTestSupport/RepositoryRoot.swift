import Foundation

/// The repository's root folder (the one holding Package.swift), for tests that read `openapi/`,
/// `deploy/` or their own support files.
public enum RepositoryRoot {
    /// Three levels above this file: `<root>/Tests/GatewayTestSupport/RepositoryRoot.swift`.
    public static let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// `relativePath` (like `"openapi/openapi.yaml"`) under the root.
    public static func appending(_ relativePath: String) -> URL {
        self.url.appendingPathComponent(relativePath)
    }
}
