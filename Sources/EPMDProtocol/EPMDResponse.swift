/// Encoders for every reply epmd sends. Text replies are byte-exact with C epmd.
public enum EPMDResponse {
    /// ALIVE2 reply: `v result creation:u32` when the node's HighestVersion ≥ 6, else `y result creation:u16`.
    /// - Parameters:
    ///   - success: whether the registration succeeded.
    ///   - creation: the creation to send (already reduced to 1...3 for old nodes).
    ///   - extended: whether to use the 6-byte form.
    public static func alive2(success: Bool, creation: UInt32, extended: Bool) -> [UInt8] {
        let value = success ? creation : EPMDLimits.failedCreation
        var reply: [UInt8] = []
        reply.reserveCapacity(6)
        if extended {
            reply.append(EPMDMessageCode.alive2ExtendedResponse.rawValue)
            reply.append(success ? 0 : 1)
            reply.appendUInt32(value)
        } else {
            reply.append(EPMDMessageCode.alive2Response.rawValue)
            reply.append(success ? 0 : 1)
            reply.appendUInt16(UInt16(truncatingIfNeeded: value))
        }
        return reply
    }

    /// PORT2 reply for an unknown name: `w 1`.
    public static let port2NotFound: [UInt8] = [EPMDMessageCode.port2Response.rawValue, 1]

    /// PORT2 reply for a registered node.
    public static func port2Found(_ node: Alive2Request) -> [UInt8] {
        var reply: [UInt8] = [EPMDMessageCode.port2Response.rawValue, 0]
        node.appendFields(to: &reply)
        return reply
    }

    /// The 4-byte prefix of NAMES and DUMP replies: the configured epmd port.
    public static func portPrefix(_ port: UInt16) -> [UInt8] {
        var prefix: [UInt8] = []
        prefix.appendUInt32(UInt32(port))
        return prefix
    }

    /// One NAMES line: `name <name> at port <port>\n`.
    public static func appendNamesLine(to text: inout [UInt8], name: [UInt8], port: UInt16) {
        text += Array("name ".utf8)
        text += name
        text += Array(" at port ".utf8)
        text.appendDecimal(Int(port))
        text.append(UInt8(ascii: "\n"))
    }

    /// One DUMP line for a registered node: `active name     <name> at port P, fd = F\n\0`.
    public static func appendDumpActiveLine(to text: inout [UInt8], name: [UInt8], port: UInt16, fd: Int32) {
        text += Array("active name     <".utf8)
        text += name
        text += Array("> at port ".utf8)
        text.appendDecimal(Int(port))
        text += Array(", fd = ".utf8)
        text.appendDecimal(Int(fd))
        text += [UInt8(ascii: "\n"), 0]
    }

    /// One DUMP line for an old name: `old/unused name <name>, port = P, fd = F \n\0`.
    public static func appendDumpOldLine(to text: inout [UInt8], name: [UInt8], port: UInt16, fd: Int32) {
        text += Array("old/unused name <".utf8)
        text += name
        text += Array(">, port = ".utf8)
        text.appendDecimal(Int(port))
        text += Array(", fd = ".utf8)
        text.appendDecimal(Int(fd))
        text += [UInt8(ascii: " "), UInt8(ascii: "\n"), 0]
    }

    /// KILL replies.
    public static let killAccepted: [UInt8] = Array("OK".utf8)
    public static let killRefused: [UInt8] = Array("NO".utf8)
    /// STOP replies: a found name gets `STOPPED`; an unknown one `NOEXIST` immediately followed by `STOPPED`.
    public static let stopStopped: [UInt8] = Array("STOPPED".utf8)
    public static let stopNotFound: [UInt8] = Array("NOEXISTSTOPPED".utf8)
}
