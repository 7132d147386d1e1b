import EPMDProtocol
import EPMDRegistry
import EPMDServer
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The loop's reasons are closed sets: metrics make one series per case from `allCases` and `label`.
@Suite struct ReasonTests {
    @Test("malformed reasons: every protocol error, then the loop's own refusals; labels distinct")
    func malformed() {
        let labels = EPMDMalformedReason.allCases.map(\.label)
        #expect(labels == EPMDProtocolError.allCases.map(\.label) + ["not_local", "stop_not_allowed", "stray_data"])
        #expect(Set(labels).count == labels.count)
    }

    @Test("refusal reasons and their errno values")
    func refusals() {
        #expect(
            EPMDRefusalReason.allCases.map(\.label) == [
                "emfile", "enfile", "no_memory", "accept_error", "max_connections",
            ]
        )
        #expect(EPMDRefusalReason(errno: EMFILE) == .emfile)
        #expect(EPMDRefusalReason(errno: ENFILE) == .enfile)
        #expect(EPMDRefusalReason(errno: ENOBUFS) == .noMemory)
        #expect(EPMDRefusalReason(errno: ENOMEM) == .noMemory)
        #expect(EPMDRefusalReason(errno: ECONNABORTED) == .acceptError)
    }

    @Test("eviction reasons: the cap and the per-address cap, with distinct labels")
    func evictions() {
        #expect(EPMDEvictionReason.allCases.map(\.label) == ["max_connections", "per_address"])
    }

    @Test("close reasons: each maps to its malformed reason (bad input only) and its unregister reason")
    func closes() {
        let all = CloseReason.allCases
        #expect(Set(all).count == all.count)
        #expect(all.count == EPMDProtocolError.allCases.count + CloseReason.localOnlyCodes.count + 9)
        for reason in all {
            switch reason {
            case .malformed(let error): #expect(reason.malformedReason == .protocolError(error))
            case .notLocal: #expect(reason.malformedReason == .notLocal)
            case .stopNotAllowed: #expect(reason.malformedReason == .stopNotAllowed)
            case .strayData: #expect(reason.malformedReason == .strayData && reason.unregisterReason == .strayData)
            default: #expect(reason.malformedReason == nil)
            }
        }
        #expect(CloseReason.stopped.unregisterReason == .stop)
        #expect(CloseReason.shutdown.unregisterReason == .shutdown)
        #expect(CloseReason.timeout.unregisterReason == .error)
        #expect(CloseReason.peerClosed.unregisterReason == .closed)
        #expect(CloseReason.evicted.unregisterReason == .closed && CloseReason.evicted.malformedReason == nil)
        #expect(
            Set(all.map(\.label)) == [
                "malformed", "not_local", "stop_not_allowed", "answered", "peer_closed", "io_error", "stray_data",
                "timeout", "stopped", "shutdown", "evicted",
            ]
        )
        // epmd_connections_closed_total's series: each label once, each reason's index naming its label.
        #expect(Set(CloseReason.labels) == Set(all.map(\.label)) && Set(CloseReason.labels).count == 11)
        for reason in all { #expect(CloseReason.labels[reason.labelIndex] == reason.label, "\(reason)") }
    }

    @Test("registration failure reasons are a closed set with distinct labels")
    func registrationFailures() {
        #expect(
            NodeRegistryError.allCases.map(\.label) == [
                "name_in_use", "name_too_long", "invalid_encoding", "extra_too_long",
            ]
        )
    }
}
