// swift-tools-version:6.2
import PackageDescription

// The libFuzzer targets, kept out of the main package so that `swift build` and CI's ordinary build
// never see `-sanitize=fuzzer`. Built and run by `scripts/fuzz TARGET SECONDS`, which passes
// `-Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library`: libFuzzer supplies `main`, each target
// supplies `LLVMFuzzerTestOneInput`. SwiftPM links an executable target's entry point as `<Target>_main` (so
// that tests can link the target), which hides libFuzzer's own `main`: each target's `<Target>_main` therefore
// calls `LLVMFuzzerRunDriver`, libFuzzer's documented entry for programs with their own `main`.
//
// A path dependency's identity is its directory's name (`epmd-gateway` in a fresh clone, the worktree's
// name elsewhere), so it is derived from this file's location rather than written down.
let rootDirectory = String(#filePath.split(separator: "/").dropLast(2).last ?? "epmd-gateway")

let package = Package(
    name: "epmd-gateway-fuzz",
    dependencies: [.package(path: "..")],
    targets: [
        /// The declaration of `LLVMFuzzerRunDriver`.
        .target(name: "CLibFuzzer"),
        /// The input reader and driver every target shares (the only unsafe pointers of the fuzzers).
        .target(name: "FuzzSupport", dependencies: ["CLibFuzzer"]),
        /// Bytes split at arbitrary points into the frame assembler, then the request decoder.
        .executableTarget(
            name: "FuzzFrame",
            dependencies: ["FuzzSupport", .product(name: "EPMDProtocol", package: rootDirectory)]
        ),
        /// Sequences of connection events through the state machine and the request policy over a registry.
        .executableTarget(
            name: "FuzzConnection",
            dependencies: [
                "FuzzSupport",
                .product(name: "EPMDProtocol", package: rootDirectory),
                .product(name: "EPMDRegistry", package: rootDirectory),
                .product(name: "EPMDServer", package: rootDirectory),
            ]
        ),
        /// Arbitrary methods, paths, queries and headers through the HTTP router.
        .executableTarget(
            name: "FuzzRouter",
            dependencies: [
                "FuzzSupport",
                .product(name: "EPMDProtocol", package: rootDirectory),
                .product(name: "EPMDRegistry", package: rootDirectory),
                .product(name: "GatewayHTTP", package: rootDirectory),
            ]
        ),
    ]
)
