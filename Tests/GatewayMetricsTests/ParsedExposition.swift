/// A Prometheus text-format 0.0.4 exposition parsed for assertions. swift-prometheus writes families
/// and series in dictionary order, so tests look samples up by series instead of comparing text.
/// A series is keyed as `name{a="1",b="2"}` with its labels sorted by name (`name` alone without labels),
/// label values unescaped.
struct ParsedExposition {
    /// Sample values by series.
    var samples: [String: Double] = [:]
    /// `# HELP` text by family.
    var help: [String: String] = [:]
    /// `# TYPE` by family.
    var types: [String: String] = [:]
    /// Every sample's metric name, in order (a series written twice shows up twice).
    var sampleNames: [String] = []
    /// Every series key, in order.
    var seriesKeys: [String] = []
    /// Lines that did not parse.
    var errors: [String] = []

    init(_ bytes: [UInt8]) {
        self.init(String(decoding: bytes, as: UTF8.self))
    }

    init(_ text: String) {
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) where !line.isEmpty {
            if line.hasPrefix("# HELP ") {
                let rest = line.dropFirst(7)
                let name = rest.prefix { $0 != " " }
                self.help[String(name)] = String(rest.dropFirst(name.count + 1))
            } else if line.hasPrefix("# TYPE ") {
                let parts = line.dropFirst(7).split(separator: " ")
                if parts.count == 2 { self.types[String(parts[0])] = String(parts[1]) }
            } else if line.hasPrefix("#") {
                continue
            } else if let (name, labels, value) = Self.sample(Substring(line)) {
                let key = Self.key(name, labels)
                self.samples[key] = value
                self.sampleNames.append(name)
                self.seriesKeys.append(key)
            } else {
                self.errors.append(String(line))
            }
        }
    }

    /// The key of a series: `name{a="1",b="2"}` with labels sorted, values as given (not escaped).
    static func key(_ name: String, _ labels: [(String, String)] = []) -> String {
        guard !labels.isEmpty else { return name }
        let sorted = labels.sorted { $0.0 < $1.0 }.map { "\($0.0)=\"\($0.1)\"" }
        return name + "{" + sorted.joined(separator: ",") + "}"
    }

    /// The value of a series, nil if absent.
    subscript(_ name: String, _ labels: (String, String)...) -> Double? {
        self.samples[Self.key(name, labels)]
    }

    /// The family a sample name belongs to (histogram samples carry `_bucket`, `_sum`, `_count`).
    func family(of sampleName: String) -> String {
        for suffix in ["_bucket", "_sum", "_count"] where sampleName.hasSuffix(suffix) {
            let base = String(sampleName.dropLast(suffix.count))
            if self.types[base] == "histogram" { return base }
        }
        return sampleName
    }

    /// Parses `name{k="v",...} value` or `name value`.
    private static func sample(_ line: Substring) -> (String, [(String, String)], Double)? {
        let scalars = Array(line.unicodeScalars)
        var index = 0
        var name = ""
        while index < scalars.count, scalars[index] != "{", scalars[index] != " " {
            name.unicodeScalars.append(scalars[index])
            index += 1
        }
        guard !name.isEmpty, index < scalars.count else { return nil }
        var labels: [(String, String)] = []
        if scalars[index] == "{" {
            index += 1
            while index < scalars.count, scalars[index] != "}" {
                var label = ""
                while index < scalars.count, scalars[index] != "=" {
                    label.unicodeScalars.append(scalars[index])
                    index += 1
                }
                index += 1
                guard index < scalars.count, scalars[index] == "\"" else { return nil }
                index += 1
                var value = ""
                while index < scalars.count, scalars[index] != "\"" {
                    if scalars[index] == "\\" {
                        index += 1
                        guard index < scalars.count else { return nil }
                        switch scalars[index] {
                        case "n": value.append("\n")
                        case "\\": value.append("\\")
                        case "\"": value.append("\"")
                        default: return nil
                        }
                    } else {
                        value.unicodeScalars.append(scalars[index])
                    }
                    index += 1
                }
                guard index < scalars.count else { return nil }
                index += 1
                labels.append((label, value))
                if index < scalars.count, scalars[index] == "," { index += 1 }
            }
            guard index < scalars.count else { return nil }
            index += 1
        }
        guard index < scalars.count, scalars[index] == " " else { return nil }
        var rest = ""
        rest.unicodeScalars.append(contentsOf: scalars[(index + 1)...])
        let value: Double?
        switch rest {
        case "+Inf": value = .infinity
        case "-Inf": value = -.infinity
        case "NaN": value = .nan
        default: value = Double(rest)
        }
        guard let value else { return nil }
        return (name, labels, value)
    }
}
