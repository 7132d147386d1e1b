/// A decoded epmd request. Decoding checks structure only; registration rules live in the registry.
public enum EPMDRequest: Equatable, Sendable {
    case alive2(Alive2Request)
    /// PORT_PLEASE2_REQ with the validated name (trailing NUL stripped).
    case portPlease2(name: [UInt8])
    case names
    case dump
    case kill
    /// STOP_REQ with the name as a C string: the bytes before the first NUL.
    case stop(name: [UInt8])

    /// Reads the request code of a body without decoding the rest.
    /// - Parameter body: a complete request body.
    /// - Returns: the code, or `nil` for a code epmd does not serve.
    public static func code(of body: [UInt8]) -> EPMDMessageCode? {
        guard let first = body.first, let code = EPMDMessageCode(rawValue: first) else { return nil }
        switch code {
        case .alive2Request, .portPlease2Request, .namesRequest, .dumpRequest, .killRequest, .stopRequest:
            return code
        case .alive2Response, .alive2ExtendedResponse, .port2Response:
            return nil
        }
    }

    /// Decodes a complete request body (the bytes after the length prefix).
    /// - Parameter body: the request body, at least one byte.
    /// - Returns: the request.
    /// - Throws: `EPMDProtocolError` when C epmd would close the connection without a reply.
    public static func decode(_ body: [UInt8]) throws(EPMDProtocolError) -> EPMDRequest {
        guard let code = self.code(of: body) else { throw .unknownCode }
        switch code {
        case .alive2Request:
            return .alive2(try Alive2Request.decode(body))
        case .portPlease2Request:
            return .portPlease2(name: try self.decodeLookupName(body))
        case .namesRequest:
            return .names
        case .dumpRequest:
            return .dump
        case .killRequest:
            return .kill
        case .stopRequest:
            guard body.count > 1 else { throw .emptyName }
            let rest = body[1...]
            let end = rest.firstIndex(of: 0) ?? rest.endIndex
            return .stop(name: Array(rest[..<end]))
        case .alive2Response, .alive2ExtendedResponse, .port2Response:
            throw .unknownCode
        }
    }

    /// PORT2 name rules: one trailing NUL stripped; empty, an inner NUL, invalid UTF-8 or more than
    /// 255 code points refused. (C epmd also refuses exactly 255 code points, a counting quirk that
    /// makes such names unreachable; we accept them: see docs/compatibility.md.)
    private static func decodeLookupName(_ body: [UInt8]) throws(EPMDProtocolError) -> [UInt8] {
        var name = body[1...]
        if name.last == 0 { name = name.dropLast() }
        guard !name.isEmpty else { throw .emptyName }
        guard !name.contains(0) else { throw .nulInName }
        guard let count = UTF8Validation.codePointCount(name), count <= EPMDLimits.maxNameCodePoints else {
            throw .invalidName
        }
        return Array(name)
    }
}
