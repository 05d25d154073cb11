import CKVM

/// One CPUID leaf as detrec presents it to the guest.
public struct CPUIDLeaf: Sendable, Equatable {
    public var function: UInt32
    public var index: UInt32
    public var flags: UInt32
    public var eax: UInt32, ebx: UInt32, ecx: UInt32, edx: UInt32

    public init(function: UInt32, index: UInt32, flags: UInt32, eax: UInt32, ebx: UInt32, ecx: UInt32, edx: UInt32) {
        self.function = function; self.index = index; self.flags = flags
        self.eax = eax; self.ebx = ebx; self.ecx = ecx; self.edx = edx
    }

    init(_ e: kvm_cpuid_entry2) {
        self.init(function: e.function, index: e.index, flags: e.flags, eax: e.eax, ebx: e.ebx, ecx: e.ecx, edx: e.edx)
    }

    var kvm: kvm_cpuid_entry2 {
        var e = kvm_cpuid_entry2()
        e.function = function; e.index = index; e.flags = flags
        e.eax = eax; e.ebx = ebx; e.ecx = ecx; e.edx = edx
        return e
    }
}

/// The CPUID table and XCR0 a guest sees. Recording builds it from the host
/// (its model, minus what cannot be replayed); replay installs the recorded
/// one after checking that this host supports every feature it names, so a
/// trace replays on another CPU with the same features.
public struct CPUIDTable: Sendable, Equatable {
    public var leaves: [CPUIDLeaf]
    public var xcr0: UInt64

    public init(leaves: [CPUIDLeaf], xcr0: UInt64) {
        self.leaves = leaves
        self.xcr0 = xcr0
    }

    /// x87, SSE, AVX and the AVX-512 state: what user code may use. AMX and
    /// PKRU are left out: Linux gates AMX behind arch_prctl, and detrec does
    /// not enable protection keys.
    static let allowedXCR0: UInt64 = 0x7 | 0xe0

    /// The host's model, with what detrec cannot replay hidden.
    public static func forRecording(device: KVMDevice) throws(KVMError) -> CPUIDTable {
        let supported = try device.supportedCPUID().map(CPUIDLeaf.init)
        let hostXCR0 = supported.first { $0.function == 0xd && $0.index == 0 }
            .map { UInt64($0.eax) | UInt64($0.edx) << 32 } ?? 0x3
        let xcr0 = hostXCR0 & allowedXCR0
        var leaves: [CPUIDLeaf] = []
        for var leaf in supported {
            switch (leaf.function, leaf.index) {
            case (0x1, _):
                leaf.ecx &= ~(1 << 30)                  // RDRAND: cannot be trapped everywhere
            case (0x7, 0):
                leaf.ebx &= ~(1 << 18)                  // RDSEED
                leaf.ecx &= ~((1 << 3) | (1 << 4))      // PKU, OSPKE
                leaf.edx &= ~((1 << 22) | (1 << 24) | (1 << 25))  // AMX
            case (0x7, 1):
                leaf.eax &= ~(1 << 21)                  // AMX-FP16
            case (0xd, 0):
                leaf.eax = UInt32(truncatingIfNeeded: xcr0)
                leaf.edx = UInt32(truncatingIfNeeded: xcr0 >> 32)
            case (0xd, let sub) where sub >= 2 && sub < 64 && (xcr0 >> UInt64(sub)) & 1 == 0:
                continue                                // state components not enabled
            case (0x1d, _), (0x1e, _):
                continue                                // AMX tile information
            default:
                break
            }
            leaves.append(leaf)
        }
        return CPUIDTable(leaves: leaves, xcr0: xcr0)
    }

    /// The feature words that must be supported by a host to replay.
    private static let featureWords: [(UInt32, UInt32, String)] = [
        (0x1, 0, "1"), (0x7, 0, "7.0"), (0x7, 1, "7.1"), (0x80000001, 0, "0x80000001"),
    ]

    /// Nil when this host can present the table, else what it lacks.
    public func incompatibility(with device: KVMDevice) throws(KVMError) -> String? {
        let host = try device.supportedCPUID().map(CPUIDLeaf.init)
        func find(_ table: [CPUIDLeaf], _ f: UInt32, _ i: UInt32) -> CPUIDLeaf? {
            table.first { $0.function == f && $0.index == i }
        }
        let hostXCR0 = find(host, 0xd, 0).map { UInt64($0.eax) | UInt64($0.edx) << 32 } ?? 0x3
        if xcr0 & ~hostXCR0 != 0 {
            return "XCR0 0x\(String(xcr0, radix: 16)) needs state this CPU lacks (supports 0x\(String(hostXCR0, radix: 16)))"
        }
        for (f, i, name) in CPUIDTable.featureWords {
            guard let want = find(leaves, f, i) else { continue }
            let have = find(host, f, i) ?? CPUIDLeaf(function: f, index: i, flags: 0, eax: 0, ebx: 0, ecx: 0, edx: 0)
            // Leaf 1 EBX/EAX are model and APIC data, not features.
            let words: [(String, UInt32, UInt32)] = f == 0x1 || f == 0x80000001
                ? [("ECX", want.ecx, have.ecx), ("EDX", want.edx, have.edx)]
                : [("EBX", want.ebx, have.ebx), ("ECX", want.ecx, have.ecx), ("EDX", want.edx, have.edx)]
            for (reg, w, h) in words {
                // Bits KVM sets itself at run time (OSXSAVE, hypervisor, APIC) are not host features.
                let dynamic: UInt32 = f == 0x1 && reg == "ECX" ? (1 << 27) | (1 << 31) | (1 << 21) | (1 << 24) : 0
                let missing = w & ~h & ~dynamic
                if missing != 0 {
                    return "CPUID leaf \(name) \(reg) bits 0x\(String(missing, radix: 16)) are not supported here"
                }
            }
        }
        return nil
    }
}
