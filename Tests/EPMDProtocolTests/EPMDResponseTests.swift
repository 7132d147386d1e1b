import EPMDProtocol
import Testing

/// The observed bytes of reference §15 (OTP 25.2.3's epmd on port 37469).
@Suite struct EPMDResponseTests {
    @Test("ALIVE2 replies in both forms")
    func alive2() {
        #expect(
            EPMDResponse.alive2(success: true, creation: 1_795_411_764, extended: true) == [
                0x76, 0, 0x6B, 0x03, 0xCF, 0x34,
            ]
        )
        #expect(EPMDResponse.alive2(success: true, creation: 1, extended: false) == [0x79, 0, 0, 1])
        #expect(EPMDResponse.alive2(success: false, creation: 1234, extended: true) == [0x76, 1, 0, 0, 0, 0x63])
        #expect(EPMDResponse.alive2(success: false, creation: 1234, extended: false) == [0x79, 1, 0, 0x63])
    }

    @Test("PORT2 replies")
    func port2() {
        #expect(EPMDResponse.port2NotFound == [0x77, 0x01])
        let foo = Alive2Request(port: 5555, nodeType: 77, highestVersion: 6, lowestVersion: 5, name: Array("foo".utf8))
        #expect(
            EPMDResponse.port2Found(foo) == [0x77, 0, 0x15, 0xB3, 0x4D, 0, 0, 6, 0, 5, 0, 3, 0x66, 0x6F, 0x6F, 0, 0]
        )
        var withExtra = foo
        withExtra.extra = [65, 66, 67, 0, 0]
        #expect(EPMDResponse.port2Found(withExtra).suffix(7) == [0, 5, 65, 66, 67, 0, 0])
    }

    @Test("NAMES and DUMP text")
    func text() {
        #expect(EPMDResponse.portPrefix(37469) == [0, 0, 0x92, 0x5D])
        var names: [UInt8] = []
        EPMDResponse.appendNamesLine(to: &names, name: Array("bar".utf8), port: 6666)
        EPMDResponse.appendNamesLine(to: &names, name: Array("foo".utf8), port: 5555)
        #expect(names == Array("name bar at port 6666\nname foo at port 5555\n".utf8))
        var dump: [UInt8] = []
        EPMDResponse.appendDumpActiveLine(to: &dump, name: Array("bar".utf8), port: 6666, fd: 6)
        EPMDResponse.appendDumpOldLine(to: &dump, name: Array("foo".utf8), port: 5555, fd: 5)
        #expect(
            dump
                == Array(
                    "active name     <bar> at port 6666, fd = 6\n\0old/unused name <foo>, port = 5555, fd = 5 \n\0".utf8
                )
        )
    }

    @Test("KILL and STOP replies")
    func killStop() {
        #expect(EPMDResponse.killAccepted == Array("OK".utf8))
        #expect(EPMDResponse.killRefused == Array("NO".utf8))
        #expect(EPMDResponse.stopStopped == Array("STOPPED".utf8))
        #expect(EPMDResponse.stopNotFound == Array("NOEXISTSTOPPED".utf8))
    }
}
