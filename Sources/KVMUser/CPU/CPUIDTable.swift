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

/// The CPUID table and XCR0 a guest sees. Recording builds it from a CPU
/// model (`CPUModel`: a portable baseline by default, or the host's own);
/// replay installs the recorded one after checking that this host has every
/// instruction-set feature and XSAVE component it presents, so a trace
/// replays on another CPU, of either vendor, that can run the same code.
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

    /// The table for `model` on this host; throws when the host cannot
    /// present a baseline model (it lacks one of its features).
    public static func forRecording(device: KVMDevice, model: CPUModel = .host) throws(KVMError) -> CPUIDTable {
        let supported = try device.supportedCPUID().map(CPUIDLeaf.init)
        let capabilities = HostCPU.capabilities(supported: supported)
        let table: CPUIDTable
        if model == .host {
            table = hostModel(supported)
        } else {
            let missing = model.missing(on: capabilities)
            guard missing.isEmpty else {
                throw .cpuidIncompatible("this host cannot present the \(model.rawValue) CPU model: it lacks \(missing.joined(separator: ", ")); record with --cpu x86-64-v2 or --cpu host")
            }
            table = model.table(host: supported)
        }
        if let problem = table.incompatibility(withHost: capabilities, probe: try GuestCPUProbe.measure(device: device)) {
            throw .cpuidIncompatible("this host cannot present the \(model.rawValue) CPU model: it \(problem)")
        }
        return table
    }

    /// The host's model, with what detrec cannot replay hidden.
    static func hostModel(_ supported: [CPUIDLeaf]) -> CPUIDTable {
        let xcr0 = supported.supportedXCR0 & allowedXCR0
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

    /// What the CPUID instruction returns for (function, index) on a vCPU
    /// with this table, as KVM computes it (arch/x86/kvm/cpuid.c,
    /// kvm_cpuid): a leaf whose index is not significant answers every
    /// index; a leaf past the highest one answers as the highest basic leaf
    /// on an Intel model and zeros otherwise; OSXSAVE shows CR4.OSXSAVE,
    /// which detrec always sets.
    public func answer(function: UInt32, index: UInt32) -> (eax: UInt32, ebx: UInt32, ecx: UInt32, edx: UInt32) {
        func find(_ f: UInt32, _ i: UInt32) -> CPUIDLeaf? {
            leaves.first { $0.function == f && ($0.flags & 1 == 0 || $0.index == i) }
        }
        var leaf = find(function, index)
        if leaf == nil, let vendor = leaves.leaf(0, 0), vendor.ebx == 0x756e_6547, vendor.edx == 0x4965_6e69, vendor.ecx == 0x6c65_746e {
            let maxBasic = vendor.eax
            let maxExtended = leaves.leaf(0x8000_0000, 0)?.eax ?? 0
            let outOfRange = function >= 0x8000_0000 ? function > maxExtended : function > maxBasic
            if outOfRange { leaf = find(maxBasic, index) }
        }
        guard var found = leaf else { return (0, 0, 0, 0) }
        if found.function == 1 { found.ecx |= 1 << 27 }
        return (found.eax, found.ebx, found.ecx, found.edx)
    }

    /// Nil when this host can run code written for the table, else what it
    /// lacks, by name. Only what changes how instructions behave is
    /// checked: the named instruction-set features, the XSAVE components,
    /// and where each enabled component lies in the XSAVE area (the guest's
    /// own XSAVE instructions use the hardware's layout, and signal frames
    /// carry it). Vendor, model, cache, topology and brand leaves never
    /// block a replay.
    public func incompatibility(with device: KVMDevice) throws(KVMError) -> String? {
        incompatibility(withHost: try HostCPU.capabilities(device: device), probe: try GuestCPUProbe.measure(device: device))
    }

    /// `incompatibility` against a host's capabilities (`HostCPU`) and what
    /// its hypervisor enforces (`GuestCPUProbe`).
    public func incompatibility(withHost host: [CPUIDLeaf], probe: GuestCPUProbe) -> String? {
        let advice = "record with the default --cpu, or replay on a host that has it"
        let lacking = CPUFeature.known.filter { $0.isSet(in: leaves.leaf($0.function, $0.index)) && !$0.isSet(in: host.leaf($0.function, $0.index)) }
        if !lacking.isEmpty {
            let names = lacking.map(\.name).joined(separator: ", ")
            return "needs \(names), which this host lacks: \(advice)"
        }
        guard probe.xcr0Enforced else { return xsaveIncompatibility(effectiveXCR0: probe.effectiveXCR0, advice: advice) }
        let hostXCR0 = host.supportedXCR0
        let absent = (0..<64).filter { (xcr0 >> UInt64($0)) & 1 != 0 && (hostXCR0 >> UInt64($0)) & 1 == 0 }
        if !absent.isEmpty {
            let names = absent.map(XSaveComponent.name).joined(separator: ", ")
            return "needs the XSAVE state \(names), which this host lacks: \(advice)"
        }
        return layoutMismatch(among: xcr0, host: { host.leaf(0xd, $0) }, advice: advice)
    }

    /// The first of the table's XSAVE components in `components` whose size
    /// or offset (CPUID 0xD.i) differs on the host, as a reason.
    func layoutMismatch(among components: UInt64, host: (UInt32) -> CPUIDLeaf?, advice: String) -> String? {
        for bit in 2..<64 where (components >> UInt64(bit)) & 1 != 0 {
            guard let want = leaves.leaf(0xd, UInt32(bit)) else { continue }
            let have = host(UInt32(bit))
            if have?.eax != want.eax || have?.ebx != want.ebx {
                return "keeps the XSAVE state \(XSaveComponent.name(bit)) at offset \(want.ebx) (\(want.eax) bytes), this host at offset \(have?.ebx ?? 0) (\(have?.eax ?? 0) bytes): \(advice)"
            }
        }
        return nil
    }

    /// Where the hypervisor runs the guest with the host's own XCR0
    /// (`GuestCPUProbe.xcr0Enforced` false), the guest's XSAVE writes the
    /// host's components in the hardware's layout: they must fit the area
    /// the table reports, and the components it describes must lie where
    /// the hardware puts them.
    func xsaveIncompatibility(effectiveXCR0: UInt64, advice: String) -> String? {
        let room = leaves.leaf(0xd, 0)?.ebx ?? 576
        let extent = HostCPU.xsaveExtent(xcr0: effectiveXCR0)
        if extent > room {
            let names = (2..<8).filter { (effectiveXCR0 >> UInt64($0)) & 1 != 0 }.map(XSaveComponent.name).joined(separator: ", ")
            return "runs guests with the host's XSAVE state (\(names): \(extent) bytes; its hypervisor cannot enforce the guest's XCR0), more than the \(room) bytes the trace's CPU model reserves: replay on a host whose KVM enforces XCR0 (VMX or SVM), or record on a host like this one"
        }
        return layoutMismatch(among: xcr0 & effectiveXCR0, host: { HostCPU.native(0xd, $0) }, advice: advice)
    }
}