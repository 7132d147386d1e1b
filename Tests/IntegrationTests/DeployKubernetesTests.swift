import Foundation
import GatewayTestSupport
import Testing

/// `deploy/kubernetes/`: every manifest is valid for the Kubernetes schemas (`kubernetes-validate
/// --strict`, offline), the PodMonitor for the schema written from its CRD (`check-podmonitor.py`),
/// every HTTP path a probe or a scrape names exists in `openapi/openapi.yaml`, and the DaemonSet and
/// the sidecar keep the properties `deploy/kubernetes/README.md` promises.
@Suite(.timeLimit(.minutes(1)))
struct DeployKubernetesTests {
    static let folder = RepositoryRoot.appending("deploy/kubernetes")

    /// The oldest Kubernetes whose schema knows native sidecars (an init container's
    /// `restartPolicy: Always`, on by default since 1.29); the newest is kubernetes-validate's default.
    static let oldestKubernetes = "1.29.0"

    static var toolsUsable: Bool {
        ExternalTool.usable("kubernetes-validate") && ExternalTool.usable("python3")
    }

    /// A manifest file and its documents (YAML read by PyYAML, which kubernetes-validate brings).
    struct Manifest {
        var url: URL
        var documents: [[String: Any]]
        var kinds: [String] { self.documents.compactMap { $0["kind"] as? String } }
    }

    static func manifests() async throws -> [Manifest] {
        let files = try FileManager.default.contentsOfDirectory(at: self.folder, includingPropertiesForKeys: nil)
            .filter { $0.pathExtension == "yaml" }.sorted { $0.path < $1.path }
        let documents = try await self.yamlDocuments(files)
        return zip(files, documents).map { Manifest(url: $0, documents: $1) }
    }

    /// Each file's documents, in order (one python3 for them all).
    static func yamlDocuments(_ files: [URL]) async throws -> [[[String: Any]]] {
        let python = try ExternalTool.require("python3")
        let script = """
            import json, sys, yaml
            files = []
            for path in sys.argv[1:]:
                with open(path) as f:
                    files.append([d for d in yaml.safe_load_all(f) if d is not None])
            print(json.dumps(files))
            """
        let paths = files.map(\.path)
        let result = try await Blocking.run { try Command.run(python, ["-c", script] + paths, timeout: 30) }
        try #require(result.status == 0, "\(paths): \(result.stderr)")
        let json = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8))
        let documents = try #require(json as? [[[String: Any]]], "\(paths): not lists of mappings")
        try #require(documents.count == files.count)
        return documents
    }

    static func run(_ tool: String, _ arguments: [String]) async throws -> CommandResult {
        let path = try ExternalTool.require(tool)
        return try await Blocking.run { try Command.run(path, arguments, timeout: 30) }
    }

    // MARK: - Schemas

    @Test(
        "kubernetes-validate --strict passes every manifest (oldest and newest schemas), fails a misspelt field",
        .enabled(if: Self.toolsUsable)
    )
    func kubernetesSchemas() async throws {
        let manifests = try await Self.manifests()
        let kubernetes = manifests.filter { !$0.kinds.contains("PodMonitor") }
        #expect(Set(kubernetes.flatMap(\.kinds)) == ["Namespace", "DaemonSet", "Deployment"])
        let files = kubernetes.map(\.url.path)
        let documents = kubernetes.map(\.documents.count).reduce(0, +)
        for version in [["-k", Self.oldestKubernetes], []] {
            let result = try await Self.run("kubernetes-validate", ["--strict"] + version + files)
            let output = result.stdout + result.stderr
            #expect(result.status == 0, "\(version): \(output)")
            #expect(output.components(separatedBy: " passed for resource ").count - 1 == documents, "\(output)")
            #expect(!output.contains("WARN") && !output.contains("ERROR"), "\(output)")
        }

        // Strict: a field the schema lacks (which the API server would drop without a word) fails.
        let daemonSet = Self.folder.appendingPathComponent("daemonset.yaml")
        let misspelt = try String(contentsOf: daemonSet, encoding: .utf8)
            .replacingOccurrences(of: "readinessProbe:", with: "readinesProbe:")
        let temporary = FileManager.default.temporaryDirectory.appendingPathComponent("ds-\(UUID().uuidString).yaml")
        try misspelt.write(to: temporary, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: temporary) }
        let rejected = try await Self.run("kubernetes-validate", ["--strict", temporary.path])
        #expect(rejected.status != 0, "\(rejected.stdout)\(rejected.stderr)")
        #expect((rejected.stdout + rejected.stderr).contains("readinesProbe"))
    }

    @Test(
        "the PodMonitor passes the schema written from its CRD; a misspelt field or a bad interval fails",
        .enabled(if: Self.toolsUsable)
    )
    func podMonitorSchema() async throws {
        let manifests = try await Self.manifests()
        let podMonitors = manifests.filter { $0.kinds.contains("PodMonitor") }
        #expect(podMonitors.map(\.url.lastPathComponent) == ["podmonitor.yaml"])
        // kubernetes-validate has no schema for it: it warns and passes, which checks nothing.
        let checker = Self.folder.appendingPathComponent("check-podmonitor.py").path
        let schema = Self.folder.appendingPathComponent("podmonitor.schema.json").path
        for manifest in podMonitors {
            let result = try await Self.run("python3", [checker, schema, manifest.url.path])
            #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
            #expect(result.stdout.contains("PodMonitor/epmd-gateway valid"), "\(result.stdout)")
        }

        let original = try String(contentsOf: Self.folder.appendingPathComponent("podmonitor.yaml"), encoding: .utf8)
        for (from, to, complaint) in [
            ("podMetricsEndpoints:", "podMetricEndpoints:", "podMetricEndpoints"),
            ("interval: 15s", "interval: 15 seconds", "15 seconds"),
            ("action: replace", "action: rewrite", "rewrite"),
        ] {
            let broken = original.replacingOccurrences(of: from, with: to)
            #expect(broken != original)
            let temporary = FileManager.default.temporaryDirectory
                .appendingPathComponent("pm-\(UUID().uuidString).yaml")
            try broken.write(to: temporary, atomically: true, encoding: .utf8)
            defer { try? FileManager.default.removeItem(at: temporary) }
            let result = try await Self.run("python3", [checker, schema, temporary.path])
            #expect(result.status == 1, "\(to): \(result.stdout)\(result.stderr)")
            #expect(result.stdout.contains(complaint), "\(result.stdout)")
        }
    }

    // MARK: - Paths

    /// Every value under a key `key` anywhere in `value`.
    static func values(of key: String, in value: Any) -> [Any] {
        if let dictionary = value as? [String: Any] {
            return (dictionary[key].map { [$0] } ?? []) + dictionary.values.flatMap { self.values(of: key, in: $0) }
        }
        if let array = value as? [Any] { return array.flatMap { self.values(of: key, in: $0) } }
        return []
    }

    /// The `paths` of `openapi/openapi.yaml`.
    static func openAPIPaths() async throws -> [String] {
        let documents = try await self.yamlDocuments([RepositoryRoot.appending("openapi/openapi.yaml")])
        let paths = try #require(documents.first?.first?["paths"] as? [String: Any])
        return paths.keys.sorted()
    }

    /// Whether `path` is an instance of the OpenAPI path `template` (a `{parameter}` is one segment).
    static func path(_ path: String, matches template: String) -> Bool {
        let segments = path.split(separator: "/", omittingEmptySubsequences: false)
        let templateSegments = template.split(separator: "/", omittingEmptySubsequences: false)
        guard segments.count == templateSegments.count else { return false }
        return zip(segments, templateSegments).allSatisfy { segment, templateSegment in
            templateSegment.hasPrefix("{") && templateSegment.hasSuffix("}")
                ? !segment.isEmpty : segment == templateSegment
        }
    }

    @Test(
        "every probe path and scrape path of the manifests exists in openapi.yaml",
        .enabled(if: Self.toolsUsable)
    )
    func probePathsExistInOpenAPI() async throws {
        let documents = try await Self.manifests().flatMap(\.documents)
        var paths: [String] = []
        for probe in documents.flatMap({ Self.values(of: "httpGet", in: $0) }) {
            paths.append(try #require((probe as? [String: Any])?["path"] as? String, "httpGet without a path"))
        }
        // Every probe of daemonset.yaml (3) and sidecar.yaml (3 for the gateway, 1 for the node).
        #expect(paths.count == 7, "\(paths)")
        paths += Self.values(of: "prometheus.io/path", in: documents).compactMap { $0 as? String }
        paths += Self.values(of: "podMetricsEndpoints", in: documents).flatMap { ($0 as? [[String: Any]]) ?? [] }
            .compactMap { $0["path"] as? String }
        #expect(Set(paths).isSuperset(of: ["/livez", "/readyz", "/metrics", "/v1/nodes/app/health"]), "\(paths)")

        let openAPI = try await Self.openAPIPaths()
        #expect(openAPI.contains("/v1/nodes/{name}/health"))
        #expect(Self.path("/v1/nodes/app/health", matches: "/v1/nodes/{name}/health"))
        #expect(!Self.path("/v1/nodes/app/healthz", matches: "/v1/nodes/{name}/health"))
        #expect(!Self.path("/v1/nodes//health", matches: "/v1/nodes/{name}/health"))
        for path in Set(paths).sorted() {
            let bare = String(path.prefix { $0 != "?" })
            #expect(
                openAPI.contains { Self.path(bare, matches: $0) },
                "\(path) is not a path of openapi/openapi.yaml"
            )
        }
    }

    // MARK: - Properties

    static func podSpec(_ documents: [[String: Any]], kind: String) throws -> [String: Any] {
        let document = try #require(documents.first { $0["kind"] as? String == kind }, "no \(kind)")
        let spec = document["spec"] as? [String: Any]
        let template = spec?["template"] as? [String: Any]
        return try #require(template?["spec"] as? [String: Any], "\(kind) without spec.template.spec")
    }

    static func containers(_ pod: [String: Any], _ key: String) -> [[String: Any]] {
        (pod[key] as? [[String: Any]]) ?? []
    }

    /// The gateway container's security context and probes, in the DaemonSet and in the sidecar.
    static func expectHardenedGateway(_ container: [String: Any], pod: [String: Any], _ where_: String) {
        let context = container["securityContext"] as? [String: Any] ?? [:]
        let podContext = pod["securityContext"] as? [String: Any] ?? [:]
        func setting(_ key: String) -> Any? { context[key] ?? podContext[key] }
        #expect(setting("runAsNonRoot") as? Bool == true, "\(where_): runAsNonRoot")
        #expect(setting("runAsUser") as? Int == 65532, "\(where_): runAsUser")
        #expect(context["readOnlyRootFilesystem"] as? Bool == true, "\(where_): readOnlyRootFilesystem")
        #expect(context["allowPrivilegeEscalation"] as? Bool == false, "\(where_): allowPrivilegeEscalation")
        #expect((context["capabilities"] as? [String: Any])?["drop"] as? [String] == ["ALL"], "\(where_): drop ALL")
        #expect(
            (setting("seccompProfile") as? [String: Any])?["type"] as? String == "RuntimeDefault",
            "\(where_): seccompProfile"
        )
        func probePath(_ key: String) -> String? {
            ((container[key] as? [String: Any])?["httpGet"] as? [String: Any])?["path"] as? String
        }
        #expect(probePath("startupProbe") == "/livez", "\(where_): startupProbe")
        #expect(probePath("livenessProbe") == "/livez", "\(where_): livenessProbe")
        #expect(probePath("readinessProbe") == "/readyz", "\(where_): readinessProbe")
        let resources = container["resources"] as? [String: Any] ?? [:]
        #expect(resources["requests"] is [String: Any] && resources["limits"] is [String: Any], "\(where_): resources")
        // The HTTP front on an address the kubelet reaches, from the downward API (the image's CMD,
        // which sets --http-address, is replaced by args).
        let env = container["env"] as? [[String: Any]] ?? []
        let address = env.first { $0["name"] as? String == "EPMD_GATEWAY_HTTP_ADDRESS" }
        let field = ((address?["valueFrom"] as? [String: Any])?["fieldRef"] as? [String: Any])?["fieldPath"]
        #expect(["status.hostIP", "status.podIP"].contains(field as? String), "\(where_): EPMD_GATEWAY_HTTP_ADDRESS")
        let args = container["args"] as? [String]
        #expect(args != nil && args?.contains("--http-address") == false, "\(where_): args \(String(describing: args))")
    }

    @Test(
        "the DaemonSet: host network, probes, resources, non-root read-only context, scrape annotations",
        .enabled(if: Self.toolsUsable)
    )
    func daemonSetProperties() async throws {
        let documents = try await Self.manifests().flatMap(\.documents)
        let pod = try Self.podSpec(documents, kind: "DaemonSet")
        #expect(pod["hostNetwork"] as? Bool == true)
        #expect(pod["dnsPolicy"] as? String == "ClusterFirstWithHostNet")
        let gateway = try #require(Self.containers(pod, "containers").first { $0["name"] as? String == "epmd-gateway" })
        Self.expectHardenedGateway(gateway, pod: pod, "DaemonSet")
        let ports = (gateway["ports"] as? [[String: Any]] ?? []).compactMap { $0["containerPort"] as? Int }
        #expect(ports == [4369, 4370])

        let daemonSet = try #require(documents.first { $0["kind"] as? String == "DaemonSet" })
        let template = (daemonSet["spec"] as? [String: Any])?["template"] as? [String: Any]
        let annotations = (template?["metadata"] as? [String: Any])?["annotations"] as? [String: String]
        #expect(annotations?["prometheus.io/scrape"] == "true")
        #expect(annotations?["prometheus.io/port"] == "4370")
        // The PodMonitor selects these pods and names the port they declare.
        let podLabels = (template?["metadata"] as? [String: Any])?["labels"] as? [String: String] ?? [:]
        let monitor = try #require(documents.first { $0["kind"] as? String == "PodMonitor" })
        let monitorSpec = monitor["spec"] as? [String: Any]
        let selector = (monitorSpec?["selector"] as? [String: Any])?["matchLabels"] as? [String: String] ?? [:]
        #expect(!selector.isEmpty && selector.allSatisfy { podLabels[$0.key] == $0.value }, "\(selector) \(podLabels)")
        let endpoints = monitorSpec?["podMetricsEndpoints"] as? [[String: Any]] ?? []
        let portNames = (gateway["ports"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }
        #expect(endpoints.allSatisfy { portNames.contains($0["port"] as? String ?? "") }, "\(endpoints)")
    }

    @Test(
        "the sidecar: a native sidecar gateway, the Erlang container ready on /v1/nodes/NAME/health of its own name",
        .enabled(if: Self.toolsUsable)
    )
    func sidecarProperties() async throws {
        let documents = try await Self.manifests().flatMap(\.documents)
        let pod = try Self.podSpec(documents, kind: "Deployment")
        let gateway = try #require(
            Self.containers(pod, "initContainers").first { $0["name"] as? String == "epmd-gateway" }
        )
        #expect(gateway["restartPolicy"] as? String == "Always")
        Self.expectHardenedGateway(gateway, pod: pod, "sidecar")

        let erlang = try #require(Self.containers(pod, "containers").first { $0["name"] as? String == "erlang" })
        let probe = (erlang["readinessProbe"] as? [String: Any])?["httpGet"] as? [String: Any]
        let path = try #require(probe?["path"] as? String)
        let match = try #require(path.wholeMatch(of: #//v1/nodes/([^/]+)/health/#))
        let name = String(match.output.1)
        #expect(probe?["port"] as? Int == 4370)
        // The name in the probe is the name the node registers: `-name NAME@HOST` or `-sname NAME`.
        let args = (erlang["command"] as? [String] ?? []) + (erlang["args"] as? [String] ?? [])
        let nodeName = zip(args, args.dropFirst()).first { ["-name", "-sname"].contains($0.0) }?.1
        #expect(nodeName.map { String($0.prefix { $0 != "@" }) } == name, "\(args)")
        // The node uses the sidecar, never an epmd of its own.
        #expect(zip(args, args.dropFirst()).contains { $0 == ("-start_epmd", "false") }, "\(args)")
    }

    @Test("every image of the manifests is tagged with the gateway's version")
    func imageVersion() throws {
        let application = try String(
            contentsOf: RepositoryRoot.appending("Sources/EPMDApp/EPMDApplication.swift"),
            encoding: .utf8
        )
        let version = try #require(application.firstMatch(of: #/static let version = "([^"]+)"/#)?.output.1)
        let files = try FileManager.default.contentsOfDirectory(at: Self.folder, includingPropertiesForKeys: nil)
            .filter { $0.pathExtension == "yaml" }
        var images: [String] = []
        for file in files {
            let text = try String(contentsOf: file, encoding: .utf8)
            images += text.matches(of: #/image: (epmd-gateway:\S+)/#).map { String($0.output.1) }
        }
        #expect(images.count == 2, "\(images)")
        for image in images {
            #expect(image == "epmd-gateway:\(version)")
        }
    }
}
