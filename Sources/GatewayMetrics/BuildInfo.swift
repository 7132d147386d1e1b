/// The labels of `epmd_gateway_build_info`.
public struct BuildInfo: Equatable, Sendable {
    /// The gateway's version.
    public var version: String
    /// The Swift compiler the gateway was built with (`6.3.1`).
    public var swiftVersion: String
    /// The libmicrohttpd version linked at run time (`MHD_get_version()`), or `unknown`.
    public var libmicrohttpdVersion: String

    /// - Parameters:
    ///   - version: the gateway's version.
    ///   - libmicrohttpdVersion: the libmicrohttpd version found at run time.
    ///   - swiftVersion: the compiler's version; by default the one that built this module.
    public init(version: String, libmicrohttpdVersion: String, swiftVersion: String = BuildInfo.compilerVersion) {
        self.version = version
        self.swiftVersion = swiftVersion
        self.libmicrohttpdVersion = libmicrohttpdVersion
    }

    /// The version of the compiler that built this module, as precise as `#if compiler` can tell
    /// (Swift has no run-time accessor for it).
    public static let compilerVersion: String = {
        #if compiler(>=7.0)
        ">=7.0"
        #elseif compiler(>=6.4)
        "6.4"
        #elseif compiler(>=6.3.3)
        "6.3.3"
        #elseif compiler(>=6.3.2)
        "6.3.2"
        #elseif compiler(>=6.3.1)
        "6.3.1"
        #elseif compiler(>=6.3)
        "6.3"
        #elseif compiler(>=6.2.4)
        "6.2.4"
        #elseif compiler(>=6.2.3)
        "6.2.3"
        #elseif compiler(>=6.2.2)
        "6.2.2"
        #elseif compiler(>=6.2.1)
        "6.2.1"
        #else
        "6.2"
        #endif
    }()
}
