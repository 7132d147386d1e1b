import EPMDLogging
import EPMDPosix
import EPMDRegistry
import Logging

/// Accepting: batches, descriptor exhaustion (never fatal); an accepted connection is adopted fresh.
extension EventLoop {
    mutating func acceptConnections(listenerIndex: Int) {
        guard listenerIndex >= 0, listenerIndex < self.server.listeners.count, !self.acceptPaused else { return }
        let listenFD = self.server.listeners[listenerIndex]
        // Accept in a batch only while nobody else waits: a connection whose request was not there at
        // accept waits in epoll, and an accept batch would make it wait behind the whole batch (measured:
        // 16 accepts per wake-up doubled the p999 of lookups). So once any connection is in flight, hand
        // back to epoll after each accept, as C epmd does; while every request comes with its connect
        // and is answered at once, keep accepting (fewer epoll_wait calls).
        for _ in 0..<Self.acceptBatch {
            do {
                guard let (fd, peer) = try System.accept(listenFD) else { return }
                self.accepted(fd: fd, peer: peer)
                if !self.timed.isEmpty || self.exitReason != nil { return }
            } catch {
                let reason = EPMDRefusalReason(errno: error.errno)
                if reason != .acceptError {
                    self.outOfDescriptors(error, reason: reason, listenFD: listenFD)
                    return
                }
                // ECONNABORTED, EPROTO, EPERM and friends concern one peer only: never fatal.
                self.server.counters.rejected(reason)
                let cause = AdmissionLogReason.acceptError.rawValue
                if let count = self.refusalLog.occurred(cause, now: System.monotonicNanoseconds()) {
                    self.logger.info("error in accept: \(error.message)\(Self.repeated(count))")
                }
                return
            }
        }
    }

    /// EMFILE/ENFILE: keep every registration, count the refusal, and serve one waiting client with
    /// the reserve descriptor; then stop polling the listeners until a descriptor frees (or 100 ms).
    /// Logged once per interval with a count (a full table would otherwise log ten lines a second).
    /// EMFILE also lowers the cap in force and frees descriptors (`shedOnExhaustion`).
    private mutating func outOfDescriptors(_ error: SystemError, reason: EPMDRefusalReason, listenFD: Int32) {
        self.server.counters.rejected(reason)
        let cause = AdmissionLogReason.outOfDescriptors.rawValue
        if let count = self.refusalLog.occurred(cause, now: System.monotonicNanoseconds()) {
            self.logger.error(
                "error in accept: \(error.message) (registrations kept, accepting paused)\(Self.repeated(count))"
            )
        }
        if reason == .emfile { self.shedOnExhaustion() }
        if self.reserveFD >= 0 {
            System.close(self.reserveFD)
            self.reserveFD = -1
            if let (fd, peer) = try? System.accept(listenFD) {
                self.accepted(fd: fd, peer: peer)
            }
        }
        self.pauseAccepting()
    }

    private mutating func pauseAccepting() {
        guard !self.acceptPaused else { return }
        self.acceptPaused = true
        self.acceptResumeAt = System.monotonicNanoseconds() + 100_000_000
        for fd in self.server.listeners {
            try? self.epoll.modify(fd, events: [], data: 0)
        }
    }

    mutating func resumeAccepting() {
        if self.reserveFD < 0 { self.reserveFD = System.openReserve() ?? -1 }
        guard self.acceptPaused, self.lastCallUntil == nil else { return }
        self.acceptPaused = false
        for (index, fd) in self.server.listeners.enumerated() {
            try? self.epoll.modify(fd, events: .input, data: LoopToken.listener(index: Int32(index)).packed)
        }
    }

    /// A connection just accepted: admitted under the caps (see `makeRoom`), then adopted with a
    /// fresh state; or, at the cap with nothing to evict, closed at once.
    private mutating func accepted(fd: Int32, peer: SocketAddress) {
        guard self.makeRoom(for: peer, key: PeerKey(peer)) else {
            self.refuse(fd: fd, peer: peer)
            return
        }
        let isLocal = PeerLocality.isLocal(peer: peer) { try? System.localAddress(fd) }
        if self.logsDebug { self.logger.debug("\(isLocal ? "Local" : "Non-local") peer connected (\(peer))") }
        self.adopt(
            .fresh(
                fd: fd,
                peer: peer,
                isLocalPeer: isLocal,
                relaxedCommandCheck: self.server.configuration.relaxedCommandCheck,
                namesLocalOnly: self.server.configuration.namesLocalOnly,
                acceptedAt: System.monotonicNanoseconds()
            )
        )
    }
}
