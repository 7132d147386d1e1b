import EPMDProtocol

/// A live registration: what the node sent, plus what the registry knows about it.
public struct RegisteredNode: Equatable, Sendable {
    /// The node's ALIVE2 fields, exactly as sent.
    public var request: Alive2Request
    /// The creation counter (`cr_counter`), 4...2^32−1.
    public var creation: UInt32
    /// The connection the registration lives on.
    public var connection: ConnectionID
    /// The connection's descriptor, shown by DUMP as C epmd does.
    public var fd: Int32
    /// Wall-clock registration time, seconds since 1970.
    public var registeredAt: Double
    /// The peer address, printable.
    public var peer: String
    /// Order of registration; larger is newer.
    public var sequence: UInt64

    public init(
        request: Alive2Request,
        creation: UInt32,
        connection: ConnectionID,
        fd: Int32,
        registeredAt: Double,
        peer: String,
        sequence: UInt64
    ) {
        self.request = request
        self.creation = creation
        self.connection = connection
        self.fd = fd
        self.registeredAt = registeredAt
        self.peer = peer
        self.sequence = sequence
    }

    public var name: [UInt8] { self.request.name }
    public var port: UInt16 { self.request.port }

    /// The creation as the node asked for it: 32-bit for HighestVersion ≥ 6, else 1...3.
    public static func wireCreation(_ counter: UInt32, extended: Bool) -> UInt32 {
        extended ? counter : counter % 3 + 1
    }
}

/// An unregistered name remembered for its creation counter (C epmd's "unreg" list).
public struct UnregisteredNode: Equatable, Sendable {
    public var name: [UInt8]
    public var port: UInt16
    public var fd: Int32
    public var creation: UInt32
    /// When it unregistered, seconds since 1970.
    public var unregisteredAt: Double

    public init(name: [UInt8], port: UInt16, fd: Int32, creation: UInt32, unregisteredAt: Double) {
        self.name = name
        self.port = port
        self.fd = fd
        self.creation = creation
        self.unregisteredAt = unregisteredAt
    }
}
