import EPMDProtocol
import EPMDRegistry
import Prometheus

/// The registry's metrics: its change events (``record(_:)``, a change observer called on the thread
/// that made the change), and the nodes by type and the generation, read at scrape time.
///
/// Families: `epmd_nodes{type}`, `epmd_registrations_total`, `epmd_unregistrations_total{reason}`,
/// `epmd_node_lifetime_seconds`, `epmd_node_flaps_total`, `epmd_registry_generation`,
/// `epmd_restarts_total{method}`, and the opt-in
/// `epmd_node_info{name,port,type}`, rendered by hand (``NodeInfoCache``: the label sets come and go
/// with registrations, and swift-prometheus handles would have to be unregistered one by one as nodes
/// leave).
public final class RegistryMetrics: Sendable {
    private let nodesNormal: Gauge
    private let nodesHidden: Gauge
    private let nodesOther: Gauge
    private let registrations: Counter
    private let unregistrations: [UnregisterReason: Counter]
    private let nodeLifetime: DurationHistogram
    private let flaps: Counter
    private let generation: Gauge
    private let restarts: [RestartMethod: Counter]

    /// Registration lifetime buckets, 1 s to a day: the short ones are flapping nodes.
    public static let lifetimeBuckets: [Duration] = [1, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400].map {
        .seconds($0)
    }

    /// Makes every handle of the registry's families in `collectors`.
    init(collectors: PrometheusCollectorRegistry) {
        func counter(_ name: String, _ help: String, _ labels: [(String, String)] = []) -> Counter {
            collectors.makeCounter(descriptor: GatewayMetrics.descriptor(name, help), labels: labels)
        }
        func gauge(_ name: String, _ help: String, _ labels: [(String, String)] = []) -> Gauge {
            collectors.makeGauge(descriptor: GatewayMetrics.descriptor(name, help), labels: labels)
        }
        let nodesHelp = "Nodes registered now, by node type (normal 77, hidden 72, other codes)."
        self.nodesNormal = gauge("epmd_nodes", nodesHelp, [("type", NodeType.normal.label)])
        self.nodesHidden = gauge("epmd_nodes", nodesHelp, [("type", NodeType.hidden.label)])
        self.nodesOther = gauge("epmd_nodes", nodesHelp, [("type", NodeType.other(0).label)])
        self.registrations = counter(
            "epmd_registrations_total",
            "Registrations accepted (ALIVE2 answered with success)."
        )
        var unregistrations: [UnregisterReason: Counter] = [:]
        for reason in UnregisterReason.allCases {
            unregistrations[reason] = counter(
                "epmd_unregistrations_total",
                "Registrations that ended, by reason.",
                [("reason", reason.label)]
            )
        }
        self.unregistrations = unregistrations
        self.nodeLifetime = collectors.makeDurationHistogram(
            descriptor: GatewayMetrics.descriptor(
                "epmd_node_lifetime_seconds",
                "How long registrations lived, observed when they end (short lifetimes are flapping nodes)."
            ),
            buckets: Self.lifetimeBuckets
        )
        self.flaps = counter(
            "epmd_node_flaps_total",
            "Registrations that ended within the flap window of their start."
        )
        self.generation = gauge(
            "epmd_registry_generation",
            "The registry's change counter: one more for every registration and unregistration."
        )
        var restarts: [RestartMethod: Counter] = [:]
        for method in RestartMethod.allCases {
            restarts[method] = counter(
                "epmd_restarts_total",
                "Restarts that kept the name table (a hand-over, or systemd's fd store), by method.",
                [("method", method.label)]
            )
        }
        self.restarts = restarts
    }

    /// Counts one registry change. Pass it to `NodeRegistry.addChangeObserver`.
    public func record(_ event: RegistryEvent) {
        switch event.kind {
        case .registered:
            self.registrations.increment()
        case .unregistered(let reason):
            self.unregistrations[reason]?.increment()
            if let lifetime = event.lifetime { self.nodeLifetime.record(GatewayMetrics.duration(seconds: lifetime)) }
            if event.isFlap { self.flaps.increment() }
        case .restarted(let method):
            // The restored nodes are not registrations: only the restart is counted.
            self.restarts[method]?.increment()
        }
    }

    /// Sets the nodes by type and the generation before a scrape: two short registry locks, no per-node work.
    func scrape(_ registry: NodeRegistry) {
        let counts = registry.typeCounts
        self.nodesNormal.set(to: Double(counts.normal))
        self.nodesHidden.set(to: Double(counts.hidden))
        self.nodesOther.set(to: Double(counts.other))
        self.generation.set(to: Double(registry.generation))
    }
}
