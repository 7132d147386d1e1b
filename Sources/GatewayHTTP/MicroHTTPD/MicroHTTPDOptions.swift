import CMicroHTTPD

/// The option array handed to `MHD_start_daemon` (through `cmhd_start`'s `MHD_OPTION_ARRAY`): Swift
/// cannot pass C variadic arguments, so each option is one `MHD_OptionItem` here. Integer options
/// carry their value, pointer options a pointer that must stay valid until the daemon has started
/// (every caller builds the array inside the scope that owns the pointee), callbacks their address.
struct MicroHTTPDOptions {
    private(set) var items: [MHD_OptionItem] = []

    /// An option with an integer value.
    mutating func add(_ option: MHD_OPTION, value: Int) {
        self.items.append(MHD_OptionItem(option: option, value: value, ptr_value: nil))
    }

    /// An option with a pointer (an address, a string) and an optional integer.
    mutating func add(_ option: MHD_OPTION, pointer: UnsafeMutableRawPointer?, value: Int = 0) {
        self.items.append(MHD_OptionItem(option: option, value: value, ptr_value: pointer))
    }

    /// A callback option: the function's address as the value and its context as the pointer.
    /// `callback` must be a `@convention(c)` function (a C function pointer is one machine word).
    mutating func add<Callback>(_ option: MHD_OPTION, callback: Callback, context: UnsafeMutableRawPointer?) {
        let address = unsafeBitCast(callback, to: Int.self)
        self.items.append(MHD_OptionItem(option: option, value: address, ptr_value: context))
    }

    /// Calls `body` with the array, terminated by `MHD_OPTION_END` (nil only if the array had no
    /// storage, which a non-empty array always has).
    func withTerminated<Result>(_ body: (UnsafePointer<MHD_OptionItem>) -> Result?) -> Result? {
        var terminated = self.items
        terminated.append(MHD_OptionItem(option: .END, value: 0, ptr_value: nil))
        return terminated.withUnsafeBufferPointer { buffer in
            guard let base = buffer.baseAddress else { return nil }
            return body(base)
        }
    }
}
