import EPMDApp
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite struct SystemdTests {
    @Test("LISTEN_FDS: count from 3, LISTEN_PID must be ours, malformed values are errors")
    func listenDescriptors() {
        #expect(Systemd.listenDescriptors(environment: [:]) == [])
        #expect(Systemd.listenDescriptors(environment: ["LISTEN_FDS": "2"]) == [3, 4])
        #expect(Systemd.listenDescriptors(environment: ["LISTEN_FDS": "2", "LISTEN_PID": "\(getpid())"]) == [3, 4])
        #expect(Systemd.listenDescriptors(environment: ["LISTEN_FDS": "2", "LISTEN_PID": "1"]) == [])
        #expect(Systemd.listenDescriptors(environment: ["LISTEN_FDS": "x"]) == nil)
    }

    @Test("notify sends one datagram to NOTIFY_SOCKET")
    func notify() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("notify-\(getpid()).sock").path
        unlink(path)
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        defer {
            close(fd)
            unlink(path)
        }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        try #require(bound == 0)
        #expect(Systemd.notify("READY=1", environment: ["NOTIFY_SOCKET": path]))
        var buffer = [UInt8](repeating: 0, count: 64)
        let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        #expect(count == 7)
        #expect(Array(buffer.prefix(7)) == Array("READY=1".utf8))
        #expect(!Systemd.notify("READY=1", environment: [:]))
    }

    @Test("notify reaches an abstract socket ('@name', no NUL terminator); a path too long sends nothing")
    func notifyAbstract() throws {
        let name = "epmd-gateway-notify-\(getpid())"
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        try #require(fd >= 0)
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let pathBytes = [0] + Array(name.utf8)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: pathBytes) }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + pathBytes.count)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        try #require(bound == 0)
        #expect(Systemd.notify("STATUS=x\nREADY=1", environment: ["NOTIFY_SOCKET": "@\(name)"]))
        var buffer = [UInt8](repeating: 0, count: 64)
        let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        #expect(count == 16)
        #expect(Array(buffer.prefix(max(count, 0))) == Array("STATUS=x\nREADY=1".utf8))
        let tooLong = "/tmp/" + String(repeating: "n", count: 200)
        #expect(!Systemd.notify("READY=1", environment: ["NOTIFY_SOCKET": tooLong]))
        #expect(!Systemd.notify("READY=1", environment: ["NOTIFY_SOCKET": "/nonexistent/notify"]))
    }

    @Test("the environment is read from environ: the same values getenv finds")
    func environment() throws {
        let environment = ProcessInfoEnvironment.current
        let path = try #require(getenv("PATH"))
        #expect(environment["PATH"] == String(cString: path))
        #expect(environment.count == ProcessInfo.processInfo.environment.count)
        for (name, value) in ProcessInfo.processInfo.environment {
            #expect(environment[name] == value, "\(name)")
        }
    }
}
