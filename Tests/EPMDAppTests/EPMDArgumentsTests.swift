import EPMDApp
import EPMDPosix
import EPMDServer
import Testing

@Suite struct EPMDArgumentsTests {
    func parse(_ arguments: [String], _ environment: [String: String] = [:]) -> EPMDInvocation {
        EPMDArguments.parse(arguments, environment: environment)
    }

    @Test("the OTP suite's command lines")
    func suiteLines() {
        var expected = EPMDOptions()
        expected.packetTimeout = 1
        expected.port = 2243
        #expect(self.parse(["-packet_timeout", "1", "-port", "2243"]) == .serve(expected))
        expected.relaxedCommandCheck = true
        expected.delayWrite = 1
        #expect(
            self.parse(["-packet_timeout", "1", "-port", "2243", "-delay_write", "1", "-relaxed_command_check"])
                == .serve(expected)
        )
        #expect(
            self.parse(["-packet_timeout", "1", "-port", "2243", "-names"])
                == .client(
                    .names,
                    {
                        var options = EPMDOptions()
                        options.packetTimeout = 1
                        options.port = 2243
                        return options
                    }()
                )
        )
    }

    @Test("zero, missing or non-numeric values and unknown options are usage errors")
    func usage() {
        for arguments in [
            ["-port"], ["-port", "0"], ["-port", "x"], ["-packet_timeout", "0"], ["-delay_write"], ["-h"], ["--bogus"],
            ["-address"],
        ] {
            #expect(self.parse(arguments) == .usage)
        }
    }

    @Test("client modes must come last; -stop takes exactly one name after it")
    func clientModesLast() throws {
        #expect(self.parse(["-names", "-d"]) == .usage)
        #expect(self.parse(["-kill", "-port", "1"]) == .usage)
        #expect(self.parse(["-stop"]) == .usage)
        #expect(self.parse(["-stop", "a", "b"]) == .usage)
        let options = try #require(
            self.parse(["-d", "-port", "77", "-stop", "a"]).clientOptions(.stop("a")),
            "-stop not parsed"
        )
        #expect(options.port == 77 && options.debugLevel == 1)
        try #require(
            self.parse(["-started"]).clientOptions(.started) != nil
                && self.parse(["-dump"]).clientOptions(.dump) != nil,
            "-started/-dump not parsed"
        )
    }

    @Test("environment: ERL_EPMD_PORT with atoi, ERL_EPMD_ADDRESS, relaxed check set even when empty; flags override")
    func environment() throws {
        let env = ["ERL_EPMD_PORT": "5000x", "ERL_EPMD_ADDRESS": "127.0.0.2", "ERL_EPMD_RELAXED_COMMAND_CHECK": ""]
        let options = try #require(self.parse(["-d", "-d", "-daemon", "-systemd"], env).serveOptions, "not serve")
        #expect(options.port == 5000)
        #expect(options.addresses == "127.0.0.2")
        #expect(options.relaxedCommandCheck)
        #expect(options.debugLevel == 2 && options.daemon && options.systemd)
        let overridden = try #require(self.parse(["-port", "6000", "-address", "::1"], env).serveOptions, "not serve")
        #expect(overridden.port == 6000 && overridden.addresses == "::1")
        let garbage = try #require(self.parse([], ["ERL_EPMD_PORT": "garbage"]).serveOptions, "not serve")
        #expect(garbage.port == 0)
    }

    @Test(
        "--takeover (and -takeover), --handover-socket PATH or =PATH, EPMD_GATEWAY_HANDOVER_SOCKET; empty is a usage error"
    )
    func handoverOptions() throws {
        let plain = try #require(self.parse([]).serveOptions, "not serve")
        #expect(!plain.takeover && plain.handoverSocket == nil)
        let long = try #require(self.parse(["--takeover", "--handover-socket", "/a/b.sock"]).serveOptions, "not serve")
        #expect(long.takeover && long.handoverSocket == "/a/b.sock")
        let single = try #require(self.parse(["-takeover", "--handover-socket=none"]).serveOptions, "not serve")
        #expect(single.takeover && single.handoverSocket == "none")
        let env = try #require(self.parse([], ["EPMD_GATEWAY_HANDOVER_SOCKET": "/e.sock"]).serveOptions, "not serve")
        #expect(env.handoverSocket == "/e.sock")
        #expect(self.parse(["--handover-socket", ""]) == .usage)
        #expect(self.parse(["--handover-socket"]) == .usage)
    }

    @Test(
        "atoi",
        arguments: [("42", 42), ("  -7", -7), ("+3x", 3), ("", 0), ("abc", 0), ("99999999999", Int(Int32.max))]
    )
    func atoi(text: String, value: Int) {
        #expect(EPMDArguments.atoi(text) == value)
    }

    @Test("our own long options")
    func longOptions() throws {
        #expect(self.parse(["--version"]) == .version)
        #expect(self.parse(["--help"]) == .help)
        let options = try #require(
            self.parse([
                "--http-address", "::1", "--http-port=8080", "--http-threads", "4", "--shutdown-grace", "3",
                "--http-connections-per-address", "16",
            ]).serveOptions,
            "long options not parsed"
        )
        #expect(options.httpAddress == "::1" && options.httpPort == 8080 && options.httpThreads == 4)
        #expect(options.shutdownGrace == 3 && options.httpEnabled && options.httpConnectionsPerAddress == 16)
        let defaults = try #require(self.parse([]).serveOptions, "not serve")
        #expect(defaults.httpAddress == "127.0.0.1" && defaults.httpPort == 4370 && defaults.httpThreads == 1)
        #expect(defaults.httpConnectionsPerAddress == 128)
        let off = try #require(self.parse(["--no-http"]).serveOptions, "not serve")
        #expect(!off.httpEnabled)
        let before = try #require(
            self.parse(["--http-port", "9", "-names"]).clientOptions(.names),
            "long option before a client mode"
        )
        #expect(before.httpPort == 9)
        for bad in [
            ["--http-port", "x"], ["--http-port"], ["--http-threads", "0"], ["--bogus", "1"], ["--http-address="],
            ["--http-connections-per-address", "-1"], ["--http-connections-per-address", "many"],
        ] {
            #expect(self.parse(bad) == .usage)
        }
    }

    @Test("our own environment variables, overridden by flags")
    func longEnvironment() throws {
        let env = [
            "EPMD_GATEWAY_HTTP_ADDRESS": "0.0.0.0", "EPMD_GATEWAY_HTTP_PORT": "9000",
            "EPMD_GATEWAY_HTTP_THREADS": "2", "EPMD_GATEWAY_SHUTDOWN_GRACE": "5",
            "EPMD_GATEWAY_HTTP_CONNECTIONS_PER_ADDRESS": "0",
        ]
        let options = try #require(self.parse(["--http-port", "9001"], env).serveOptions, "not serve")
        #expect(options.httpAddress == "0.0.0.0" && options.httpPort == 9001 && options.httpThreads == 2)
        #expect(options.shutdownGrace == 5 && options.httpConnectionsPerAddress == 0)
        let off = try #require(self.parse([], ["EPMD_GATEWAY_NO_HTTP": ""]).serveOptions, "not serve")
        #expect(!off.httpEnabled)
        #expect(self.parse([], ["EPMD_GATEWAY_HTTP_PORT": "nope"]) == .usage)
    }

    @Test("connection limits: --max-connections, --connections-per-address, --http-connections, and their variables")
    func connectionLimits() throws {
        let defaults = try #require(self.parse([]).serveOptions, "not serve")
        #expect(defaults.maxConnections == nil && defaults.httpConnections == nil)
        #expect(defaults.connectionsPerAddress == 128)
        let options = try #require(
            self.parse([
                "--max-connections", "5000", "--connections-per-address=0", "--http-connections", "64",
            ]).serveOptions,
            "not serve"
        )
        #expect(options.maxConnections == 5000 && options.connectionsPerAddress == 0 && options.httpConnections == 64)
        let env = [
            "EPMD_GATEWAY_MAX_CONNECTIONS": "300", "EPMD_GATEWAY_CONNECTIONS_PER_ADDRESS": "16",
            "EPMD_GATEWAY_HTTP_CONNECTIONS": "40",
        ]
        let fromEnvironment = try #require(self.parse(["--max-connections", "301"], env).serveOptions, "not serve")
        #expect(fromEnvironment.maxConnections == 301 && fromEnvironment.connectionsPerAddress == 16)
        #expect(fromEnvironment.httpConnections == 40)
        for bad in [
            ["--max-connections", "0"], ["--max-connections", "-5"], ["--max-connections", "lots"],
            ["--max-connections", "3000000000"], ["--connections-per-address", "-1"], ["--http-connections", "0"],
            ["--http-connections", "65537"], ["--max-connections"],
        ] {
            #expect(self.parse(bad) == .usage, "\(bad)")
        }
        #expect(self.parse([], ["EPMD_GATEWAY_MAX_CONNECTIONS": "0"]) == .usage)
    }
    @Test("event and metrics options, and their environment variables")
    func eventOptions() throws {
        let options = try #require(
            self.parse([
                "--max-watchers", "10", "--event-buffer=64", "--flap-window", "30", "--metrics-node-info",
                "--names-local-only",
            ]).serveOptions,
            "event options not parsed"
        )
        #expect(options.maxWatchers == 10 && options.eventBuffer == 64 && options.flapWindow == 30)
        #expect(options.metricsNodeInfo && options.namesLocalOnly)
        let defaults = try #require(self.parse([]).serveOptions, "not serve")
        #expect(defaults.maxWatchers == 256 && defaults.eventBuffer == 1024 && defaults.flapWindow == 10)
        #expect(!defaults.metricsNodeInfo && !defaults.namesLocalOnly)
        let env = [
            "EPMD_GATEWAY_MAX_WATCHERS": "3", "EPMD_GATEWAY_EVENT_BUFFER": "5", "EPMD_GATEWAY_FLAP_WINDOW": "0",
            "EPMD_GATEWAY_METRICS_NODE_INFO": "", "EPMD_GATEWAY_NAMES_LOCAL_ONLY": "1",
        ]
        let fromEnvironment = try #require(self.parse([], env).serveOptions, "not serve")
        #expect(fromEnvironment.maxWatchers == 3 && fromEnvironment.eventBuffer == 5)
        #expect(fromEnvironment.flapWindow == 0 && fromEnvironment.metricsNodeInfo)
        #expect(fromEnvironment.namesLocalOnly)
        #expect(self.parse(["--event-buffer", "0"]) == .usage)
        #expect(self.parse(["--flap-window", "-1"]) == .usage)
        #expect(self.parse(["--max-watchers", "many"]) == .usage)
    }
}

extension EPMDInvocation {
    /// The options of `.serve`, nil for anything else (for `try #require`).
    fileprivate var serveOptions: EPMDOptions? {
        if case .serve(let options) = self { options } else { nil }
    }

    /// The options of `.client(mode, …)`, nil for anything else (for `try #require`).
    fileprivate func clientOptions(_ mode: EPMDClientMode) -> EPMDOptions? {
        if case .client(mode, let options) = self { options } else { nil }
    }
}

@Suite struct ListenPlanTests {
    @Test("no list: every IPv4 and IPv6 address; IPv6 optional")
    func any() throws {
        let plan = try ListenPlan.make(addresses: nil, port: 4369)
        #expect(plan.map(\.address) == [.anyIPv4(port: 4369), .anyIPv6(port: 4369)])
        #expect(plan.map(\.required) == [true, false])
        #expect(try ListenPlan.make(addresses: " , ", port: 1).count == 2)
    }

    @Test("a list: loopback first (optional), listed addresses required, loopback duplicates skipped")
    func list() throws {
        let plan = try ListenPlan.make(addresses: "127.0.0.2, ::1,127.0.0.1", port: 7)
        #expect(plan.map(\.address.host) == ["127.0.0.1", "::1", "127.0.0.2"])
        #expect(plan.map(\.required) == [false, false, true])
    }

    @Test("hostnames and too many addresses are refused")
    func refused() {
        #expect(throws: ListenPlan.PlanError.cannotParse("localhost")) {
            try ListenPlan.make(addresses: "localhost", port: 1)
        }
        let many = (2...20).map { "127.0.0.\($0)" }.joined(separator: ",")
        #expect(throws: ListenPlan.PlanError.tooMany) { try ListenPlan.make(addresses: many, port: 1) }
    }

}
