import EPMDApp
import Testing

/// The split of RLIMIT_NOFILE: derived defaults always start; explicit values that do not fit do not.
@Suite struct DescriptorBudgetTests {
    static func options(
        max: Int? = nil,
        http: Int? = nil,
        threads: Int = 1,
        httpEnabled: Bool = true
    ) -> EPMDOptions {
        var options = EPMDOptions()
        options.maxConnections = max
        options.httpConnections = http
        options.httpThreads = threads
        options.httpEnabled = httpEnabled
        return options
    }

    @Test(
        "derived: reserve 64 + 2 per HTTP thread, HTTP 1/32 of the rest within 32...1024, epmd the rest",
        arguments: [
            (20_000, 66, 19_312, 622),
            (512, 66, 414, 32),
            (256, 66, 158, 32),
            (1024, 66, 926, 32),
            (4096, 66, 3905, 125),
            (65_536, 66, 64_446, 1024),
            (1_048_576, 66, 1_047_486, 1024),
        ]
    )
    func derived(limit: Int, reserve: Int, epmd: Int, http: Int) throws {
        let budget = try DescriptorBudget(limit: limit, options: Self.options())
        #expect(budget == DescriptorBudget(limit: limit, reserve: reserve, epmd: epmd, http: http))
        #expect(budget.fits && budget.reserve + budget.epmd + budget.http == limit)
    }

    @Test("at the 20,000 limit of CI the derived cap holds the 19,000-registration test and scripts/bench")
    func nineteenThousand() throws {
        let budget = try DescriptorBudget(limit: 20_000, options: Self.options())
        // 19,001 registrations, the NAMES and lookup connections, and bench's 4 lookup threads.
        #expect(budget.epmd >= 19_001 + 50)
        #expect(budget.http <= 1024)
    }

    @Test("more HTTP threads reserve more; without HTTP nothing goes to it and the reserve is smaller")
    func threadsAndNoHTTP() throws {
        let four = try DescriptorBudget(limit: 20_000, options: Self.options(threads: 4))
        #expect(four.reserve == 72 && four.http == 622 && four.epmd == 19_306)
        let none = try DescriptorBudget(limit: 20_000, options: Self.options(http: 500, httpEnabled: false))
        #expect(none == DescriptorBudget(limit: 20_000, reserve: 64, epmd: 19_936, http: 0))
        let unlimited = try DescriptorBudget(limit: Int.max, options: Self.options())
        #expect(unlimited.limit == Int(Int32.max) && unlimited.http == 1024 && unlimited.fits)
    }

    @Test("explicit values are taken as given when they fit; the derived part takes what is left")
    func explicitFits() throws {
        let both = try DescriptorBudget(limit: 20_000, options: Self.options(max: 10_000, http: 100))
        #expect(both == DescriptorBudget(limit: 20_000, reserve: 66, epmd: 10_000, http: 100))
        #expect(both.fits)
        let cap = try DescriptorBudget(limit: 20_000, options: Self.options(max: 19_900))
        #expect(cap == DescriptorBudget(limit: 20_000, reserve: 66, epmd: 19_900, http: 34))
        let small = try DescriptorBudget(limit: 20_000, options: Self.options(max: 100))
        #expect(small.epmd == 100 && small.http == 622)
        let http = try DescriptorBudget(limit: 512, options: Self.options(http: 400))
        #expect(http == DescriptorBudget(limit: 512, reserve: 66, epmd: 46, http: 400))
        let exact = try DescriptorBudget(limit: 512, options: Self.options(max: 448, httpEnabled: false))
        #expect(exact == DescriptorBudget(limit: 512, reserve: 64, epmd: 448, http: 0))
        #expect(exact.fits)
    }

    @Test("explicit values that do not fit are an error that names the numbers")
    func explicitDoesNotFit() {
        #expect(throws: DescriptorBudgetError.self) {
            try DescriptorBudget(limit: 20_000, options: Self.options(max: 30_000))
        }
        #expect(throws: DescriptorBudgetError.self) {
            try DescriptorBudget(limit: 20_000, options: Self.options(max: 19_934))
        }
        #expect(throws: DescriptorBudgetError.self) {
            try DescriptorBudget(limit: 512, options: Self.options(http: 446))
        }
        #expect(throws: DescriptorBudgetError.self) {
            try DescriptorBudget(limit: 512, options: Self.options(max: 449, httpEnabled: false))
        }
        #expect(throws: DescriptorBudgetError.self) {
            try DescriptorBudget(limit: 512, options: Self.options(max: 400, http: 100))
        }
        do {
            _ = try DescriptorBudget(limit: 20_000, options: Self.options(max: 30_000))
        } catch {
            #expect(error.description.contains("--max-connections 30000"))
            #expect(error.description.contains("descriptor limit 20000"))
            #expect(error.description.contains("19934 are left"))
        }
    }

    @Test("a tiny limit: derived values fall to their floors, which do not fit (a warning, not an error)")
    func tinyLimit() throws {
        let budget = try DescriptorBudget(limit: 100, options: Self.options())
        #expect(budget.epmd == DescriptorBudget.minimumEPMD)
        #expect(budget.http == 17)
        #expect(!budget.fits)
        let zero = try DescriptorBudget(limit: 0, options: Self.options())
        #expect(zero.epmd == 32 && zero.http == 1 && !zero.fits)
    }
}
