/// The CPU a recorded program sees. The VMM decides CPUID and XCR0, so a
/// trace can be made to replay on any host that has the model's
/// instruction-set features, whatever its vendor or generation: the default
/// is a documented baseline, not the recording host.
///
/// - `x86-64-v3`: the x86-64 psABI level 3 (AVX, AVX2, BMI1/2, F16C, FMA,
///   LZCNT, MOVBE, XSAVE; XCR0 = x87|SSE|AVX) plus FSGSBASE, which KVM needs
///   in CPUID for the CR4 bit detrec sets. Intel since Haswell, AMD since
///   Excavator/Zen.
/// - `x86-64-v2`: psABI level 2 (SSE3 to SSE4.2, SSSE3, POPCNT, CX16,
///   LAHF-SAHF) plus XSAVE with XCR0 = x87|SSE and FSGSBASE.
/// - `host`: every host feature detrec can replay (AVX-512 and the like);
///   its traces replay only on hosts with the same features and XSAVE layout.
///
/// Informational leaves (vendor, family/model, brand, cache descriptors)
/// come from the recording host and are replayed as recorded; they never
/// block a replay. Topology is that of a one-CPU machine (APIC id 0), as
/// detrec runs one vCPU.
public enum CPUModel: String, CaseIterable, Sendable {
    case x86_64_v3 = "x86-64-v3"
    case x86_64_v2 = "x86-64-v2"
    case host

    /// What `record` uses without `--cpu`: the highest baseline this host can run.
    public static func portable(device: KVMDevice) throws(KVMError) -> CPUModel {
        x86_64_v3.missing(on: try HostCPU.capabilities(device: device)).isEmpty ? .x86_64_v3 : .x86_64_v2
    }

    /// The instruction-set features a baseline presents (nil for `host`).
    public var features: [String]? {
        let base = ["FPU", "TSC", "CX8", "CMOV", "CLFSH", "MMX", "FXSR", "SSE", "SSE2", "SYSCALL", "NX", "LM",
                    "RDTSCP", "XSAVE", "FSGSBASE",
                    "SSE3", "SSSE3", "CX16", "SSE4.1", "SSE4.2", "POPCNT", "LAHF-SAHF"]
        switch self {
        case .x86_64_v2: return base
        case .x86_64_v3: return base + ["AVX", "AVX2", "BMI1", "BMI2", "F16C", "FMA", "LZCNT", "MOVBE"]
        case .host: return nil
        }
    }

    /// The XSAVE components a baseline enables.
    var xcr0: UInt64 { self == .x86_64_v2 ? 0x3 : 0x7 }

    /// The XSAVE area size a baseline reports (CPUID 0xD.0 EBX and ECX):
    /// room for x87, SSE, AVX, MPX and AVX-512 in the standard layout, more
    /// than its own components need. A hypervisor that cannot enforce the
    /// guest's XCR0 (PVM on AMD, `GuestCPUProbe`) runs the guest with the
    /// host's, so the guest's XSAVE writes what the host enables; code that
    /// sizes its save area from CPUID (glibc's lazy-binding trampoline)
    /// must have room for that on every host the trace may replay on.
    static let xsaveRoom: UInt32 = 2688

    /// The model's features missing from `host` (`HostCPU.capabilities`), by name.
    func missing(on host: [CPUIDLeaf]) -> [String] {
        (features ?? []).compactMap { name in
            guard let f = CPUFeature.named(name) else { return name }
            return f.isSet(in: host.leaf(f.function, f.index)) ? nil : name
        }
    }

    /// System bits of leaf 1 EDX every x86-64 CPU has, which describe paging
    /// rather than instructions; presented so the model looks like a real CPU.
    static let leaf1SystemEDX: UInt32 = (1 << 3) | (1 << 5) | (1 << 6) | (1 << 13) | (1 << 16)   // PSE MSR PAE PGE PAT
    /// Performance hints that change no instruction's behaviour (a host
    /// without them runs the same code, only slower): taken from the host.
    static let leaf7HintsEBX: UInt32 = 1 << 9       // ERMS
    static let leaf7HintsEDX: UInt32 = 1 << 4       // FSRM

    /// The CPUID table of a baseline model, with informational leaves from `host`.
    func table(host: [CPUIDLeaf]) -> CPUIDTable {
        let features = (self.features ?? []).compactMap(CPUFeature.named)
        let xcr0 = self.xcr0
        var leaves: [CPUIDLeaf] = []
        func copy(_ function: UInt32, _ edit: (inout CPUIDLeaf) -> Void = { _ in }) {
            for var leaf in host where leaf.function == function {
                edit(&leaf)
                leaves.append(leaf)
            }
        }
        func featureLeaf(_ function: UInt32, _ index: UInt32, flags: UInt32 = 0, _ edit: (inout CPUIDLeaf) -> Void) {
            var leaf = CPUIDLeaf(function: function, index: index, flags: flags, eax: 0, ebx: 0, ecx: 0, edx: 0)
            edit(&leaf)
            for f in features where f.function == function && f.index == index { f.set(in: &leaf) }
            leaves.append(leaf)
        }
        let hostLeaf1 = host.leaf(1, 0)
        copy(0)
        featureLeaf(1, 0) { leaf in
            leaf.eax = hostLeaf1?.eax ?? 0                        // family, model, stepping
            leaf.ebx = (hostLeaf1?.ebx ?? 0) & 0xffff              // brand index, CLFLUSH size; one CPU, APIC id 0
            leaf.edx = CPUModel.leaf1SystemEDX
        }
        copy(2)
        copy(4)
        let hostLeaf7 = host.leaf(7, 0)
        featureLeaf(7, 0, flags: 1) { leaf in
            leaf.ebx = (hostLeaf7?.ebx ?? 0) & CPUModel.leaf7HintsEBX
            leaf.edx = (hostLeaf7?.edx ?? 0) & CPUModel.leaf7HintsEDX
        }
        copy(0xb) { $0.edx = 0 }                                   // x2APIC id 0
        // XSAVE: the standard layout of x87, SSE and AVX, the same on every vendor.
        featureLeaf(0xd, 0, flags: 1) { leaf in
            leaf.eax = UInt32(truncatingIfNeeded: xcr0); leaf.ebx = CPUModel.xsaveRoom; leaf.ecx = CPUModel.xsaveRoom
        }
        featureLeaf(0xd, 1, flags: 1) { _ in }
        if xcr0 & 0x4 != 0 {
            featureLeaf(0xd, 2, flags: 1) { leaf in leaf.eax = 256; leaf.ebx = 576 }
        }
        copy(0x8000_0000)
        featureLeaf(0x8000_0001, 0) { leaf in leaf.eax = host.leaf(0x8000_0001, 0)?.eax ?? 0 }
        for f: UInt32 in 0x8000_0002...0x8000_0006 { copy(f) }
        copy(0x8000_0007) { leaf in leaf.eax = 0; leaf.ebx = 0; leaf.ecx = 0; leaf.edx &= 1 << 8 }   // invariant TSC
        copy(0x8000_0008) { leaf in leaf.ebx = 0; leaf.ecx = 0; leaf.edx = 0 }    // address sizes only
        copy(0x8000_001d)                                                          // AMD cache topology
        // The highest leaves, as presented.
        let maxBasic = leaves.filter { $0.function < 0x8000_0000 }.map(\.function).max() ?? 0
        let maxExtended = leaves.filter { $0.function >= 0x8000_0000 }.map(\.function).max() ?? 0x8000_0000
        for i in leaves.indices {
            if leaves[i].function == 0 { leaves[i].eax = maxBasic }
            if leaves[i].function == 0x8000_0000 { leaves[i].eax = maxExtended }
        }
        return CPUIDTable(leaves: leaves, xcr0: xcr0)
    }
}

extension Array where Element == CPUIDLeaf {
    /// The leaf for (function, index), if present.
    func leaf(_ function: UInt32, _ index: UInt32) -> CPUIDLeaf? {
        first { $0.function == function && $0.index == index }
    }

    /// The XSAVE components these leaves say may be enabled (0xD.0 EDX:EAX).
    var supportedXCR0: UInt64 { leaf(0xd, 0).map { UInt64($0.eax) | UInt64($0.edx) << 32 } ?? 0x3 }
}
