import EPMDPosix
import EPMDProtocol
import EPMDRegistry
import Logging

/// Requests: the policy decides, the loop carries out its effects, logs them, and replies.
extension EventLoop {
    mutating func serve(_ request: EPMDRequest, on connection: EPMDConnection) {
        if case .alive2(let alive) = request { self.endClosedRegistration(named: alive.name, for: connection) }
        let decision = EPMDRequestPolicy.decide(
            request,
            context: EPMDRequestPolicy.Context(
                connection: connection.id,
                fd: connection.fd,
                peer: connection.peer,
                relaxedCommandCheck: self.server.configuration.relaxedCommandCheck,
                portPrefix: self.portPrefix
            ),
            registry: self.server.registry
        )
        var exitReason: EPMDServer.ExitReason?
        for effect in decision.effects {
            switch effect {
            case .registered(let node):
                connection.registration = node
                self.registeredByID[connection.id] = connection.fd
                self.timed.remove(connection)  // a registration lives as long as its connection
                let creation = RegisteredNode.wireCreation(node.creation, extended: node.request.wantsExtendedReply)
                self.logger.info("registering '\(Self.printable(node.name)):\(creation)', port \(node.port)")
            case .registrationRefused(let name, let error):
                self.server.counters.registrationFailed(error)
                self.logger.warning("ALIVE2_REQ refused for '\(Self.printable(name))': \(error)")
            case .killRefused:
                self.logger.warning("Disallowed KILL_REQ, live nodes")
            case .exit(let reason):
                self.logger.notice("got KILL_REQ - terminates normal")
                exitReason = reason
            case .closeStoppedNode(let id, let name):
                self.logger.info("epmd connection stopped: '\(Self.printable(name))'")
                if let fd = self.registeredByID.removeValue(forKey: id), Int(fd) < self.slots.count,
                    let victim = self.slots[Int(fd)], victim.id == id
                {
                    victim.registration = nil  // already gone from the registry
                    self.close(victim, reason: .stopped)
                }
            }
        }
        if let exitReason {
            // Written at once, never delayed (two bytes always fit), then the loop ends.
            _ = try? System.send(connection.fd, decision.reply)
            connection.machine.replyStarted(keep: false)
            self.close(connection, reason: .answered)
            self.exitReason = exitReason
        } else {
            self.reply(decision.reply, on: connection, keep: decision.keep)
        }
        self.server.counters.served(decision.kind, decision.result, acceptedAt: connection.acceptedAt)
    }

    /// The re-registration race (erlang/otp#11083): a node that closes its registration connection and
    /// registers again at once can be served before its old connection's EOF is read, and would be
    /// refused with the name in use. So before the registry decides, the connection holding the name
    /// is asked (without reading) whether its peer has closed; if it has, it is closed first, exactly as
    /// its EOF would have been a moment later, and the new registration goes ahead.
    mutating func endClosedRegistration(named name: [UInt8], for connection: EPMDConnection) {
        guard let live = self.server.registry.lookup(name), live.connection != connection.id,
            let fd = self.registeredByID[live.connection], fd >= 0, Int(fd) < self.slots.count,
            let holder = self.slots[Int(fd)], holder.id == live.connection,
            System.peerHasClosed(fd)
        else { return }
        self.logger.info(
            "'\(Self.printable(name))' registers again: its old connection had closed (EOF not read yet)"
        )
        self.server.counters.closedRegistrationReplaced()
        self.close(holder, reason: .peerClosed)
    }
}
