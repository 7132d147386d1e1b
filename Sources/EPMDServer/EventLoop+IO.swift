import EPMDPosix
import Logging

/// Reading and writing: readiness events, the read into the loop's buffer, replies and their writes.
extension EventLoop {
    mutating func connectionEvent(fd: Int32, serial: UInt32, events: EpollEvents) {
        guard let connection = self.connection(fd: fd, serial: serial) else { return }
        if events.contains(.output) {
            self.flush(connection)
            guard self.connection(fd: fd, serial: serial) != nil else { return }
        }
        let failed: EpollEvents = [.hangUp, .error]
        switch connection.machine.state {
        case .receiving, .kept:
            if !events.isDisjoint(with: Self.readInterest.union(failed)) { self.readable(connection) }
        case .replying:
            // Not reading while a reply is pending; a reset shows up as EPOLLERR/EPOLLHUP.
            if !events.isDisjoint(with: failed), connection.hasPendingReply {
                self.close(connection, reason: .ioError)
            }
        case .closed:
            break
        }
    }

    /// Reads what the connection sent, at most what C epmd's input buffer would still take (see
    /// `EPMDConnectionStateMachine.readLimit`), and acts on the state machine's decision.
    mutating func readable(_ connection: EPMDConnection) {
        let result: Int?
        do {
            result = try System.read(connection.fd, into: &self.readBuffer, maxCount: connection.machine.readLimit)
        } catch {
            self.close(connection, reason: .ioError)
            return
        }
        guard let count = result else { return }
        if count == 0 {
            if case .receiving = connection.machine.state, connection.machine.isTimed {
                self.logger.info("got partial packet only on connection \(connection.id)")
            }
            self.close(connection, reason: .peerClosed)
            return
        }
        switch connection.machine.received(self.readBuffer[0..<count]) {
        case .awaitMore:
            return
        case .close(let reason):
            self.close(connection, reason: reason)
        case .serve(let request):
            self.serve(request, on: connection)
        }
    }

    /// Starts writing a reply (or holds it back under `-delay_write`).
    mutating func reply(_ bytes: [UInt8], on connection: EPMDConnection, keep: Bool) {
        connection.machine.replyStarted(keep: keep)
        connection.outbound = bytes
        connection.outboundOffset = 0
        if self.delayWrite > 0 {
            connection.writeAt = System.monotonicNanoseconds() + self.delayWrite
            self.delayedWrites.append((connection.writeAt, connection.fd, connection.serial))
            self.setInterest(connection, [])
            return
        }
        self.flush(connection)
    }

    /// Writes what the socket takes of the pending reply; then keeps or closes the connection.
    mutating func flush(_ connection: EPMDConnection) {
        while connection.hasPendingReply {
            let written: Int?
            do {
                written = try System.send(connection.fd, connection.outbound, from: connection.outboundOffset)
            } catch {
                // A failed reply write: a registration made on this connection must not stay.
                self.logger.info("failed to send reply on \(connection.id): \(error.message)")
                self.close(connection, reason: .ioError)
                return
            }
            guard let written else {
                self.setInterest(connection, Self.writeInterest)
                return
            }
            connection.outboundOffset += written
        }
        connection.outbound = []
        connection.outboundOffset = 0
        if connection.machine.replyWritten() {
            self.setInterest(connection, Self.readInterest)
        } else {
            self.close(connection, reason: .answered)
        }
    }

    func setInterest(_ connection: EPMDConnection, _ interest: EpollEvents) {
        guard connection.interest != interest else { return }
        connection.interest = interest
        guard connection.watched else { return }  // `adopt` adds it with this interest
        try? self.epoll.modify(connection.fd, events: interest, data: connection.token.packed)
    }
}
