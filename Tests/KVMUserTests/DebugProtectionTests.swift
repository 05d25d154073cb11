import Testing
@testable import KVMUser

/// Page protection a debugger adds for watchpoints: the vCPU faults, while
/// the host still sees the guest's own protection.
@Suite(.serialized) struct DebugProtectionTests {
    static let code: UInt64 = 0x40_0000
    static let data: UInt64 = 0x50_0000
    /// mov byte [0x500000], 0x2a
    static let storeData: [UInt8] = [0xc6, 0x04, 0x25, 0x00, 0x00, 0x50, 0x00, 0x2a]
    /// mov al, [0x500000]
    static let loadData: [UInt8] = [0x8a, 0x04, 0x25, 0x00, 0x00, 0x50, 0x00]
    static let syscall: [UInt8] = [0x0f, 0x05]

    @Test func writesFaultButTheGuestsRightsStay() throws {
        let m = try testMachine(running: Self.loadData + Self.syscall + Self.storeData + Self.syscall)
        try m.memory.map(Self.data, pages: 1, protection: .rw)
        m.memory.setDebugProtection([Self.data: .writes])
        #expect(m.memory.isDebugProtected(Self.data))
        // The host sees the guest's protection; a write with the guest's rights goes through.
        #expect(m.memory.protection(at: Self.data) == .rw)
        try m.memory.write(Self.data, [7], access: .user)
        // A read does not fault; the write does, at the store.
        #expect(try m.run() == .syscall)
        #expect(m.registers.rax & 0xff == 7)
        guard case .exception(let e) = try m.run() else { Issue.record("a write to a write-protected page did not fault"); return }
        #expect(e.vector == GuestException.pageFault && e.address == Self.data && e.rip == Self.code + 9)
        #expect(e.errorCode.map { $0 & 0x2 } == 0x2)
        // Lifted, the same instruction completes; protected again, it is still watched.
        m.memory.liftDebugProtection(Self.data)
        #expect(!m.memory.isDebugProtected(Self.data))
        #expect(try m.run() == .syscall)
        #expect(try m.memory.readValue(Self.data, as: UInt8.self) == 0x2a)
        m.memory.rearmDebugProtection()
        #expect(m.memory.isDebugProtected(Self.data))
        m.memory.setDebugProtection([:])
        #expect(!m.memory.isDebugProtected(Self.data) && m.memory.protection(at: Self.data) == .rw)
    }

    @Test func readsFaultWhenEveryAccessIsWatched() throws {
        let m = try testMachine(running: Self.loadData + Self.syscall)
        try m.memory.map(Self.data, pages: 1, protection: .rw)
        m.memory.setDebugProtection([Self.data: .accesses])
        guard case .exception(let e) = try m.run() else { Issue.record("a read of a protected page did not fault"); return }
        #expect(e.vector == GuestException.pageFault && e.address == Self.data)
        #expect(e.errorCode.map { $0 & 0x3 } == 0)   // not present, a read
        #expect(m.memory.protection(at: Self.data) == .rw)
        #expect(try m.memory.read(Self.data, count: 1, access: .user) == [0])
    }

    @Test func aMappingChangeKeepsTheProtectionAndTheGuestsOwn() throws {
        let m = try testMachine(running: Self.syscall)
        try m.memory.map(Self.data, pages: 1, protection: .rw)
        m.memory.setDebugProtection([Self.data: .writes])
        // mprotect by the guest: its new protection is the truth, the page still watched.
        m.memory.protect(Self.data, pages: 1, protection: .read)
        #expect(m.memory.protection(at: Self.data) == .read)
        #expect(!m.memory.isDebugProtected(Self.data))   // nothing to hide: it is read-only already
        m.memory.protect(Self.data, pages: 1, protection: .rw)
        #expect(m.memory.protection(at: Self.data) == .rw && m.memory.isDebugProtected(Self.data))
        // A fresh mapping over it is protected too; a guest PROT_NONE page stays its own.
        try m.memory.map(Self.data, pages: 1, protection: .rw)
        #expect(m.memory.isDebugProtected(Self.data))
        m.memory.setDebugProtection([Self.data: .accesses])
        m.memory.protect(Self.data, pages: 1, protection: .none)
        #expect(m.memory.protection(at: Self.data) == PageProtection.none)
        #expect(throws: GuestMemoryFault.self) { try m.memory.read(Self.data, count: 1, access: .user) }
    }
}
