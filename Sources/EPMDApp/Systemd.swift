import EPMDPosix

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// systemd without libsystemd: socket activation (`LISTEN_FDS`, `LISTEN_FDNAMES`), readiness, status,
/// watchdog and stopping (`NOTIFY_SOCKET`, `WATCHDOG_USEC`). See ``SystemdNotifier`` for when each
/// notification is sent.
public enum Systemd {
    /// The first passed descriptor.
    public static let firstDescriptor: Int32 = 3

    /// The variables of socket activation: removed from the environment once read, so that nothing
    /// this process starts (the `-daemon` copy) takes descriptors that are not its own.
    public static let activationVariables = ["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"]

    /// The descriptor name that makes a socket the HTTP front's (`FileDescriptorName=http`).
    public static let httpDescriptorName = "http"

    /// The most descriptors `LISTEN_FDS` may announce (a bound against a malformed value).
    public static let maximumListenDescriptors: Int32 = 1 << 20

    /// The descriptors passed by socket activation, as `sd_listen_fds(0)` reads them.
    /// - Returns: the descriptors, `[]` when none were passed, `nil` when the variables are malformed.
    public static func listenDescriptors(environment: [String: String]) -> [Int32]? {
        guard let countText = environment["LISTEN_FDS"] else { return [] }
        if let pidText = environment["LISTEN_PID"] {
            guard let pid = Int32(pidText) else { return nil }
            guard pid == ProcessControl.processID else { return [] }
        }
        // The fd store gives every kept registration back here: tens of thousands, not a few sockets.
        guard let count = Int32(countText), count >= 0, count <= self.maximumListenDescriptors else { return nil }
        return (0..<count).map { self.firstDescriptor + $0 }
    }

    /// The names of the `count` passed descriptors (`LISTEN_FDNAMES`, colon-separated), as
    /// `sd_listen_fds_with_names` reads them: all unnamed (nil) when the variable is missing or does not
    /// hold exactly `count` names. An empty name is unnamed too.
    public static func descriptorNames(environment: [String: String], count: Int) -> [String?] {
        let unnamed = [String?](repeating: nil, count: max(count, 0))
        guard let text = environment["LISTEN_FDNAMES"] else { return unnamed }
        let names = text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        guard names.count == count else { return unnamed }
        return names.map { $0.isEmpty ? nil : $0 }
    }

    /// The fd store's name of the state journal (a memory file).
    public static let stateDescriptorName = "state"
    /// The fd store's name of the store probe (a socketpair end, removed at once; dropped if found).
    public static let probeDescriptorName = "probe"

    /// Whether `name` is one the gateway gives to what it keeps in systemd's fd store: `state`, `probe`,
    /// or `n<slot>` (a registration's connection). Socket units never use these.
    public static func isStoreName(_ name: String?) -> Bool {
        guard let name else { return false }
        if name == self.stateDescriptorName || name == self.probeDescriptorName { return true }
        return self.slot(storeName: name) != nil
    }

    private static let slotDigits = Array("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz".utf8)

    /// The fd store name of a registration's slot: `n` and the slot in base 62 (`n0`, `nZ`, `n10`).
    ///
    /// Short on purpose: systemd passes every name back in one variable, `LISTEN_FDNAMES`, and execve
    /// refuses any one environment string above 128 KiB (`MAX_ARG_STRLEN`) with E2BIG: the restart
    /// itself would fail. Slots are reused, so they stay below the live count: at most 4 bytes and a
    /// colon each below 238,328 registrations (see ``FDStore/maximumStored``).
    public static func storeName(slot: Int) -> String {
        var value = max(slot, 0)
        var digits: [UInt8] = []
        repeat {
            digits.append(self.slotDigits[value % 62])
            value /= 62
        } while value > 0
        return "n" + String(decoding: digits.reversed(), as: UTF8.self)
    }

    /// The slot in a registration's fd store name (`nZ` gives 35), nil for any other name.
    public static func slot(storeName name: String) -> Int? {
        let bytes = Array(name.utf8)
        guard bytes.count >= 2, bytes.count <= 6, bytes[0] == UInt8(ascii: "n") else { return nil }
        var value = 0
        for byte in bytes.dropFirst() {
            guard let digit = self.slotDigits.firstIndex(of: byte) else { return nil }
            value = value * 62 + digit
        }
        // One spelling per slot: no leading zero.
        return self.storeName(slot: value) == name ? value : nil
    }

    /// What a passed descriptor serves.
    public enum Role: Equatable, Sendable {
        /// An epmd listener: every name but `http` (`epmd`, Debian's `epmd.socket`, `unknown`, none).
        case epmd
        /// The HTTP front's listening socket (named `http`).
        case http
        /// Something the gateway kept in systemd's fd store (``isStoreName(_:)``).
        case stored

        public init(name: String?) {
            if Systemd.isStoreName(name) {
                self = .stored
            } else {
                self = name == Systemd.httpDescriptorName ? .http : .epmd
            }
        }
    }

    /// A descriptor systemd gave back from its fd store.
    public struct StoredDescriptor: Equatable, Sendable {
        /// Its `FDNAME=`.
        public var name: String
        public var fd: Int32

        public init(name: String, fd: Int32) {
            self.name = name
            self.fd = fd
        }
    }

    /// What kind of socket a descriptor is, as the kernel says (`SO_DOMAIN`, `SO_TYPE`, `SO_ACCEPTCONN`).
    public struct SocketKind: Equatable, Sendable {
        public var family: Int32
        public var type: Int32
        public var listening: Bool

        public init(family: Int32, type: Int32, listening: Bool) {
            self.family = family
            self.type = type
            self.listening = listening
        }

        /// A listening TCP socket (IPv4 or IPv6): the only kind either front can serve.
        public var isListeningTCP: Bool {
            self.listening && self.type == Int32(SOCK_STREAM.rawValue)
                && (self.family == AF_INET || self.family == AF_INET6)
        }

        /// Asks the kernel about `fd`; nil when it is not an open socket.
        public static func of(_ fd: Int32) -> SocketKind? {
            do {
                return SocketKind(
                    family: try System.socketOption(fd, level: SOL_SOCKET, name: SO_DOMAIN),
                    type: try System.socketOption(fd, level: SOL_SOCKET, name: SO_TYPE),
                    listening: try System.socketOption(fd, level: SOL_SOCKET, name: SO_ACCEPTCONN) != 0
                )
            } catch {
                return nil
            }
        }
    }

    /// The passed descriptors, sorted by front.
    public struct ActivatedSockets: Equatable, Sendable {
        /// The epmd listeners, in the order they were passed.
        public var epmd: [Int32]
        /// The HTTP front's listening socket, if one was named `http`.
        public var http: Int32?
        /// What came back from the fd store (registrations, the state journal), in the order passed.
        public var stored: [StoredDescriptor]

        public init(epmd: [Int32], http: Int32?, stored: [StoredDescriptor] = []) {
            self.epmd = epmd
            self.http = http
            self.stored = stored
        }
    }

    /// Why the passed descriptors cannot be used (exit 1).
    public enum ActivationError: Error, Equatable, Sendable, CustomStringConvertible {
        /// `LISTEN_FDS` or `LISTEN_PID` is not a number.
        case malformed
        /// `-systemd` without any descriptor.
        case noSockets
        /// A descriptor that is not a listening TCP socket (a datagram socket, a file, closed).
        case notListening(fd: Int32, name: String?)
        /// Only an `http` descriptor: the epmd port has nothing to listen on.
        case noEPMDSocket
        /// More than one descriptor named `http`.
        case severalHTTPSockets
        /// More epmd listeners than C epmd's `MAX_LISTEN_SOCKETS`.
        case tooMany(Int)

        public var description: String {
            switch self {
            case .malformed:
                "cannot obtain sockets from systemd"
            case .noSockets:
                "systemd provides no sockets"
            case .notListening(let fd, let name):
                "systemd socket \(fd) (\(name.map { "named \"\($0)\"" } ?? "unnamed")) is not a listening TCP socket"
            case .noEPMDSocket:
                "systemd provides no epmd socket (only one named \"\(Systemd.httpDescriptorName)\")"
            case .severalHTTPSockets:
                "systemd provides more than one socket named \"\(Systemd.httpDescriptorName)\""
            case .tooMany(let maximum):
                "cannot listen on more than \(maximum) IP addresses"
            }
        }
    }

    /// Sorts passed descriptors by their names and checks that each listener is a listening TCP socket
    /// (what the fd store gave back, by its names, is set aside unchecked: ``ActivatedSockets/stored``).
    /// - Parameters:
    ///   - descriptors: the descriptors (`listenDescriptors`).
    ///   - names: their names (`descriptorNames`), one per descriptor.
    ///   - maximumEPMD: at most this many epmd listeners.
    ///   - kind: what kind of socket a descriptor is (the kernel's answer; replaceable for tests).
    /// - Throws: `ActivationError`.
    public static func classify(
        descriptors: [Int32],
        names: [String?],
        maximumEPMD: Int = ListenPlan.maximumSockets,
        kind: (Int32) -> SocketKind? = SocketKind.of
    ) throws(ActivationError) -> ActivatedSockets {
        guard !descriptors.isEmpty else { throw .noSockets }
        var sockets = ActivatedSockets(epmd: [], http: nil)
        for (index, fd) in descriptors.enumerated() {
            let name = index < names.count ? names[index] : nil
            let role = Role(name: name)
            if role == .stored, let name {
                sockets.stored.append(StoredDescriptor(name: name, fd: fd))
                continue
            }
            guard let found = kind(fd), found.isListeningTCP else { throw .notListening(fd: fd, name: name) }
            switch role {
            case .stored:
                break
            case .epmd:
                sockets.epmd.append(fd)
            case .http:
                guard sockets.http == nil else { throw .severalHTTPSockets }
                sockets.http = fd
            }
        }
        guard !sockets.epmd.isEmpty else { throw .noEPMDSocket }
        guard sockets.epmd.count <= maximumEPMD else { throw .tooMany(maximumEPMD) }
        return sockets
    }

    /// The sockets systemd passed to this process, sorted and checked; the activation variables are
    /// removed from the environment (children do not inherit them).
    /// - Throws: `ActivationError`.
    public static func activatedSockets(environment: [String: String]) throws(ActivationError) -> ActivatedSockets {
        guard let descriptors = self.listenDescriptors(environment: environment) else { throw .malformed }
        if self.activationVariables.contains(where: { environment[$0] != nil }) {
            ProcessControl.removeEnvironment(self.activationVariables)
        }
        let names = self.descriptorNames(environment: environment, count: descriptors.count)
        let sockets = try self.classify(descriptors: descriptors, names: names)
        // sd_listen_fds: the descriptors are ours, not a child's.
        for fd in descriptors { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        return sockets
    }

    /// The watchdog interval systemd asks for: half of `WATCHDOG_USEC`, in nanoseconds, as
    /// `sd_watchdog_enabled` reads it; nil when there is no watchdog, or it watches another process
    /// (`WATCHDOG_PID`), or the value is malformed.
    public static func watchdogInterval(
        environment: [String: String],
        processID: Int32 = ProcessControl.processID
    ) -> UInt64? {
        guard let text = environment["WATCHDOG_USEC"], let microseconds = UInt64(text), microseconds > 0 else {
            return nil
        }
        if let pidText = environment["WATCHDOG_PID"] {
            guard let pid = Int32(pidText), pid == processID else { return nil }
        }
        let (nanoseconds, overflow) = microseconds.multipliedReportingOverflow(by: 1000)
        return overflow ? UInt64.max / 2 : max(nanoseconds / 2, 1)
    }

    /// The `STATUS=` text while serving, e.g. `Serving 3 nodes (epmd port 4369, HTTP port 4370)`.
    public static func statusText(nodes: Int, epmdPort: UInt16, httpPort: UInt16?) -> String {
        let http = httpPort.map { "HTTP port \($0)" } ?? "HTTP off"
        return "Serving \(nodes) node\(nodes == 1 ? "" : "s") (epmd port \(epmdPort), \(http))"
    }

    /// The `STATUS=` text once the drain has begun.
    public static func drainingStatusText(nodes: Int, graceSeconds: Int) -> String {
        let still = "\(nodes) node\(nodes == 1 ? "" : "s") registered"
        return graceSeconds > 0 ? "Draining for \(graceSeconds) s, \(still)" : "Stopping, \(still)"
    }

    /// Whether notifications go to `NOTIFY_SOCKET`: always under `-systemd`; otherwise only when
    /// systemd started this very process (`SYSTEMD_EXEC_PID`, systemd 248 and later, is our pid), so
    /// that a gateway started by some other service's process (an `erl` in a `Type=notify` unit with
    /// `NotifyAccess=all`) never speaks for that service.
    public static func notifies(
        systemdOption: Bool,
        environment: [String: String],
        processID: Int32 = ProcessControl.processID
    ) -> Bool {
        guard let path = environment["NOTIFY_SOCKET"], !path.isEmpty else { return false }
        if systemdOption { return true }
        return environment["SYSTEMD_EXEC_PID"].flatMap { Int32($0) } == processID
    }

    /// Sends a state string to the service manager; does nothing outside systemd.
    /// - Parameters:
    ///   - state: newline-separated assignments such as `READY=1`.
    ///   - environment: where to find `NOTIFY_SOCKET`.
    ///   - waits: false: give up (return false) rather than wait when systemd's queue is full.
    /// - Returns: whether a datagram was sent.
    @discardableResult
    public static func notify(_ state: String, environment: [String: String], waits: Bool = true) -> Bool {
        guard let path = environment["NOTIFY_SOCKET"], !path.isEmpty else { return false }
        return (try? NotifyDatagram.send(Array(state.utf8), to: path, waits: waits)) ?? false
    }
}
