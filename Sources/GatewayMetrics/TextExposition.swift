/// Writing Prometheus text format 0.0.4 by hand, for the few families swift-prometheus cannot hold:
/// a counter whose value is read from the kernel (`process_cpu_seconds_total`) and the per-node
/// `epmd_node_info` series, whose label sets come and go with the registry.
enum TextExposition {
    /// Appends `# HELP` and `# TYPE` lines. `help` and `type` are constants of this module, so they
    /// need no escaping.
    static func appendHeader(_ name: String, help: String, type: String, to buffer: inout [UInt8]) {
        buffer.append(contentsOf: "# HELP ".utf8)
        buffer.append(contentsOf: name.utf8)
        buffer.append(UInt8(ascii: " "))
        buffer.append(contentsOf: help.utf8)
        buffer.append(contentsOf: "\n# TYPE ".utf8)
        buffer.append(contentsOf: name.utf8)
        buffer.append(UInt8(ascii: " "))
        buffer.append(contentsOf: type.utf8)
        buffer.append(UInt8(ascii: "\n"))
    }

    /// Appends a label value escaped as the text format requires: backslash, double quote and line
    /// feed get a backslash. Bytes that are not valid UTF-8 become U+FFFD, so the line stays parseable
    /// whatever a node sent.
    static func appendLabelValue(_ bytes: [UInt8], to buffer: inout [UInt8]) {
        if bytes.allSatisfy({ $0 < 0x80 }) {
            self.appendEscaped(bytes, to: &buffer)
        } else {
            // Non-ASCII: let the decoder replace any invalid sequence (registered names are strict
            // UTF-8 already, so this is a copy in practice).
            self.appendEscaped(String(decoding: bytes, as: UTF8.self).utf8, to: &buffer)
        }
    }

    private static func appendEscaped(_ bytes: some Sequence<UInt8>, to buffer: inout [UInt8]) {
        for byte in bytes {
            switch byte {
            case UInt8(ascii: "\\"): buffer.append(contentsOf: "\\\\".utf8)
            case UInt8(ascii: "\""): buffer.append(contentsOf: "\\\"".utf8)
            case UInt8(ascii: "\n"): buffer.append(contentsOf: "\\n".utf8)
            default: buffer.append(byte)
            }
        }
    }

    /// Appends an unsigned integer in decimal, without making a String (once per node in `epmd_node_info`).
    static func appendDecimal(_ value: UInt16, to buffer: inout [UInt8]) {
        var divisor: UInt16 = 10000
        var started = false
        while divisor > 0 {
            let digit = value / divisor % 10
            if digit != 0 || started || divisor == 1 {
                buffer.append(UInt8(ascii: "0") + UInt8(digit))
                started = true
            }
            divisor /= 10
        }
    }

    /// Appends a sample value the way Prometheus parses it (`Inf`/`NaN` spelled as Go's ParseFloat takes them).
    static func appendValue(_ value: Double, to buffer: inout [UInt8]) {
        if value.isNaN {
            buffer.append(contentsOf: "NaN".utf8)
        } else if value.isInfinite {
            buffer.append(contentsOf: (value < 0 ? "-Inf" : "+Inf").utf8)
        } else if value == value.rounded(), abs(value) < 1e15 {
            buffer.append(contentsOf: String(Int64(value)).utf8)
        } else {
            buffer.append(contentsOf: value.description.utf8)
        }
    }
}
