import CKVM

/// What this host can run for a guest: the leaves against which a CPU
/// model's features are checked, when recording and before a replay.
///
/// Instruction-set bits come from the CPUID instruction in detrec's own
/// process: the guest's user code runs on the same hardware, and KVM's
/// supported table is no guide to it (under PVM it omits SSE3, AVX, AVX2
/// and more that the hardware runs, measured on an AMD EPYC host). XSAVE
/// components and their layout come from KVM's table: they are what KVM
/// lets the guest's XCR0 enable.
public enum HostCPU {
    /// The leaves whose registers hold instruction-set feature bits.
    static let featureLeaves: [(UInt32, UInt32)] = [(1, 0), (7, 0), (7, 1), (0xd, 1), (0x8000_0001, 0), (0x8000_0008, 0)]

    public static func capabilities(device: KVMDevice) throws(KVMError) -> [CPUIDLeaf] {
        capabilities(supported: try device.supportedCPUID().map(CPUIDLeaf.init))
    }

    static func capabilities(supported: [CPUIDLeaf]) -> [CPUIDLeaf] {
        var leaves = supported
        let maxBasic = native(0, 0).eax, maxExtended = native(0x8000_0000, 0).eax
        for (function, index) in featureLeaves {
            let inRange = function >= 0x8000_0000 ? function <= maxExtended : function <= maxBasic
            let hw = inRange ? native(function, index) : CPUIDLeaf(function: function, index: index, flags: 0, eax: 0, ebx: 0, ecx: 0, edx: 0)
            if let i = leaves.firstIndex(where: { $0.function == function && $0.index == index }) {
                leaves[i].eax = hw.eax; leaves[i].ebx = hw.ebx; leaves[i].ecx = hw.ecx; leaves[i].edx = hw.edx
            } else {
                leaves.append(hw)
            }
        }
        return leaves
    }

    /// How far into an XSAVE area the guest's XSAVE writes on this host
    /// when the hypervisor runs it with `xcr0` (user components only: PKRU
    /// and AMX lie beyond, and no common save-area code asks for them).
    static func xsaveExtent(xcr0: UInt64) -> UInt32 {
        var extent: UInt32 = 576
        for bit in 2..<8 where (xcr0 >> UInt64(bit)) & 1 != 0 {
            let c = native(0xd, UInt32(bit))
            extent = max(extent, c.ebx &+ c.eax)
        }
        return extent
    }

    static func native(_ function: UInt32, _ index: UInt32) -> CPUIDLeaf {
        var out: (UInt32, UInt32, UInt32, UInt32) = (0, 0, 0, 0)
        withUnsafeMutablePointer(to: &out) { p in
            p.withMemoryRebound(to: UInt32.self, capacity: 4) { ckvm_native_cpuid(function, index, $0) }
        }
        return CPUIDLeaf(function: function, index: index, flags: 0, eax: out.0, ebx: out.1, ecx: out.2, edx: out.3)
    }
}
