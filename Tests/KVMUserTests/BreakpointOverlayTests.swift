import Testing
import KVMUser

/// GuestMemory's breakpoint overlay: the int3 is there for the CPU and
/// invisible to every read through GuestMemory.
@Suite(.serialized) struct BreakpointOverlayTests {
    static let code: UInt64 = 0x40_0000
    static let stack: UInt64 = 0x60_0000

    func machine(_ bytes: [UInt8]) throws -> UserMachine { try testMachine(running: bytes) }

    // mov eax, 39; syscall; mov eax, 60; syscall
    static let program: [UInt8] = [0xb8, 39, 0, 0, 0, 0x0f, 0x05, 0xb8, 60, 0, 0, 0, 0x0f, 0x05]

    @Test func readsSeeOriginalsAndTheCPUSeesInt3() throws {
        let m = try machine(Self.program)
        let at = Self.code + 7
        try m.memory.insertPatch(at)
        #expect(try m.memory.read(Self.code, count: Self.program.count, access: .kernel) == Self.program)
        #expect(try m.memory.readValue(at, as: UInt8.self, access: .kernel) == 0xb8)
        #expect(try m.run() == .syscall)
        guard case .exception(let e) = try m.run() else { Issue.record("no #BP"); return }
        #expect(e.vector == GuestException.breakpoint)
        #expect(e.rip == at + 1)
        m.memory.removePatch(at)
        m.registers.rip = at
        #expect(try m.run() == .syscall)
        #expect(m.registers.rax == 60)
    }

    @Test func writesUpdateTheOriginalAndKeepTheInt3() throws {
        let m = try machine(Self.program)
        let at = Self.code + 7
        try m.memory.insertPatch(at)
        try m.memory.write(Self.code + 6, [0x05, 0x90, 0x90], access: .kernel)
        #expect(try m.memory.read(Self.code + 6, count: 3, access: .kernel) == [0x05, 0x90, 0x90])
        #expect(m.memory.patches[at] == 0x90)
        m.memory.removePatch(at)
        #expect(try m.memory.read(at, count: 1, access: .kernel) == [0x90])
        // Unmapping drops the patch; a new page there starts clean.
        try m.memory.insertPatch(at)
        m.memory.unmap(Self.code, pages: 1)
        #expect(m.memory.patches.isEmpty)
        try m.memory.map(Self.code, pages: 1, protection: .rx)
        #expect(try m.memory.read(at, count: 1, access: .kernel) == [0])
        #expect(throws: GuestMemoryFault.self) { try m.memory.insertPatch(0x7000_0000) }
    }
}
