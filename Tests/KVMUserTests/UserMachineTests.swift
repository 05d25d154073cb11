import Testing
@testable import KVMUser

/// A machine about to run `bytes` at 0x400000 with a one-page stack below 0x600000.
func testMachine(running bytes: [UInt8], code: UInt64 = 0x40_0000, stack: UInt64 = 0x60_0000) throws -> UserMachine {
    let device = try KVMDevice()
    let m = try UserMachine(device: device, cpuid: try CPUIDTable.forRecording(device: device))
    try m.memory.map(code, pages: 1, protection: .rx)
    try m.memory.write(code, bytes, access: .kernel)
    try m.memory.map(stack - 0x1000, pages: 1, protection: .rw)
    m.start(entry: code, stack: stack)
    return m
}

/// Runs hand-assembled code on a real vCPU: the SYSCALL and exception paths,
/// and page protection changes made from the host while the guest runs.
@Suite(.serialized) struct UserMachineTests {
    static let code: UInt64 = 0x40_0000
    static let data: UInt64 = 0x50_0000
    static let stack: UInt64 = 0x60_0000

    func machine(_ bytes: [UInt8]) throws -> UserMachine { try testMachine(running: bytes) }

    static let movEAX39: [UInt8] = [0xb8, 39, 0, 0, 0]
    static let syscall: [UInt8] = [0x0f, 0x05]
    static let movRDIRAX: [UInt8] = [0x48, 0x89, 0xc7]
    static let movEAX60: [UInt8] = [0xb8, 60, 0, 0, 0]
    /// mov byte [0x500000], 0x2a
    static let storeData: [UInt8] = [0xc6, 0x04, 0x25, 0x00, 0x00, 0x50, 0x00, 0x2a]

    @Test func syscallsExitWithArgumentsAndResume() throws {
        let m = try machine(Self.movEAX39 + Self.syscall + Self.movRDIRAX + Self.movEAX60 + Self.syscall)
        #expect(try m.run() == .syscall)
        #expect(m.registers.rax == 39)
        #expect(m.registers.rip == Self.code + 7)
        #expect(m.registers.rcx == Self.code + 7)
        m.registers.rax = 1234
        #expect(try m.run() == .syscall)
        #expect(m.registers.rax == 60)
        #expect(m.registers.rdi == 1234)
        #expect(m.registers.rsp == Self.stack)
    }

    @Test func pageFaultOnUnmappedReportsAddress() throws {
        let m = try machine(Self.storeData + Self.movEAX60 + Self.syscall)
        guard case .exception(let e) = try m.run() else { Issue.record("no exception"); return }
        #expect(e.vector == GuestException.pageFault)
        #expect(e.address == Self.data)
        #expect(e.rip == Self.code)
        #expect(e.errorCode.map { $0 & 0x6 } == 0x6)   // write, user
        // Map it, and the same instruction completes.
        try m.memory.map(Self.data, pages: 1, protection: .rw)
        #expect(try m.run() == .syscall)
        #expect(try m.memory.readValue(Self.data, as: UInt8.self) == 0x2a)
    }

    @Test func narrowingProtectionTakesEffectImmediately() throws {
        // store; syscall; store; syscall: the host makes the page read-only in between.
        let m = try machine(Self.storeData + Self.syscall + Self.storeData + Self.syscall)
        try m.memory.map(Self.data, pages: 1, protection: .rw)
        #expect(try m.run() == .syscall)
        m.memory.protect(Self.data, pages: 1, protection: .read)
        guard case .exception(let e) = try m.run() else { Issue.record("write to a read-only page did not fault"); return }
        #expect(e.vector == GuestException.pageFault)
        #expect(e.errorCode.map { $0 & 0x1 } == 0x1)   // protection violation
        m.memory.unmap(Self.data, pages: 1)
        guard case .exception(let e2) = try m.run() else { Issue.record("unmapped page did not fault"); return }
        #expect(e2.errorCode.map { $0 & 0x1 } == 0)
    }

    @Test func invalidOpcodeAndBreakpoint() throws {
        let m = try machine([0xcc, 0x0f, 0x0b])
        guard case .exception(let bp) = try m.run() else { Issue.record("no #BP"); return }
        #expect(bp.vector == GuestException.breakpoint)
        #expect(bp.rip == Self.code + 1)     // int3 is a trap: RIP is past it
        guard case .exception(let ud) = try m.run() else { Issue.record("no #UD"); return }
        #expect(ud.vector == GuestException.invalidOpcode)
        #expect(ud.rip == Self.code + 1)
    }

    @Test func cpuidHidesRDRANDAndRDSEED() throws {
        let device = try KVMDevice()
        let table = try CPUIDTable.forRecording(device: device)
        let leaf1 = try #require(table.leaves.first { $0.function == 1 })
        #expect(leaf1.ecx & (1 << 30) == 0)
        if let leaf7 = table.leaves.first(where: { $0.function == 7 && $0.index == 0 }) {
            #expect(leaf7.ebx & (1 << 18) == 0)
        }
        #expect(try table.incompatibility(with: device) == nil)
        // cpuid with eax=1 in the guest returns our table's ECX.
        // mov eax,1; xor ecx,ecx; cpuid; mov eax,60; syscall
        let m = try machine([0xb8, 1, 0, 0, 0, 0x31, 0xc9, 0x0f, 0xa2] + Self.movEAX60 + Self.syscall)
        #expect(try m.run() == .syscall)
        #expect(m.registers.rcx & (1 << 30) == 0)
    }
}
