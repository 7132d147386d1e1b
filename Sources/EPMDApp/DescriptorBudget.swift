/// The split of the process's descriptor limit (soft RLIMIT_NOFILE, raised to the hard one at start)
/// between the daemon's own descriptors, the epmd port and the HTTP front, so that neither front can
/// take the descriptors the other (or the daemon itself) needs: a flood on one port then hits that
/// port's cap, never EMFILE.
///
/// - `reserve`: what the daemon always keeps. Measured at idle with one HTTP thread: 17 (stdio, the
///   listeners, the loop's epoll, signalfd, eventfds and spare descriptor, libmicrohttpd's listener,
///   epoll and wake-up descriptors). Kept: 64, for up to 16 epmd listeners, syslog, the systemd
///   notify socket, `/proc` reads at scrape time and TLS files, plus 2 per HTTP thread (its epoll
///   and its wake-up descriptor); under systemd with the fd store, also `FDStore.sendingLimit` for the
///   copies of registration sockets waiting to be sent to it.
/// - `http`: `--http-connections`, or derived: 1/32 of what is left, at least 32 and at most 1024
///   (and at most half of what is left).
/// - `epmd`: `--max-connections`, or derived: everything else.
///
/// Values given on the command line are a promise: when they do not fit the limit, the gateway does
/// not start (``DescriptorBudgetError``), because a cap above the limit can never be reached and
/// EMFILE would again be the real limit. Derived values always start (a drop-in epmd must: `erl`
/// starts `epmd -daemon` with no options); below about 160 descriptors they are floors that do not
/// fit (``fits`` is false) and the EMFILE handling is the last guard.
public struct DescriptorBudget: Equatable, Sendable {
    /// The descriptor limit the split is of.
    public let limit: Int
    /// Descriptors kept for the daemon and the HTTP front's own.
    public let reserve: Int
    /// The epmd connection cap.
    public let epmd: Int
    /// The HTTP connection limit (0 without the HTTP front).
    public let http: Int

    /// The reserve without the HTTP front's threads.
    public static let baseReserve = 64
    /// Descriptors each libmicrohttpd worker thread holds (its epoll set and its wake-up).
    public static let descriptorsPerHTTPThread = 2
    /// The derived HTTP limit is this fraction (1/n) of what is left after the reserve.
    public static let httpShare = 32
    /// Bounds of the derived HTTP limit (libmicrohttpd's own default limit is the upper one).
    public static let derivedHTTPRange = 32...1024
    /// The derived epmd cap is never below this.
    public static let minimumEPMD = 32

    /// Whether the parts fit the limit (false only for derived floors under a tiny limit).
    public var fits: Bool { self.reserve + self.epmd + self.http <= self.limit }

    /// The split for a limit and the options.
    /// - Parameters:
    ///   - limit: the soft RLIMIT_NOFILE (`System.descriptorLimit()`).
    ///   - options: `--max-connections`, `--http-connections`, `--http-threads`, `--no-http`.
    ///   - extraReserve: more to keep for the daemon (the fd store's send queue).
    /// - Throws: ``DescriptorBudgetError`` when values given explicitly do not fit.
    public init(limit: Int, options: EPMDOptions, extraReserve: Int = 0) throws(DescriptorBudgetError) {
        let limit = min(max(limit, 0), Int(Int32.max))
        let httpEnabled = options.httpEnabled
        let reserve =
            Self.baseReserve + max(extraReserve, 0)
            + (httpEnabled ? Self.descriptorsPerHTTPThread * max(options.httpThreads, 1) : 0)
        let available = max(limit - reserve, 0)
        let explicitHTTP = httpEnabled ? options.httpConnections : nil
        let http: Int
        let epmd: Int
        switch (options.maxConnections, explicitHTTP) {
        case (let cap?, let connections?):
            guard cap + connections <= available else {
                throw .doesNotFit(
                    "--max-connections \(cap) and --http-connections \(connections)",
                    limit: limit,
                    reserve: reserve,
                    room: available
                )
            }
            (epmd, http) = (cap, connections)
        case (let cap?, nil):
            let room = available - cap
            guard room >= (httpEnabled ? 1 : 0) else {
                let what = httpEnabled ? "--max-connections \(cap) and one HTTP connection" : "--max-connections \(cap)"
                throw .doesNotFit(what, limit: limit, reserve: reserve, room: available)
            }
            (epmd, http) = (cap, httpEnabled ? min(Self.derivedHTTP(available), room) : 0)
        case (nil, let connections?):
            guard available - connections >= 1 else {
                throw .doesNotFit(
                    "--http-connections \(connections) and one epmd connection",
                    limit: limit,
                    reserve: reserve,
                    room: available
                )
            }
            (epmd, http) = (available - connections, connections)
        case (nil, nil):
            http = httpEnabled ? Self.derivedHTTP(available) : 0
            epmd = max(available - http, Self.minimumEPMD)
        }
        self.init(limit: limit, reserve: reserve, epmd: epmd, http: http)
    }

    /// A split as given (tests, and the result of the rules above).
    public init(limit: Int, reserve: Int, epmd: Int, http: Int) {
        self.limit = limit
        self.reserve = reserve
        self.epmd = epmd
        self.http = http
    }

    /// 1/32 of what is left, within 32...1024, and at most half of it (but at least 1).
    static func derivedHTTP(_ available: Int) -> Int {
        let share = min(
            max(available / Self.httpShare, Self.derivedHTTPRange.lowerBound),
            Self.derivedHTTPRange.upperBound
        )
        return max(min(share, available / 2), 1)
    }
}

/// Connection limits given on the command line that do not fit the descriptor limit.
public struct DescriptorBudgetError: Error, Equatable, Sendable, CustomStringConvertible {
    public let message: String

    public var description: String { self.message }

    static func doesNotFit(_ what: String, limit: Int, reserve: Int, room: Int) -> DescriptorBudgetError {
        DescriptorBudgetError(
            message: "\(what) do not fit the descriptor limit \(limit) (RLIMIT_NOFILE) with \(reserve) "
                + "kept for the daemon: \(room) are left for connections on both ports; raise the limit "
                + "(ulimit -n, LimitNOFILE=) or lower the connection limits"
        )
    }
}
