import EPMDPosix
import EPMDProtocol
import EPMDRegistry
import EPMDServer
import GatewayMetrics
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The running gateway's side of a hand-over (``HandoverProtocol``): it listens on the hand-over
/// socket (served on the epmd loop), checks each peer (`SO_PEERCRED`: root or this process's user;
/// the hello's format version), sends the registry, every connection and every listening socket to
/// an accepted successor, and waits for its acknowledgement. SIGUSR2 starts the successor itself.
public final class HandoverService: EPMDHandoverHandler {
    private let registry: NodeRegistry
    private let metrics: GatewayMetrics
    private let logger: Logger
    private let environment: [String: String]
    /// Whether this gateway speaks to systemd (it then moves `MAINPID=` to the successor).
    private let notifies: Bool
    private struct Shared {
        /// Where the socket is, and its descriptor (nil: none).
        var path: String?
        var descriptor: Int32?
        /// The file's identity when this process made or received it: it is removed at the end only
        /// if it is still this one (a successor's file is never removed).
        var identity: (device: UInt64, inode: UInt64)?
        var httpListener: (@Sendable () -> Int32?)?
        var stateJournal: (@Sendable () -> Int32?)?
        var successor: Int32?
        var handedOver = false
        var closed = false
    }
    private let shared = Mutex(Shared())

    /// The default socket for an epmd port: `/run/epmd-gateway/handover-PORT.sock` for root, else
    /// `$XDG_RUNTIME_DIR/epmd-gateway/handover-PORT.sock`, else `/tmp/epmd-gateway-UID/handover-PORT.sock`.
    public static func defaultPath(port: UInt16, userID: UInt32, environment: [String: String]) -> String {
        let name = "handover-\(port).sock"
        if userID == 0 { return "/run/epmd-gateway/\(name)" }
        if let runtime = environment["XDG_RUNTIME_DIR"], runtime.hasPrefix("/") {
            return "\(runtime)/epmd-gateway/\(name)"
        }
        return "/tmp/epmd-gateway-\(userID)/\(name)"
    }

    /// The socket path for `options`: nil when disabled (`none`), or for port 0 without an explicit path.
    public static func path(for options: EPMDOptions, port: UInt16, environment: [String: String]) -> String? {
        if let explicit = options.handoverSocket { return explicit == "none" ? nil : explicit }
        guard port != 0 else { return nil }
        return self.defaultPath(port: port, userID: UnixSocket.userID, environment: environment)
    }

    /// Made before the epmd loop; ``open(path:inherited:)`` listens once the epmd port is bound (a
    /// gateway that finds its port taken never touches the running one's hand-over socket).
    init(
        registry: NodeRegistry,
        metrics: GatewayMetrics,
        environment: [String: String],
        notifies: Bool,
        logger: Logger
    ) {
        self.notifies = notifies
        self.registry = registry
        self.metrics = metrics
        self.logger = logger
        self.environment = environment
    }

    /// Listens on `path`, or takes over `inherited` (the predecessor's listening socket, received in
    /// a hand-over). A failure to listen is logged and leaves the gateway without a hand-over socket.
    func open(path: String?, inherited: Int32?) {
        var descriptor: Int32?
        if let inherited {
            descriptor = inherited
            _ = try? System.setNonBlocking(inherited)
        } else if let path {
            do {
                try UnixSocket.makeParentDirectory(of: path)
                try Self.checkDirectory(of: path)
                descriptor = try UnixSocket.listen(path: path)
            } catch {
                self.logger.warning("no hand-over socket at \(path): \(error)")
            }
        }
        let kept = descriptor == nil ? nil : path
        let identity = kept.flatMap { UnixSocket.fileIdentity(path: $0) }
        self.shared.withLock { shared in
            shared.descriptor = descriptor
            shared.path = kept
            shared.identity = identity
        }
        if let kept { self.logger.info("hand-over socket \(kept)") }
    }

    /// The socket's directory must be this user's (or root's) and writable by nobody else: another
    /// user could otherwise replace the socket.
    private static func checkDirectory(of path: String) throws(SystemError) {
        guard let slash = path.utf8.lastIndex(of: UInt8(ascii: "/")) else { return }
        let directory = slash == path.utf8.startIndex ? "/" : String(path[..<slash])
        var status = stat()
        guard stat(directory, &status) == 0 else { throw SystemError("stat \(directory)", errno: errno) }
        let owner = status.st_uid
        let open = status.st_mode & 0o022 != 0 && status.st_mode & 0o1000 == 0
        guard owner == 0 || owner == UnixSocket.userID, !open else {
            throw SystemError("\(directory) is writable by others", errno: EPERM)
        }
    }

    public var listenDescriptor: Int32? { self.shared.withLock { $0.descriptor } }

    /// Where the hand-over socket is (nil: none).
    public var path: String? { self.shared.withLock { $0.path } }

    /// The PID the gateway handed over to, once it did.
    public var successor: Int32? { self.shared.withLock { $0.handedOver ? $0.successor : nil } }

    /// Where to find the HTTP front's listening socket at hand-over time (nil: none).
    func provideHTTPListener(_ provider: @escaping @Sendable () -> Int32?) {
        self.shared.withLock { $0.httpListener = provider }
    }

    /// Where to find the state journal (systemd's fd store) at hand-over time, passed as
    /// `state-journal` to the successor.
    func provideStateJournal(_ provider: @escaping @Sendable () -> Int32?) {
        self.shared.withLock { $0.stateJournal = provider }
    }

    /// Closes the socket; removes its file unless the gateway handed over (the successor owns it now).
    func close() {
        let shared = self.shared.withLock { shared -> Shared? in
            defer {
                shared.closed = true
                shared.descriptor = nil
            }
            return shared.closed ? nil : shared
        }
        guard let shared, let descriptor = shared.descriptor else { return }
        if !shared.handedOver, let path = shared.path, let identity = shared.identity {
            UnixSocket.unlink(path: path, ifIdentity: identity)
        }
        System.close(descriptor)
    }

    // MARK: - On the loop

    private func refuse(_ session: Int32, reason: String, message: String) {
        self.metrics.handover.refused(reason: reason)
        self.logger.notice("hand-over refused (\(reason)): \(message)")
        try? HandoverProtocol.send(.refuse, Array(message.utf8), on: session)
        System.close(session)
    }

    public func admit(draining: Bool) -> Int32? {
        guard let listener = self.listenDescriptor, let (session, _) = try? System.accept(listener) else { return nil }
        let credentials: UnixSocket.Credentials
        do {
            try UnixSocket.setBlocking(session, timeoutMilliseconds: HandoverProtocol.timeoutMilliseconds)
            credentials = try UnixSocket.peerCredentials(session)
        } catch {
            self.refuse(session, reason: "malformed", message: "cannot read the peer: \(error)")
            return nil
        }
        guard credentials.uid == 0 || credentials.uid == UnixSocket.userID else {
            // No message: the peer is not entitled to learn anything.
            self.metrics.handover.refused(reason: "credentials")
            self.logger.warning(
                "hand-over refused: peer PID \(credentials.pid) runs as uid \(credentials.uid), not root or \(UnixSocket.userID)"
            )
            System.close(session)
            return nil
        }
        let hello: HandoverProtocol.Hello
        do {
            let frame = try HandoverProtocol.receive(on: session)
            guard frame.type == .hello else { throw HandoverProtocol.FrameError("expected hello, got \(frame.type)") }
            hello = try HandoverProtocol.Hello(payload: frame.payload)
        } catch {
            self.refuse(session, reason: "malformed", message: "no hand-over hello: \(error)")
            return nil
        }
        guard hello.formatVersion == HandoverProtocol.formatVersion else {
            self.refuse(
                session,
                reason: "version",
                message:
                    "hand-over format \(hello.formatVersion) (epmd-gateway \(hello.binaryVersion)) is not this gateway's format \(HandoverProtocol.formatVersion) (epmd-gateway \(EPMDApplication.version)): the running gateway serves on"
            )
            return nil
        }
        guard !draining else {
            self.refuse(session, reason: "draining", message: "the running gateway is shutting down")
            return nil
        }
        self.shared.withLock { $0.successor = hello.pid }
        self.logger.notice(
            "handing over to PID \(hello.pid) (epmd-gateway \(hello.binaryVersion)), uid \(credentials.uid)"
        )
        return session
    }

    public func transfer(
        session: Int32,
        listeners: [Int32],
        connections: [EPMDConnectionSnapshot],
        stoppedAt: UInt64
    ) -> Bool {
        defer { System.close(session) }
        let (httpProvider, journalProvider, successor, handover) = self.shared.withLock {
            ($0.httpListener, $0.stateJournal, $0.successor ?? 0, $0.descriptor)
        }
        let http = httpProvider?()
        let journal = journalProvider?()
        let notifies = self.notifies
        // The successor's READY=1 must be accepted (NotifyAccess=main): it becomes the main PID first.
        if notifies, successor > 0 {
            _ = Systemd.notify("MAINPID=\(successor)", environment: self.environment, waits: true)
        }
        let state = HandoverProtocol.State(
            registry: self.registry.copyState().encoded(),
            connections: connections,
            epmdListeners: listeners.count,
            hasHTTPListener: http != nil,
            hasHandoverListener: handover != nil,
            hasJournal: journal != nil,
            pid: ProcessControl.processID
        )
        var descriptors = listeners
        if let http { descriptors.append(http) }
        if let handover { descriptors.append(handover) }
        if let journal { descriptors.append(journal) }
        descriptors += connections.map(\.fd)
        let outcome: Result<Void, HandoverProtocol.FrameError> = Result { () throws(HandoverProtocol.FrameError) in
            try HandoverProtocol.send(.state, state.payload, on: session)
            var offset = 0
            while offset < descriptors.count {
                let chunk = Array(
                    descriptors[offset..<min(offset + UnixSocket.maxDescriptorsPerMessage, descriptors.count)]
                )
                var count = ByteWriter()
                count.count(chunk.count)
                try HandoverProtocol.send(.descriptors, count.bytes, on: session, descriptors: chunk)
                offset += chunk.count
            }
            let answer = try HandoverProtocol.receive(on: session)
            switch answer.type {
            case .ack:
                // The successor serves: tell it we let go (it exits if this never comes).
                try? HandoverProtocol.send(.done, [], on: session)
            case .nack:
                throw HandoverProtocol.FrameError("the successor refused: \(HandoverProtocol.text(answer.payload))")
            default:
                throw HandoverProtocol.FrameError("unexpected \(answer.type) frame")
            }
        }
        switch outcome {
        case .success:
            self.shared.withLock { $0.handedOver = true }
            let milliseconds = Double(System.monotonicNanoseconds() &- stoppedAt) / 1e6
            self.logger.notice(
                "handed over to PID \(successor): \(connections.count) connections, \(self.registry.count) registrations, \(descriptors.count) descriptors, epmd port paused \(Self.format(milliseconds)) ms"
            )
            return true
        case .failure(let error):
            if notifies {
                _ = Systemd.notify("MAINPID=\(ProcessControl.processID)", environment: self.environment, waits: true)
            }
            self.metrics.handover.refused(reason: "failed")
            self.logger.error("hand-over to PID \(successor) failed, serving on: \(error)")
            return false
        }
    }

    public func successorRequested() {
        let path = Self.executablePath()
        var arguments = CommandLine.arguments
        if !arguments.contains("--takeover") && !arguments.contains("-takeover") { arguments.append("--takeover") }
        if let explicit = self.path, !arguments.contains(where: { $0.hasPrefix("--handover-socket") }),
            self.environment["EPMD_GATEWAY_HANDOVER_SOCKET"] == nil
        {
            arguments += ["--handover-socket", explicit]
        }
        do {
            let pid = try UnixSocket.spawnChild(
                path: path,
                arguments: arguments,
                environment: ProcessControl.environmentEntries()
            )
            self.logger.notice("started successor PID \(pid) (\(path)) to hand over to")
        } catch {
            self.metrics.handover.refused(reason: "failed")
            self.logger.error("cannot start a successor (\(path)): \(error)")
        }
    }

    /// This program's file: what `/proc/self/exe` names (the new file after an upgrade replaced it).
    static func executablePath() -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard count > 0 else { return "/proc/self/exe" }
        var path = String(decoding: buffer.prefix(count).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if path.hasSuffix(" (deleted)") { path.removeLast(" (deleted)".count) }
        return path
    }

    static func format(_ milliseconds: Double) -> String {
        let tenths = (milliseconds * 10).rounded()
        return "\(Int(tenths) / 10).\(Int(tenths) % 10)"
    }
}
