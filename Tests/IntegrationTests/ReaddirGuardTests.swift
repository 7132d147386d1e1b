import Foundation
import GatewayTestSupport
import Testing

/// The readdir guard is in front of glibc's for Foundation's `Process.run`, which walks
/// `/proc/self/fd` on every spawn (the over-read it prevents crashed the test runner twice).
@Suite struct ReaddirGuardTests {
    @Test("Process.run's walk of /proc/self/fd goes through the guard, with 2,000 descriptors open")
    func processRunGoesThroughTheGuard() async throws {
        // Reserved like the conformance tests' sockets: 2,000 descriptors are more than the budget keeps
        // for tests that do not reserve, and the 19,000-registration test must not meet them (it once
        // failed with EMFILE when both ran at once).
        try await ConformanceFDBudget.with(2000 + 20) {
            try Self.spawnWithDescriptorsOpen()
        }
    }

    private static func spawnWithDescriptorsOpen() throws {
        // Enough descriptors to fill opendir's 32 KiB buffer, the case that crashed.
        var held: [Int32] = []
        defer { for fd in held { close(fd) } }
        for _ in 0..<1000 {
            var pair: [Int32] = [0, 0]
            guard pipe(&pair) == 0 else { break }
            held.append(contentsOf: pair)
        }
        try #require(held.count == 2000, "could not open 2,000 descriptors")
        let before = ReaddirGuard.copies
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/true")
        try process.run()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        if ReaddirGuard.isActive {
            #expect(ReaddirGuard.copies >= before + 2000, "Process.run did not read /proc/self/fd through the guard")
        } else {
            // Under ASan/TSan the runtime intercepts readdir and the guard is compiled out.
            #expect(ReaddirGuard.copies == 0)
        }
    }
}
