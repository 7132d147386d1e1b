import GatewayHTTP
import InMemoryLogging
import Logging

extension MicroHTTPDServer {
    /// A configured and started daemon that logs into `logs` (in memory; nothing is printed).
    static func started(
        configuration: Configuration,
        logs: InMemoryLogHandler = InMemoryLogHandler(),
        longPoll: @escaping @Sendable (HTTPRequest) -> (index: UInt64, seconds: Int)? = { _ in nil },
        events: (any EventStreamSource)? = nil,
        handler: @escaping @Sendable (HTTPRequest) -> HTTPResponse
    ) throws -> MicroHTTPDServer {
        var logger = Logger(label: "test.http") { _ in logs }
        logger.logLevel = .trace
        let server = MicroHTTPDServer(
            configuration: configuration,
            logger: logger,
            longPoll: longPoll,
            events: events,
            handler: handler
        )
        try server.start()
        return server
    }
}
