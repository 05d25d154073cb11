/// What a guest's CPUID and XGETBV really return on this host, measured
/// with a tiny guest, because hypervisors differ: under PVM on an AMD host
/// neither is virtualized at CPL3 (the guest sees the host's own CPUID and
/// runs with the host's XCR0, whatever KVM_SET_CPUID2 and KVM_SET_XCRS
/// said), while VMX and SVM honour both.
public struct GuestCPUProbe: Sendable, Equatable {
    /// CPUID in the guest returns the table detrec installed.
    public var cpuidVirtualized: Bool
    /// XGETBV in the guest returns the XCR0 detrec set.
    public var xcr0Enforced: Bool
    /// The XCR0 the guest's XSAVE instructions actually use.
    public var effectiveXCR0: UInt64

    /// The host's answer, measured once per detrec process.
    public static func measure(device: KVMDevice) throws(KVMError) -> GuestCPUProbe {
        if let cached = cache.value { return cached }
        let result = try run(device: device)
        cache.value = result
        return result
    }

    private final class Cache: @unchecked Sendable { var value: GuestCPUProbe? }
    private static let cache = Cache()

    static let marker: UInt32 = 0x7274_6564       // "detr": no CPU's vendor string
    static let codeAddress: UInt64 = 0x40_0000
    static let stackTop: UInt64 = 0x60_0000

    private static func run(device: KVMDevice) throws(KVMError) -> GuestCPUProbe {
        // The host's own model, with a marked vendor and only x87|SSE enabled.
        var table = CPUIDTable.hostModel(try device.supportedCPUID().map(CPUIDLeaf.init))
        table.xcr0 = 0x3
        for i in table.leaves.indices {
            if table.leaves[i].function == 0 && table.leaves[i].index == 0 { table.leaves[i].ebx = marker }
            if table.leaves[i].function == 0xd && table.leaves[i].index == 0 { table.leaves[i].eax = 0x3; table.leaves[i].edx = 0 }
        }
        let m = try UserMachine(device: device, cpuid: table, memorySize: 16 << 20)
        let code: [UInt8] = [
            0x31, 0xc9,                 // xor ecx, ecx
            0x0f, 0x01, 0xd0,           // xgetbv
            0x49, 0x89, 0xc0,           // mov r8, rax
            0x49, 0x89, 0xd1,           // mov r9, rdx
            0x31, 0xc0,                 // xor eax, eax
            0x31, 0xc9,                 // xor ecx, ecx
            0x0f, 0xa2,                 // cpuid
            0x0f, 0x05,                 // syscall
        ]
        do throws(GuestMemoryFault) {
            try m.memory.map(codeAddress, pages: 1, protection: .rx)
            try m.memory.write(codeAddress, code, access: .kernel)
            try m.memory.map(stackTop - 0x1000, pages: 1, protection: .rw)
        } catch {
            throw .unexpectedExit("the CPU probe's guest could not be mapped: \(error)")
        }
        m.start(entry: codeAddress, stack: stackTop)
        while true {
            let exit = try m.run()
            if exit == .interrupted { continue }
            guard exit == .syscall else { throw .unexpectedExit("the CPU probe's guest stopped with \(exit)") }
            break
        }
        let r = m.registers
        let xcr0 = (r.r8 & 0xffff_ffff) | (r.r9 & 0xffff_ffff) << 32
        return GuestCPUProbe(cpuidVirtualized: UInt32(truncatingIfNeeded: r.rbx) == marker,
                             xcr0Enforced: xcr0 == 0x3, effectiveXCR0: xcr0)
    }
}
