import EPMDPosix
import EPMDProtocol
import EPMDRegistry
import Logging

/// Requests: the policy decides, the loop carries out its effects, logs them, and replies.
extension EventLoop {
    mutating func serve(_ request: EPMDRequest, on connection: EPMDConnection) {
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
}
