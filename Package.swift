// swift-tools-version:6.2
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "epmd-gateway",
    platforms: [.macOS(.v15)],
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
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1")
    ],
    targets: [
        // MARK: - Targets

        /// Linux headers Swift cannot import cleanly on its own (epoll, signalfd, socket option shims).
        .target(name: "CEPMDSystem"),
        /// Pure wire codec: every byte layout of the epmd protocol, no I/O.
        .target(name: "EPMDProtocol"),
        /// The name table: registration rules, creation numbers, the unregistered FIFO.
        .target(name: "EPMDRegistry", dependencies: ["EPMDProtocol"]),
        /// The epmd port: our own epoll loop, connection state machine, listeners.
        .target(name: "EPMDServer", dependencies: ["CEPMDSystem", "EPMDProtocol", "EPMDRegistry"]),
        /// libmicrohttpd, with fixed-signature wrappers for its variadic calls.
        .systemLibrary(
            name: "CMicroHTTPD",
            pkgConfig: "libmicrohttpd",
            providers: [.apt(["libmicrohttpd-dev"])]
        ),
        /// The HTTP/JSON front: a pure router over registry snapshots, and the libmicrohttpd daemon
        /// (its `MicroHTTPD/` folder is the only place with unsafe pointers).
        .target(name: "GatewayHTTP", dependencies: ["CMicroHTTPD", "EPMDProtocol", "EPMDRegistry"]),
        /// Prometheus metrics: swift-prometheus handles made once, fed by the epmd loop's instruments,
        /// registry events and the HTTP observer; scrape-time gauges and the `process_*` family.
        .target(
            name: "GatewayMetrics",
            dependencies: [
                .product(name: "Prometheus", package: "swift-prometheus"),
                "EPMDServer",
                "EPMDRegistry",
                "EPMDProtocol",
            ]
        ),
        /// Composition: configuration, epmd-style command line, client modes, daemon mode.
        .target(
            name: "EPMDApp",
            dependencies: [
                "CEPMDSystem", "EPMDProtocol", "EPMDRegistry", "EPMDServer", "GatewayHTTP", "GatewayMetrics",
            ]
        ),
        /// The thin executable.
        .executableTarget(name: "epmd-gateway", dependencies: ["EPMDApp"]),

        // MARK: - Tests

        .testTarget(name: "EPMDProtocolTests", dependencies: ["EPMDProtocol"]),
        .testTarget(name: "EPMDRegistryTests", dependencies: ["EPMDRegistry", "EPMDProtocol"]),
        .testTarget(
            name: "EPMDServerTests",
            dependencies: ["EPMDServer", "EPMDRegistry", "EPMDProtocol", "CEPMDSystem"]
        ),
        .testTarget(name: "EPMDAppTests", dependencies: ["EPMDApp", "EPMDServer"]),
        .testTarget(name: "GatewayHTTPTests", dependencies: ["GatewayHTTP", "EPMDRegistry", "EPMDProtocol"]),
        .testTarget(
            name: "GatewayMetricsTests",
            dependencies: ["GatewayMetrics", "EPMDServer", "EPMDRegistry", "EPMDProtocol"]
        ),
        .testTarget(
            name: "IntegrationTests",
            dependencies: ["epmd-gateway"],
            // The headless Chromium driver the status page test runs (Python, standard library only).
            exclude: ["Support/chromium_cdp.py"]
        ),
    ]
)

for target in package.targets where target.type != .system {
    target.swiftSettings = (target.swiftSettings ?? []) + swiftSettings
}
