import EPMDPosix

/// The process environment as a dictionary.
public enum ProcessInfoEnvironment {
    public static var current: [String: String] { ProcessControl.environment() }
}
