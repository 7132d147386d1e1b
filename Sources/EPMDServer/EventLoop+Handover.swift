import EPMDPosix
import Logging

/// The hand-over to another process (see `EPMDHandoverHandler`): stop accepting, export, transfer;
/// on failure, adopt everything back and serve on.
extension EventLoop {
    mutating func handoverRequested() {
        guard let handover = self.server.handover else { return }
        // One peer per event: a second waiting one is taken on the next turn.
        guard let session = handover.admit(draining: self.drainUntil != nil || self.server.isDraining) else {
            return
        }
        for fd in self.server.listeners { try? self.epoll.delete(fd) }
        let stoppedAt = System.monotonicNanoseconds()
        let snapshots = self.exportAll()
        if handover.transfer(
            session: session,
            listeners: self.server.listeners,
            connections: snapshots,
            stoppedAt: stoppedAt
        ) {
            // The successor holds every descriptor now: close our copies only (never shutdown()).
            for snapshot in snapshots { System.close(snapshot.fd) }
            self.exitReason = .handedOver
            return
        }
        self.logger.notice("hand-over failed: serving on with \(snapshots.count) connections")
        for (index, fd) in self.server.listeners.enumerated() {
            let events: EpollEvents = self.acceptPaused ? [] : .input
            do {
                try self.epoll.add(fd, events: events, data: LoopToken.listener(index: Int32(index)).packed)
            } catch {
                self.logger.error("cannot watch listener again: \(error.message)")
            }
        }
        for snapshot in snapshots { self.adopt(snapshot) }
    }
}
