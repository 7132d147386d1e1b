import Prometheus

/// systemd's fd store, as the gateway keeps its registrations there (`FDSTORE=1`):
///
/// - `epmd_fdstore_enabled`: 1 while the store takes descriptors (the probe found it working and it is
///   not full), 0 when it is disabled (`FileDescriptorStoreMax=0`), full, or not in use;
/// - `epmd_fdstore_stored`: registrations (and the state journal) believed stored now;
/// - `epmd_fdstore_sending`: copies of registration sockets held until systemd has them (bounded:
///   `FDStore.sendingLimit`), and `epmd_fdstore_waiting`: registrations waiting for room among them
///   (they hold no descriptor of their own);
/// - `epmd_fdstore_failures_total{reason}`: registrations that could not be kept there
///   (`disabled`, `full`, `send`: the message could not be sent, `journal`: the state journal could
///   not be written);
/// - `epmd_fdstore_restored_total{result}`: at start, what came back from the store (`restored`,
///   `no_descriptor`: a journal record whose socket was not in the store, `no_record`: a stored socket
///   without a record, `damaged`: the journal's cut tail, in records).
///
/// Every series is made at init, so each reads 0 until counted.
public final class FDStoreMetrics: Sendable {
    /// The `reason` label values of `epmd_fdstore_failures_total`.
    public static let failureReasons = ["disabled", "full", "send", "journal"]
    /// The `result` label values of `epmd_fdstore_restored_total`.
    public static let restoreResults = ["restored", "no_descriptor", "no_record", "damaged"]

    private let enabled: Gauge
    private let stored: Gauge
    private let sending: Gauge
    private let waiting: Gauge
    private let failures: [String: Counter]
    private let restores: [String: Counter]

    /// Makes the series in `collectors` (the gateway's, `GatewayMetrics.collectors`).
    public init(collectors: PrometheusCollectorRegistry) {
        self.enabled = collectors.makeGauge(
            descriptor: GatewayMetrics.descriptor(
                "epmd_fdstore_enabled",
                "1 while systemd's fd store keeps the registrations, 0 when disabled, full or not used."
            )
        )
        self.stored = collectors.makeGauge(
            descriptor: GatewayMetrics.descriptor(
                "epmd_fdstore_stored",
                "Descriptors kept in systemd's fd store now (registrations and the state journal)."
            )
        )
        self.sending = collectors.makeGauge(
            descriptor: GatewayMetrics.descriptor(
                "epmd_fdstore_sending",
                "Copies of registration sockets held until systemd's fd store has them (bounded)."
            )
        )
        self.waiting = collectors.makeGauge(
            descriptor: GatewayMetrics.descriptor(
                "epmd_fdstore_waiting",
                "Registrations waiting for room in the fd store's send queue (no descriptor held)."
            )
        )
        var failures: [String: Counter] = [:]
        for reason in Self.failureReasons {
            failures[reason] = collectors.makeCounter(
                descriptor: GatewayMetrics.descriptor(
                    "epmd_fdstore_failures_total",
                    "Registrations that could not be kept in systemd's fd store, by reason."
                ),
                labels: [("reason", reason)]
            )
        }
        self.failures = failures
        var restores: [String: Counter] = [:]
        for result in Self.restoreResults {
            restores[result] = collectors.makeCounter(
                descriptor: GatewayMetrics.descriptor(
                    "epmd_fdstore_restored_total",
                    "Registrations found in systemd's fd store at start, by result."
                ),
                labels: [("result", result)]
            )
        }
        self.restores = restores
    }

    /// Sets `epmd_fdstore_enabled`.
    public func setEnabled(_ enabled: Bool) { self.enabled.set(to: enabled ? 1 : 0) }

    /// Sets `epmd_fdstore_stored`.
    public func setStored(_ count: Int) { self.stored.set(to: Double(count)) }

    /// Sets `epmd_fdstore_sending` and `epmd_fdstore_waiting`.
    public func setQueue(sending: Int, waiting: Int) {
        self.sending.set(to: Double(sending))
        self.waiting.set(to: Double(waiting))
    }

    /// Counts failures; a reason outside ``failureReasons`` is ignored.
    public func failed(_ reason: String, count: Int = 1) {
        guard count > 0 else { return }
        self.failures[reason]?.increment(by: Int64(count))
    }

    /// Counts restore results; a result outside ``restoreResults`` is ignored.
    public func restored(_ result: String, count: Int) {
        guard count > 0 else { return }
        self.restores[result]?.increment(by: Int64(count))
    }
}
