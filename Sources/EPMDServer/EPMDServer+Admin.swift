import EPMDPosix
import EPMDRegistry
import Logging
import Synchronization

/// What ``EPMDServer/forceUnregister(name:timeoutMilliseconds:)`` did.
public enum ForcedUnregistration: Equatable, Sendable {
    /// The node's registration connection was closed: the registration is gone (reason `stop`).
    case unregistered(RegisteredNode)
    /// No node has that name.
    case notFound
    /// The loop did not answer within the bound (not running, or stopping), or no wake-up could be
    /// made (out of descriptors). Nothing was done.
    case unavailable
}

/// Forced unregistration (the admin API's `DELETE /v1/nodes/{name}`): STOP's equivalent, carried out
/// by the loop thread, which owns the connections. Any thread posts a request and waits for the
/// loop's answer, with a bound.
extension EPMDServer {
    /// Closes the registration connection of the node `name` on the loop thread, as STOP does, and
    /// waits for the outcome. Safe from any thread except the loop's own.
    /// - Parameters:
    ///   - name: the node name (bytes, as registered).
    ///   - timeoutMilliseconds: the longest to wait for the loop; past it, the request is withdrawn
    ///     (the loop will not act on it later) and the answer is `unavailable`.
    /// - Returns: the outcome.
    public func forceUnregister(name: [UInt8], timeoutMilliseconds: Int = 2000) -> ForcedUnregistration {
        guard let request = ForcedUnregistrationRequest(name: name) else { return .unavailable }
        self.adminRequests.post(request)
        self.wakeLoop()
        let deadline = System.monotonicNanoseconds() &+ UInt64(min(max(timeoutMilliseconds, 0), 3_600_000)) * 1_000_000
        while true {
            if let outcome = request.outcome { return outcome }
            let now = System.monotonicNanoseconds()
            guard now < deadline else { break }
            request.wake.wait(milliseconds: Int32(clamping: (deadline - now + 999_999) / 1_000_000))
        }
        // Withdrawn, unless the loop took it meanwhile: then it finishes at once (closing one
        // connection never blocks), and its outcome stands.
        while !request.withdraw() {
            if let outcome = request.outcome { return outcome }
            request.wake.wait(milliseconds: 100)
        }
        self.adminRequests.remove(request)
        return .unavailable
    }
}

/// The requests posted to the loop, taken on its next wake-up.
final class AdminRequestQueue: Sendable {
    private let pending = Mutex<[ForcedUnregistrationRequest]>([])

    func post(_ request: ForcedUnregistrationRequest) { self.pending.withLock { $0.append(request) } }

    /// Drops a withdrawn request (and its eventfd) that the loop never took.
    func remove(_ request: ForcedUnregistrationRequest) {
        self.pending.withLock { pending in pending.removeAll { $0 === request } }
    }

    func takeAll() -> [ForcedUnregistrationRequest] {
        self.pending.withLock { pending in
            defer { pending.removeAll() }
            return pending
        }
    }
}

/// One forced unregistration in flight: its name, its outcome once the loop decided, and the wake-up
/// the poster sleeps on.
final class ForcedUnregistrationRequest: Sendable {
    private enum Phase {
        case waiting
        case taken
        case withdrawn
        case done(ForcedUnregistration)
    }

    let name: [UInt8]
    let wake: WakeEvent
    private let phase = Mutex(Phase.waiting)

    /// nil when no eventfd can be made.
    init?(name: [UInt8]) {
        guard let wake = try? WakeEvent() else { return nil }
        self.name = name
        self.wake = wake
    }

    var outcome: ForcedUnregistration? {
        self.phase.withLock { phase in
            if case .done(let outcome) = phase { return outcome }
            return nil
        }
    }

    /// The poster gives up: true when withdrawn in time (the loop will skip it), false when the loop
    /// took it first (its outcome is coming).
    func withdraw() -> Bool {
        self.phase.withLock { phase in
            guard case .waiting = phase else { return false }
            phase = .withdrawn
            return true
        }
    }

    /// The loop takes the request: false when the poster withdrew it.
    func take() -> Bool {
        self.phase.withLock { phase in
            guard case .waiting = phase else { return false }
            phase = .taken
            return true
        }
    }

    /// The loop's outcome; wakes the poster.
    func finish(_ outcome: ForcedUnregistration) {
        self.phase.withLock { phase in
            phase = .done(outcome)
        }
        self.wake.signal()
    }
}

extension EventLoop {
    /// Carries out the forced unregistrations posted since the last wake-up.
    mutating func serveAdminRequests() {
        for request in self.server.adminRequests.takeAll() where request.take() {
            guard let node = self.server.registry.lookup(request.name),
                let fd = self.registeredByID[node.connection], Int(fd) < self.slots.count,
                let victim = self.slots[Int(fd)], victim.id == node.connection
            else {
                request.finish(.notFound)
                continue
            }
            self.logger.notice("forcibly unregistering '\(Self.printable(node.name))' (admin request)")
            // `close` ends the registration with the `stop` reason, as STOP does, and logs it.
            self.close(victim, reason: .stopped)
            request.finish(.unregistered(node))
        }
    }
}
