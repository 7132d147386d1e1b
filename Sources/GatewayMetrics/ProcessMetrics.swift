import EPMDPosix
import Logging
import Prometheus

/// The standard `process_*` families, read from `/proc/self` at scrape time (the names every official
/// client exports, so standard dashboards and alerts work unchanged).
///
/// Families: `process_start_time_seconds`, `process_resident_memory_bytes`,
/// `process_virtual_memory_bytes`, `process_open_fds`, `process_max_fds`, and
/// `process_cpu_seconds_total`, rendered by hand.
public final class ProcessMetrics: Sendable {
    private let startTime: Gauge
    private let residentMemory: Gauge
    private let virtualMemory: Gauge
    private let openFDs: Gauge
    private let maxFDs: Gauge
    private let logger: Logger

    /// Makes the gauges in `collectors` and sets the start time to now.
    init(collectors: PrometheusCollectorRegistry, logger: Logger) {
        self.logger = logger
        func gauge(_ name: String, _ help: String) -> Gauge {
            collectors.makeGauge(descriptor: GatewayMetrics.descriptor(name, help), labels: [])
        }
        self.startTime = gauge("process_start_time_seconds", "Start time of the process since unix epoch in seconds.")
        self.residentMemory = gauge("process_resident_memory_bytes", "Resident memory size in bytes.")
        self.virtualMemory = gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.")
        self.openFDs = gauge("process_open_fds", "Number of open file descriptors.")
        self.maxFDs = gauge("process_max_fds", "Maximum number of open file descriptors.")
        self.startTime.set(to: WallClock.seconds())
    }

    /// Reads `/proc/self` and sets the gauges; what cannot be read keeps its last value.
    /// - Returns: the CPU seconds, for ``appendCPUSeconds(_:to:)``; nil when unreadable.
    func scrape() -> Double? {
        let process = ProcessStatistics.current()
        if let value = process.residentMemoryBytes { self.residentMemory.set(to: value) }
        if let value = process.virtualMemoryBytes { self.virtualMemory.set(to: value) }
        if let value = process.openFDs { self.openFDs.set(to: Double(value)) }
        if let value = process.maxFDs { self.maxFDs.set(to: value) }
        if process.cpuSeconds == nil || process.openFDs == nil {
            self.logger.debug("metrics: /proc/self could not be read in full")
        }
        return process.cpuSeconds
    }

    /// Appends `process_cpu_seconds_total`.
    ///
    /// A counter, but its value is the kernel's (utime + stime) and swift-prometheus counters can
    /// only be incremented: adding deltas at each scrape would need a lock against concurrent
    /// scrapes and accumulate rounding. Written by hand, it is exactly what /proc says.
    static func appendCPUSeconds(_ cpu: Double, to buffer: inout [UInt8]) {
        TextExposition.appendHeader(
            "process_cpu_seconds_total",
            help: "Total user and system CPU time spent in seconds.",
            type: "counter",
            to: &buffer
        )
        buffer.append(contentsOf: "process_cpu_seconds_total ".utf8)
        TextExposition.appendValue(cpu, to: &buffer)
        buffer.append(UInt8(ascii: "\n"))
    }
}
