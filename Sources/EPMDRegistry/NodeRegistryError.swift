/// Why a well-formed ALIVE2 registration was refused (reply result 1, creation 99).
public enum NodeRegistryError: Error, Hashable, Sendable, CaseIterable, CustomStringConvertible {
    /// The name is already registered (compared byte for byte).
    case nameInUse
    /// The name is longer than 1020 bytes or 255 code points.
    case nameTooLong
    /// The name is not strict UTF-8.
    case invalidEncoding
    /// The extra field is longer than 1020 bytes.
    case extraTooLong

    /// A stable label for logs and metrics (the `reason` of `epmd_registration_failures_total`).
    public var reason: String { self.label }

    /// A stable label for logs and metrics (the `reason` of `epmd_registration_failures_total`).
    public var label: String {
        switch self {
        case .nameInUse: "name_in_use"
        case .nameTooLong: "name_too_long"
        case .invalidEncoding: "invalid_encoding"
        case .extraTooLong: "extra_too_long"
        }
    }

    public var description: String { self.label }
}
