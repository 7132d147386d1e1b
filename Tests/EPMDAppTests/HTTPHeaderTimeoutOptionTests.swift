import EPMDApp
import Testing

/// `--http-header-timeout S` / `EPMD_GATEWAY_HTTP_HEADER_TIMEOUT` (issue 9): seconds an HTTP connection
/// has for a whole request head.
@Suite struct HTTPHeaderTimeoutOptionTests {
    static func options(_ arguments: [String], _ environment: [String: String] = [:]) -> EPMDOptions? {
        if case .serve(let options) = EPMDArguments.parse(arguments, environment: environment) { return options }
        return nil
    }

    @Test("default 10 s; the flag, its = form and the environment set it (the flag wins); 0 turns it off")
    func parsed() {
        #expect(Self.options([])?.httpHeaderTimeout == 10)
        #expect(Self.options(["--http-header-timeout", "3"])?.httpHeaderTimeout == 3)
        #expect(Self.options(["--http-header-timeout=0"])?.httpHeaderTimeout == 0)
        #expect(Self.options([], ["EPMD_GATEWAY_HTTP_HEADER_TIMEOUT": "25"])?.httpHeaderTimeout == 25)
        #expect(
            Self.options(["--http-header-timeout", "4"], ["EPMD_GATEWAY_HTTP_HEADER_TIMEOUT": "25"])?
                .httpHeaderTimeout == 4
        )
        for bad in [["--http-header-timeout", "-1"], ["--http-header-timeout", "ten"], ["--http-header-timeout"]] {
            #expect(EPMDArguments.parse(bad, environment: [:]) == .usage)
        }
        #expect(EPMDArguments.parse([], environment: ["EPMD_GATEWAY_HTTP_HEADER_TIMEOUT": "3601"]) == .usage)
        #expect(EPMDArguments.usageText.contains("--http-header-timeout S"))
    }
}
