// swift-tools-version:6.2
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

// The loop is epoll, the HTTP front libmicrohttpd with Linux flags: Linux only. SwiftPM's `platforms:`
// lists Apple platforms alone, so Linux is stated here and enforced by `#error` in `EPMDPosix`.
let package = Package(
    name: "epmd-gateway",
    products: [
        .executable(name: "epmd-gateway", targets: ["epmd-gateway"]),
        .library(name: "EPMDProtocol", targets: ["EPMDProtocol"]),
        .library(name: "EPMDRegistry", targets: ["EPMDRegistry"]),
        .library(name: "EPMDServer", targets: ["EPMDServer"]),
        .library(name: "EPMDApp", targets: ["EPMDApp"]),
        .library(name: "GatewayHTTP", targets: ["GatewayHTTP"]),
        .library(name: "GatewayMetrics", targets: ["GatewayMetrics"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log", from: "1.16.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        // Already in the graph (swift-prometheus uses it): GatewayMetrics takes its inlinable lazy
        // reference for the HTTP series (one atomic load per request).
        .package(url: "https://github.com/apple/swift-atomics.git", from: "1.2.0"),
    ],
    targets: [
        // MARK: - Targets

        /// Linux headers Swift cannot import cleanly on its own (epoll, signalfd, socket option shims).
        .target(name: "CEPMDSystem"),
        /// The one POSIX layer: every system call and every unsafe pointer outside `GatewayHTTP/MicroHTTPD/`
        /// (sockets, addresses, epoll, clocks, threads, spawn, the sd_notify datagram). errno is read at once.
        .target(name: "EPMDPosix", dependencies: ["CEPMDSystem"]),
        /// swift-log's handler for C epmd's own log lines (stderr, syslog, the journal).
        .target(
            name: "EPMDLogging",
            dependencies: ["EPMDPosix", .product(name: "Logging", package: "swift-log")]
        ),
        /// Pure wire codec: every byte layout of the epmd protocol, no I/O.
        .target(name: "EPMDProtocol"),
        /// The name table: registration rules, creation numbers, the unregistered FIFO.
        .target(name: "EPMDRegistry", dependencies: ["EPMDProtocol"]),
        /// The epmd port: our own epoll loop, connection state machine, listeners.
        .target(
            name: "EPMDServer",
            dependencies: [
                "EPMDLogging", "EPMDPosix", "EPMDProtocol", "EPMDRegistry",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        /// libmicrohttpd, with fixed-signature wrappers for its variadic calls, and GnuTLS for the
        /// client-certificate check of mutual TLS (`tls.h`).
        .systemLibrary(
            name: "CMicroHTTPD",
            pkgConfig: "libmicrohttpd",
            providers: [.apt(["libmicrohttpd-dev", "libgnutls28-dev"])]
        ),
        /// The HTTP/JSON front: a pure router over registry snapshots, and the libmicrohttpd daemon
        /// (its `MicroHTTPD/` folder is the only place with unsafe pointers).
        .target(
            name: "GatewayHTTP",
            dependencies: [
                "CMicroHTTPD", "EPMDLogging", "EPMDPosix", "EPMDProtocol", "EPMDRegistry",
                .product(name: "Logging", package: "swift-log"),
            ],
            // The status page and the contract, embedded in the binary at build time. `openapi.yaml` and
            // `openapi.json` are symlinks to the canonical files in `openapi/` (SwiftPM follows them).
            resources: [
                .embedInCode("Resources/status.html"), .embedInCode("Resources/openapi.yaml"),
                .embedInCode("Resources/openapi.json"),
            ]
        ),
        /// Prometheus metrics: swift-prometheus handles made once, fed by the epmd loop's instruments,
        /// registry events and the HTTP observer; scrape-time gauges and the `process_*` family.
        .target(
            name: "GatewayMetrics",
            dependencies: [
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Atomics", package: "swift-atomics"),
                .product(name: "Logging", package: "swift-log"),
                "EPMDPosix",
                "EPMDServer",
                "EPMDRegistry",
                "EPMDProtocol",
            ]
        ),
        /// Composition: configuration, epmd-style command line, client modes, daemon mode.
        .target(
            name: "EPMDApp",
            dependencies: [
                "EPMDLogging", "EPMDPosix", "EPMDProtocol", "EPMDRegistry", "EPMDServer", "GatewayHTTP",
                "GatewayMetrics", .product(name: "Logging", package: "swift-log"),
            ]
        ),
        /// The thin executable.
        .executableTarget(name: "epmd-gateway", dependencies: ["EPMDApp"]),

        // MARK: - Tests

        /// What the test targets share: the raw epmd wire client, external tools and the CI rule (in CI a
        /// missing tool fails, never skips), the curl runner, child processes, polling, the repository root.
        /// The test process's readdir(3) in front of glibc's (see the file): works around an over-read
        /// in the toolchain's Foundation `Process.run` that crashed the test runner.
        .target(name: "CTestReaddirGuard", path: "Tests/CTestReaddirGuard"),
        .target(name: "GatewayTestSupport", dependencies: ["CTestReaddirGuard"], path: "Tests/GatewayTestSupport"),
        .testTarget(name: "EPMDProtocolTests", dependencies: ["EPMDProtocol"]),
        .testTarget(name: "EPMDRegistryTests", dependencies: ["EPMDRegistry", "EPMDProtocol"]),
        .testTarget(
            name: "EPMDServerTests",
            dependencies: [
                "EPMDServer", "EPMDPosix", "EPMDRegistry", "EPMDProtocol", "CEPMDSystem", "GatewayTestSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "InMemoryLogging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "EPMDAppTests",
            dependencies: [
                "EPMDApp", "EPMDServer", "EPMDPosix", "EPMDProtocol", "EPMDRegistry", "GatewayMetrics",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "InMemoryLogging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "EPMDLoggingTests",
            dependencies: ["EPMDLogging", "EPMDPosix", .product(name: "Logging", package: "swift-log")]
        ),
        .testTarget(
            name: "GatewayHTTPTests",
            dependencies: [
                "GatewayHTTP", "EPMDRegistry", "EPMDProtocol", "GatewayTestSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "InMemoryLogging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "GatewayMetricsTests",
            dependencies: [
                "GatewayMetrics", "EPMDServer", "EPMDRegistry", "EPMDProtocol",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        .testTarget(
            name: "IntegrationTests",
            dependencies: ["epmd-gateway", "GatewayTestSupport"],
            // The headless Chromium driver the status page test runs (Python, standard library only).
            exclude: ["Support/chromium_cdp.py"]
        ),
    ]
)

for target in package.targets where target.type != .system {
    target.swiftSettings = (target.swiftSettings ?? []) + swiftSettings
}
