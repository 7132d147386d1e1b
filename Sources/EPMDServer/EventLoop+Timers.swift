import EPMDPosix
import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Time: the packet timeout, replies held back by `-delay_write`, paused accepting, the shutdown
/// grace period, and the signals that start it.
extension EventLoop {
    /// How long the next `epoll_wait` may sleep: until the earliest timer, at most 60 s; -1 without one.
    func nextTimeoutMilliseconds() -> Int32 {
        var next = UInt64.max
        if let head = self.timed.head { next = min(next, head.deadline) }
        if let head = self.delayedWrites.first { next = min(next, head.at) }
        if let lastCall = self.lastCallUntil {
            next = min(next, lastCall)
        } else {
            if self.acceptPaused { next = min(next, self.acceptResumeAt) }
            if let drainUntil = self.drainUntil { next = min(next, drainUntil) }
        }
        if let hookDeadline = self.server.hooks?.nextDeadline() { next = min(next, hookDeadline) }
        guard next != .max else { return -1 }
        let now = System.monotonicNanoseconds()
        guard next > now else { return 0 }
        return Int32(min((next - now + 999_999) / 1_000_000, 60_000))
    }

    mutating func expireTimers() {
        let now = System.monotonicNanoseconds()
        while let connection = self.timed.head, connection.deadline <= now {
            self.timed.remove(connection)
            self.logger.info("closing because timed out on receive (\(connection.id))")
            self.server.counters.timedOut()
            self.close(connection, reason: .timeout)
        }
        while let head = self.delayedWrites.first, head.at <= now {
            self.delayedWrites.removeFirst()  // a short list: only `-delay_write` (a test aid) fills it
            guard let connection = self.connection(fd: head.fd, serial: head.serial) else { continue }
            self.flush(connection)
        }
        if self.acceptPaused, now >= self.acceptResumeAt { self.resumeAccepting() }
        if let drainUntil = self.drainUntil, now >= drainUntil { self.lastCall(now: now) }
        if let hooks = self.server.hooks, let deadline = hooks.nextDeadline(), deadline <= now {
            hooks.timerFired(now: now)
        }
    }

    /// The grace is over: accept nothing more (what waits in the listen backlog stays there, for the
    /// next process when systemd holds the socket), answer the requests already accepted (for at most
    /// 250 ms), then stop. A lookup accepted in the grace's last instant is answered, not cut (a
    /// `systemctl restart` under lookup load then fails none).
    mutating func lastCall(now: UInt64) {
        if self.lastCallUntil == nil {
            self.lastCallUntil = now + 250_000_000
            self.acceptPaused = true
            for fd in self.server.listeners { try? self.epoll.modify(fd, events: [], data: 0) }
        }
        let unanswered = self.slots.contains { $0.map { !$0.isRegistered } ?? false }
        if !unanswered || now >= (self.lastCallUntil ?? now) { self.exitReason = .shutdown }
    }

    mutating func drainSignals() {
        while let signal = System.readSignal(self.signalFD) {
            if signal == UInt32(SIGUSR2) {
                guard let handover = self.server.handover else { continue }
                self.logger.notice("got signal \(signal): starting a successor to hand over to")
                handover.successorRequested()
                continue
            }
            self.beginDrain(because: "got signal \(signal)")
        }
    }

    /// SIGTERM, SIGINT or `EPMDServer.drain()`: serve on for the shutdown grace (readiness reads
    /// draining), then stop; a second request during the grace, or no grace, stops at once.
    mutating func beginDrain(because cause: String) {
        let grace = self.server.configuration.shutdownGrace
        self.server.startDraining()
        if self.drainUntil == nil { self.server.hooks?.drainBegan(graceSeconds: grace) }
        if grace > 0 && self.drainUntil == nil {
            self.logger.info("\(cause), draining for \(grace) s")
            self.drainUntil = System.monotonicNanoseconds() + UInt64(grace) * 1_000_000_000
        } else {
            self.logger.info("\(cause), shutting down")
            self.exitReason = .shutdown
        }
    }
}
