import CTestReaddirGuard

/// The test process's readdir(3) guard (`Tests/CTestReaddirGuard`): Foundation's `Process.run` reads
/// past glibc's directory buffer when the process holds many descriptors; the guard hands it whole
/// copies instead.
public enum ReaddirGuard {
    /// Whether the guard is compiled in (not under AddressSanitizer or ThreadSanitizer).
    public static var isActive: Bool { ctest_readdir_guard_active() != 0 }

    /// Directory entries the guard has copied so far.
    public static var copies: UInt { UInt(ctest_readdir_guard_copies()) }
}
