import EPMDPosix
import EPMDProtocol
import EPMDRegistry
import EPMDServer

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Why a takeover did not happen (the successor exits 1 with it; the running gateway serves on).
public struct HandoverError: Error, Equatable, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { self.message }
}

/// The successor's side of a hand-over (``HandoverProtocol``): connects to the running gateway,
/// greets it, receives everything, and, once its own fronts serve, acknowledges.
public final class HandoverClient: Sendable {
    private let fd: Int32
    /// The hand-over socket it connected to.
    public let path: String

    private init(fd: Int32, path: String) {
        self.fd = fd
        self.path = path
    }

    deinit { System.close(self.fd) }

    /// Connects to the hand-over socket at `path`.
    public static func connect(path: String) throws(HandoverError) -> HandoverClient {
        let fd: Int32
        do {
            fd = try UnixSocket.connect(path: path)
            try UnixSocket.setBlocking(fd, timeoutMilliseconds: HandoverProtocol.timeoutMilliseconds * 2)
        } catch {
            throw HandoverError("no gateway to take over from at \(path): \(error)")
        }
        return HandoverClient(fd: fd, path: path)
    }

    /// Sends the hello and receives everything the running gateway hands over.
    /// - Parameter hello: this binary's hello (tests send others).
    /// - Returns: the restoration to build the gateway from, and the predecessor's pid.
    /// - Throws: `HandoverError` with the refusal's text, or why the transfer failed (after a `nack`
    ///   to the predecessor, which then serves on); every received descriptor is closed then.
    public func receive(
        hello: HandoverProtocol.Hello = .init()
    ) throws(HandoverError) -> (
        restoration: Restoration, predecessor: Int32
    ) {
        do {
            try HandoverProtocol.send(.hello, hello.payload, on: self.fd)
        } catch {
            throw HandoverError("\(error)")
        }
        let first: (type: HandoverProtocol.FrameType, payload: [UInt8], descriptors: [Int32])
        do {
            first = try HandoverProtocol.receive(on: self.fd)
        } catch {
            throw HandoverError("the running gateway answered nothing: \(error)")
        }
        switch first.type {
        case .refuse:
            throw HandoverError("the running gateway refused: \(HandoverProtocol.text(first.payload))")
        case .state:
            break
        default:
            throw self.abandon("expected the state, got a \(first.type) frame", descriptors: [])
        }
        let state: HandoverProtocol.State
        do {
            state = try HandoverProtocol.State(payload: first.payload)
        } catch {
            throw self.abandon("cannot decode the state: \(error)", descriptors: [])
        }
        var descriptors: [Int32] = []
        let expected = state.descriptorCount
        while descriptors.count < expected {
            let frame: (type: HandoverProtocol.FrameType, payload: [UInt8], descriptors: [Int32])
            do {
                frame = try HandoverProtocol.receive(on: self.fd, descriptorCapacity: expected - descriptors.count)
            } catch {
                throw self.abandon("\(error)", descriptors: descriptors)
            }
            descriptors += frame.descriptors
            var reader = ByteReader(frame.payload)
            guard frame.type == .descriptors, let count = try? reader.u32(), Int(count) == frame.descriptors.count,
                !frame.descriptors.isEmpty
            else {
                throw self.abandon("descriptors lost in a \(frame.type) frame", descriptors: descriptors)
            }
        }
        let registry: NodeRegistry.State
        do {
            registry = try NodeRegistry.State(decoding: state.registry)
        } catch {
            throw self.abandon("cannot decode the registry: \(error)", descriptors: descriptors)
        }
        var next = 0
        func take() -> Int32 {
            defer { next += 1 }
            return descriptors[next]
        }
        let listeners = (0..<state.epmdListeners).map { _ in take() }
        let http = state.hasHTTPListener ? take() : nil
        let handover = state.hasHandoverListener ? take() : nil
        let journal = state.hasJournal ? take() : nil
        var connections = state.connections
        for index in connections.indices { connections[index].fd = take() }
        var restoration = Restoration(
            registry: registry,
            epmdListeners: listeners,
            httpListener: http,
            connections: connections,
            method: .handover
        )
        restoration.handoverListener = handover
        restoration.stateJournal = journal
        return (restoration, state.pid)
    }

    private func abandon(_ reason: String, descriptors: [Int32]) -> HandoverError {
        for descriptor in descriptors { System.close(descriptor) }
        self.refuse(reason)
        return HandoverError("hand-over failed: \(reason)")
    }

    /// Tells the running gateway the hand-over cannot be completed: it serves on.
    public func refuse(_ reason: String) {
        try? HandoverProtocol.send(.nack, Array(reason.utf8), on: self.fd)
    }

    /// Tells the running gateway this process serves now, and waits until it lets go.
    /// - Returns: false when it never answered (it timed out and serves on: this process must exit
    ///   at once, without touching the sockets it shares).
    public func acknowledge() -> Bool {
        var pid = ByteWriter()
        pid.i32(ProcessControl.processID)
        do {
            try HandoverProtocol.send(.ack, pid.bytes, on: self.fd)
            let answer = try HandoverProtocol.receive(on: self.fd)
            return answer.type == .done
        } catch {
            return false
        }
    }
}
