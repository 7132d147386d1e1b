import EPMDPosix
import EPMDProtocol
import EPMDRegistry

/// What a served request means: the reply, whether the connection stays, what to count, and what
/// else the loop must do. A pure function of the request, the connection's context and the registry.
///
/// The registry is consulted and changed inside (not returned as an effect) on purpose: the reply
/// depends on its answer (the creation of a registration, the port of a lookup, the NAMES text, whether
/// STOP found its name), so a two-phase "decide, then apply" would need a second decision after the
/// registry's. The registry is an in-memory value behind a lock, with an injected clock: no I/O, and
/// deterministic in tests. Everything that touches sockets, the loop or the logs is an ``Effect``.
public enum EPMDRequestPolicy {
    /// What the policy may know about the connection that sent the request.
    public struct Context: Sendable {
        /// The connection (a registration is keyed by it).
        public var connection: ConnectionID
        /// Its descriptor (shown by DUMP).
        public var fd: Int32
        /// The peer (its host is stored with a registration).
        public var peer: SocketAddress
        /// `-relaxed_command_check`: KILL allowed with live nodes.
        public var relaxedCommandCheck: Bool
        /// The 4-byte configured-port prefix of NAMES and DUMP replies.
        public var portPrefix: [UInt8]

        public init(
            connection: ConnectionID,
            fd: Int32,
            peer: SocketAddress,
            relaxedCommandCheck: Bool,
            portPrefix: [UInt8]
        ) {
            self.connection = connection
            self.fd = fd
            self.peer = peer
            self.relaxedCommandCheck = relaxedCommandCheck
            self.portPrefix = portPrefix
        }
    }

    /// What the loop must do besides writing the reply, in order, before the reply is written.
    public enum Effect: Equatable, Sendable {
        /// The connection now is this registration: keep it, untimed, until it closes.
        case registered(RegisteredNode)
        /// A well-formed ALIVE2 was refused (count it, log it).
        case registrationRefused(name: [UInt8], NodeRegistryError)
        /// KILL refused because nodes are registered (log it).
        case killRefused
        /// Stop the loop: write the reply at once (not delayed), close, and return this reason.
        case exit(EPMDServer.ExitReason)
        /// STOP removed this registration: close the connection it lives on.
        case closeStoppedNode(ConnectionID, name: [UInt8])
    }

    /// The whole decision for one request.
    public struct Decision: Equatable, Sendable {
        /// The reply bytes.
        public var reply: [UInt8]
        /// Whether the connection stays open after the reply (ALIVE2, whatever its result).
        public var keep: Bool
        /// The request type, for counting.
        public var kind: EPMDRequestKind
        /// How it ended, for counting.
        public var result: EPMDRequestResult
        /// What else to do; empty for lookups, NAMES and DUMP (no allocation on their path).
        public var effects: [Effect]

        public init(
            reply: [UInt8],
            keep: Bool,
            kind: EPMDRequestKind,
            result: EPMDRequestResult,
            effects: [Effect] = []
        ) {
            self.reply = reply
            self.keep = keep
            self.kind = kind
            self.result = result
            self.effects = effects
        }
    }

    /// Decides a request that the connection's state machine let through (locality and STOP's relaxed
    /// rule are already checked there).
    /// - Parameters:
    ///   - request: the decoded request.
    ///   - context: the connection it came on.
    ///   - registry: the name table (consulted, and changed by ALIVE2 and STOP).
    /// - Returns: the reply and what to do with the connection and the loop.
    public static func decide(
        _ request: EPMDRequest,
        context: Context,
        registry: NodeRegistry
    ) -> Decision {
        switch request {
        case .alive2(let alive):
            let extended = alive.wantsExtendedReply
            switch registry.register(alive, connection: context.connection, fd: context.fd, peer: context.peer.host) {
            case .success(let node):
                let creation = RegisteredNode.wireCreation(node.creation, extended: extended)
                return Decision(
                    reply: EPMDResponse.alive2(success: true, creation: creation, extended: extended),
                    keep: true,
                    kind: .alive2,
                    result: .ok,
                    effects: [.registered(node)]
                )
            case .failure(let error):
                return Decision(
                    reply: EPMDResponse.alive2(success: false, creation: 0, extended: extended),
                    keep: true,
                    kind: .alive2,
                    result: .refused,
                    effects: [.registrationRefused(name: alive.name, error)]
                )
            }
        case .portPlease2(let name):
            if let node = registry.lookup(name) {
                return Decision(
                    reply: EPMDResponse.port2Found(node.request),
                    keep: false,
                    kind: .portPlease2,
                    result: .ok
                )
            }
            return Decision(reply: EPMDResponse.port2NotFound, keep: false, kind: .portPlease2, result: .notFound)
        case .names:
            return Decision(reply: context.portPrefix + registry.namesText(), keep: false, kind: .names, result: .ok)
        case .dump:
            return Decision(reply: context.portPrefix + registry.dumpText(), keep: false, kind: .dump, result: .ok)
        case .kill:
            if !context.relaxedCommandCheck && !registry.isEmpty {
                return Decision(
                    reply: EPMDResponse.killRefused,
                    keep: false,
                    kind: .kill,
                    result: .refused,
                    effects: [.killRefused]
                )
            }
            return Decision(
                reply: EPMDResponse.killAccepted,
                keep: false,
                kind: .kill,
                result: .ok,
                effects: [.exit(.killed)]
            )
        case .stop(let name):
            if let node = registry.unregister(name: name) {
                return Decision(
                    reply: EPMDResponse.stopStopped,
                    keep: false,
                    kind: .stop,
                    result: .ok,
                    effects: [.closeStoppedNode(node.connection, name: name)]
                )
            }
            return Decision(reply: EPMDResponse.stopNotFound, keep: false, kind: .stop, result: .notFound)
        }
    }
}
