import Foundation
import GatewayTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

// The re-registration race (erlang/otp#11083, reference §5): a node closes its registration connection
// and registers again at once; the daemon serves the new ALIVE2 before it has read the old connection's
// EOF, and refuses the name as in use. The node then retries (OTP 24+, every 2 s) or gives up (older
// nodes, C nodes): a gap, or a node that is never registered again.

@Suite("The re-registration race (erlang/otp#11083)", .timeLimit(.minutes(1)))
struct ReRegistrationRaceTests {
    typealias W = WireClient

    @Test(
        "an ALIVE2 served before the old connection's EOF is read still registers: the old connection is probed first",
        .enabled(if: !TestBinary.isCEPMD, "C epmd refuses: it has no probe")
    )
    func registrationServedBeforeTheOldEOF() async throws {
        // (-d: the info lines are logged.) -delay_accept 2 makes the loop sleep two seconds after every wait, before it handles the events
        // the wait returned: the new ALIVE2 is then handled in a batch that was collected before the old
        // connection closed, so its EOF is not read yet. That is the race, made certain.
        try await GatewayProcess.with(arguments: ["-d", "-delay_accept", "2"]) { gateway in
            let first = try await W.register(port: gateway.port, name: "racer", nodePort: 5001)
            var firstOpen = true
            defer { if firstOpen { close(first.fd) } }
            #expect(first.reply.count == 6 && first.reply[0] == 118 && first.reply[1] == 0, "\(W.hex(first.reply))")
            let second = try WireClient.connect(port: gateway.port)
            defer { close(second) }
            // A NAMES answered on a later connection: the loop has accepted `second` by then.
            let before = try await W.namesReply(port: gateway.port)
            #expect(String(decoding: before.dropFirst(4), as: UTF8.self).contains("name racer at port 5001"))

            // The loop wakes for this request and sleeps before serving it: the old connection closes
            // in that sleep (a real sleep on a thread of its own, not a task that could wake late).
            let raw = W.frame(W.alive2(name: Array("racer".utf8), port: 5002))
            let (sent, holder) = (second, first.fd)
            let wasSent = try await Blocking.run {
                let ok = W.send(sent, raw)
                usleep(300_000)
                close(holder)
                return ok
            }
            firstOpen = false
            #expect(wasSent)

            let reply = try await W.read(second, count: 6, within: .seconds(10))
            #expect(reply[0] == 118, "\(W.hex(reply))")
            #expect(reply[1] == 0, "the name was refused as in use: \(W.hex(reply))")
            let names = try await W.namesReply(port: gateway.port)
            let lines = String(decoding: names.dropFirst(4), as: UTF8.self)
            #expect(lines == "name racer at port 5002\n", "\(lines)")
            #expect(gateway.log.contains("'racer' registers again: its old connection had closed"), "\(gateway.log)")
        }
    }

    @Test("a name whose holder is alive is still refused: the probe reads nothing and ends nothing")
    func liveHolderStillRefuses() async throws {
        try await GatewayProcess.with { gateway in
            let first = try await W.register(port: gateway.port, name: "holder", nodePort: 5003)
            #expect(first.reply[1] == 0, "\(W.hex(first.reply))")
            let second = try? await W.register(port: gateway.port, name: "holder", nodePort: 5004)
            if let second { close(second.fd) }
            #expect(second?.reply[0] == 118 && second?.reply[1] != 0, "a second live 'holder' was accepted")
            let names = try? await W.namesReply(port: gateway.port)
            #expect(names.map { String(decoding: $0.dropFirst(4), as: UTF8.self) } == "name holder at port 5003\n")
            // The holder's connection is untouched: closing it now unregisters the name.
            close(first.fd)
            let gone = try await Poll.until(timeout: .seconds(5)) {
                try await W.namesReply(port: gateway.port).count == 4
            }
            #expect(gone != nil, "closing the holder's connection did not unregister it")
        }
    }
}
