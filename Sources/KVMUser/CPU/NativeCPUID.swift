import Glibc

/// Whether the guest's own CPUID instruction, left unpatched, answers
/// exactly what `CPUIDTable.answer` does for a table. Where it does (VMX,
/// SVM, PVM on Intel: the hypervisor traps CPUID at CPL3 and KVM answers
/// from the KVM_SET_CPUID2 table), the kernel leaves cpuid unpatched and
/// the guest's cpuid costs an exit that KVM handles in the host kernel
/// instead of a #BP round trip to detrec: glibc's start-up runs about 40
/// of them per process (docs/benchmarks.md, processes). Where it does not
/// (PVM on AMD: the guest sees the host's CPUID), or where any answer
/// differs, every cpuid stays patched and detrec answers it.
///
/// The check runs a tiny guest on a machine with the table once per table
/// and detrec process: every leaf of the table, an index past each
/// indexed leaf, an index on each leaf that ignores it, and the ranges
/// past the highest basic, hypervisor, extended and Centaur leaves. The
/// answers depend only on the table and the vCPU's fixed state (CR4,
/// XCR0, the APIC base: nothing the guest can change at CPL3), so they
/// hold for every machine with this table. Record and replay may decide
/// differently (on different hosts) and the guest still sees the same
/// answers: that is what the check checks.
/// `DETREC_CPUID=patch` keeps cpuid patched (tests, measurements).
public enum NativeCPUID {
    public static let forcedPatch: Bool = getenv("DETREC_CPUID").map { String(cString: $0) == "patch" } ?? false

    /// True when the guest's CPUID may run unpatched on machines with `table`.
    public static func answersLikeTable(_ table: CPUIDTable, device: KVMDevice) -> Bool {
        if forcedPatch { return false }
        if let known = cache.verdicts.first(where: { $0.table == table && $0.device === device }) { return known.native }
        // Where the guest sees the host's own CPUID (`GuestCPUProbe`, measured
        // once anyway) nothing more is asked.
        let trapped = (try? GuestCPUProbe.measure(device: device))?.cpuidVirtualized ?? false
        let native = trapped && ((try? measure(table, device: device)) ?? false)
        cache.verdicts.append((table, device, native))
        return native
    }

    private final class Cache: @unchecked Sendable { var verdicts: [(table: CPUIDTable, device: KVMDevice, native: Bool)] = [] }
    private static let cache = Cache()

    /// The (function, index) pairs the check asks.
    static func inputs(_ table: CPUIDTable) -> [(UInt32, UInt32)] {
        var out: [(UInt32, UInt32)] = []
        for leaf in table.leaves {
            out.append((leaf.function, leaf.index))
            if leaf.flags & 1 != 0 {
                let highest = table.leaves.filter { $0.function == leaf.function }.map(\.index).max() ?? leaf.index
                if leaf.index == highest { out.append((leaf.function, highest &+ 1)) }
            } else {
                out.append((leaf.function, 0x5a5a))
            }
        }
        let maxBasic = table.leaves.first { $0.function == 0 }?.eax ?? 0
        let maxExtended = table.leaves.first { $0.function == 0x8000_0000 }?.eax ?? 0x8000_0000
        for f: UInt32 in [maxBasic &+ 1, 0x4000_0000, 0x4000_0001, 0x4000_0100, maxExtended &+ 1, 0x8000_0100, 0xc000_0000, 0xc000_0001, 0xffff_ffff] {
            out.append((f, 0))
            out.append((f, 1))
        }
        return out
    }

    static let codeAddress: UInt64 = 0x40_0000
    static let resultAddress: UInt64 = 0x80_0000
    static let stackTop: UInt64 = 0xa0_0000

    /// Runs the check; throws when the guest cannot run at all.
    static func measure(_ table: CPUIDTable, device: KVMDevice) throws(KVMError) -> Bool {
        let asked = Array(inputs(table).prefix(1024))
        var code: [UInt8] = [0x48, 0xbf] + le(resultAddress, 8)          // mov rdi, results
        for (function, index) in asked {
            code += [0xb8] + le(UInt64(function), 4)                     // mov eax, function
            code += [0xb9] + le(UInt64(index), 4)                        // mov ecx, index
            code += [0x0f, 0xa2]                                         // cpuid
            code += [0x89, 0x07, 0x89, 0x5f, 0x04, 0x89, 0x4f, 0x08, 0x89, 0x57, 0x0c]  // mov [rdi..rdi+12], eax ebx ecx edx
            code += [0x48, 0x83, 0xc7, 0x10]                             // add rdi, 16
        }
        code += [0x0f, 0x05]                                             // syscall
        // A machine like every process's, handed to the pool afterwards:
        // the first process reuses it (reset), so the check costs no set-up.
        let m = try MachinePool.take(device: device, cpuid: table)
        defer { MachinePool.give(m) }
        let resultBytes = asked.count * 16
        do throws(GuestMemoryFault) {
            try m.memory.map(codeAddress, pages: (code.count + 4095) / 4096, protection: .rx)
            try m.memory.write(codeAddress, code, access: .kernel)
            try m.memory.map(resultAddress, pages: (resultBytes + 4095) / 4096, protection: .rw)
            try m.memory.map(stackTop - 0x1000, pages: 1, protection: .rw)
        } catch {
            throw .unexpectedExit("the CPUID check's guest could not be mapped: \(error)")
        }
        m.start(entry: codeAddress, stack: stackTop)
        while true {
            let exit = try m.run()
            if exit == .interrupted { continue }
            guard exit == .syscall else { return false }
            break
        }
        guard let got = try? m.memory.read(resultAddress, count: resultBytes, access: .kernel) else { return false }
        for (i, (function, index)) in asked.enumerated() {
            let want = table.answer(function: function, index: index)
            let at = i * 16
            func word(_ k: Int) -> UInt32 {
                (0..<4).reduce(UInt32(0)) { $0 | UInt32(got[at + 4 * k + $1]) << (8 * UInt32($1)) }
            }
            guard word(0) == want.eax, word(1) == want.ebx, word(2) == want.ecx, word(3) == want.edx else { return false }
        }
        return true
    }

    private static func le(_ v: UInt64, _ bytes: Int) -> [UInt8] {
        (0..<bytes).map { UInt8(truncatingIfNeeded: v >> (8 * UInt64($0))) }
    }
}
