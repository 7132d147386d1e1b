import EPMDProtocol
import EPMDRegistry
import Testing

@Suite struct NodeRegistryTests {
    @Test("concurrent registrations and unregistrations keep the table consistent")
    func concurrent() async throws {
        let registry = NodeRegistry(clock: { 1_000_000 })
        await withTaskGroup(of: Void.self) { group in
            for worker in 0..<8 {
                group.addTask {
                    for index in 0..<500 {
                        let id = ConnectionID(UInt64(worker * 1000 + index))
                        let request = Alive2Request(port: UInt16(index), name: Array("w\(worker)-\(index)".utf8))
                        _ = registry.register(request, connection: id, fd: 1, peer: "")
                        if index.isMultiple(of: 2) { registry.unregister(connection: id) }
                    }
                }
            }
        }
        #expect(registry.count == 8 * 250)
        #expect(registry.snapshot().count == 8 * 250)
        let lines = registry.namesText().split(separator: UInt8(ascii: "\n"))
        #expect(lines.count == 8 * 250)
    }

    @Test("register reports refusals as failures")
    func refusal() {
        let registry = NodeRegistry()
        let request = Alive2Request(port: 1, name: Array("dup".utf8))
        #expect((try? registry.register(request, connection: ConnectionID(1), fd: 1, peer: "").get()) != nil)
        switch registry.register(request, connection: ConnectionID(2), fd: 1, peer: "") {
        case .success: Issue.record("duplicate accepted")
        case .failure(let error): #expect(error == .nameInUse)
        }
        #expect(registry.lookup(Array("dup".utf8))?.connection == ConnectionID(1))
        #expect(!registry.isEmpty)
    }
}
