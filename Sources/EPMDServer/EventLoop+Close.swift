import EPMDPosix
import EPMDProtocol
import EPMDRegistry
import Logging
import Synchronization

/// Closing: the registration ends with the connection, bad input is counted and logged.
extension EventLoop {
    /// Closes the connection for `reason`. Bytes the peer sent that were never read (more than C epmd's
    /// input buffer takes) make the kernel answer with a reset, as C epmd's close does.
    mutating func close(_ connection: EPMDConnection, reason: CloseReason) {
        connection.machine.terminated()
        self.timed.remove(connection)
        if connection.registration != nil {
            connection.registration = nil
            self.registeredByID.removeValue(forKey: connection.id)
            if let node = self.server.registry.unregister(connection: connection.id, reason: reason.unregisterReason) {
                let creation = RegisteredNode.wireCreation(node.creation, extended: node.request.wantsExtendedReply)
                self.logger.info(
                    "unregistering '\(Self.printable(node.name)):\(creation)', port \(node.port) (\(reason))"
                )
            }
        }
        self.server.counters.closed(reason)
        if let malformed = reason.malformedReason { self.server.counters.malformed(malformed) }
        switch reason {
        case .malformed:
            self.logger.warning("closed connection from \(connection.peer): \(reason)")
        case .notLocal(let code):
            self.logger.warning("\(Self.requestName(code)) from non local address")
        case .stopNotAllowed:
            self.logger.warning("Disallowed STOP_REQ, no relaxed_command_check")
        case .strayData:
            self.logger.info("got more than expected on ALIVE socket (\(connection.id))")
        case .answered, .peerClosed, .ioError, .timeout, .stopped, .shutdown, .evicted:
            break
        }
        let index = Int(connection.fd)
        if index < self.slots.count, self.slots[index] === connection { self.slots[index] = nil }
        // Out of the interest list before the close: when another process holds a copy of the socket
        // (systemd's fd store, a hand-over), close() alone leaves it watched, and a level-triggered EOF
        // would wake the loop for ever.
        if connection.watched {
            try? self.epoll.delete(connection.fd)
            connection.watched = false
        }
        System.close(connection.fd)
        self.openCount -= 1
        self.server.counters.open.store(self.openCount, ordering: .relaxed)
        if self.acceptPaused || self.reserveFD < 0 { self.resumeAccepting() }
    }

    static func requestName(_ code: EPMDMessageCode) -> String {
        switch code {
        case .alive2Request: "ALIVE2_REQ"
        case .dumpRequest: "DUMP_REQ"
        case .killRequest: "KILL_REQ"
        case .stopRequest: "STOP_REQ"
        case .namesRequest: "NAMES_REQ"
        default: "request \(code.rawValue)"
        }
    }
}
