/// A CPUID register, for naming where a feature bit lives.
public enum CPUIDRegister: String, Sendable {
    case eax = "EAX", ebx = "EBX", ecx = "ECX", edx = "EDX"
}

/// One CPUID feature bit that changes which instructions user code may
/// execute: the features a replaying host must have when the trace's CPU
/// model presents them. Bits that change no instruction's behaviour (cache
/// and topology data, APIC ids, self-snoop, brand, mitigation flags) are not
/// here, so they never block a replay.
public struct CPUFeature: Sendable, Equatable {
    public var name: String
    public var function: UInt32
    public var index: UInt32
    public var register: CPUIDRegister
    public var bit: UInt32

    public init(_ name: String, _ function: UInt32, _ index: UInt32, _ register: CPUIDRegister, _ bit: UInt32) {
        self.name = name; self.function = function; self.index = index
        self.register = register; self.bit = bit
    }

    /// Whether `leaf`'s register has this bit set.
    public func isSet(in leaf: CPUIDLeaf?) -> Bool {
        guard let leaf else { return false }
        let value: UInt32
        switch register {
        case .eax: value = leaf.eax
        case .ebx: value = leaf.ebx
        case .ecx: value = leaf.ecx
        case .edx: value = leaf.edx
        }
        return (value >> bit) & 1 != 0
    }

    /// Sets this bit in `leaf`'s register.
    func set(in leaf: inout CPUIDLeaf) {
        let mask: UInt32 = 1 << bit
        switch register {
        case .eax: leaf.eax |= mask
        case .ebx: leaf.ebx |= mask
        case .ecx: leaf.ecx |= mask
        case .edx: leaf.edx |= mask
        }
    }

    /// Every instruction-set feature detrec knows by name (Intel SDM vol. 2
    /// table 3-8 and chapter 3 "CPUID"; AMD APM vol. 3 appendix E). A host
    /// model may present more bits; those it does not name are not checked.
    public static let known: [CPUFeature] = [
        // Leaf 1 EDX
        .init("FPU", 1, 0, .edx, 0), .init("TSC", 1, 0, .edx, 4), .init("CX8", 1, 0, .edx, 8),
        .init("CMOV", 1, 0, .edx, 15), .init("CLFSH", 1, 0, .edx, 19), .init("MMX", 1, 0, .edx, 23),
        .init("FXSR", 1, 0, .edx, 24), .init("SSE", 1, 0, .edx, 25), .init("SSE2", 1, 0, .edx, 26),
        // Leaf 1 ECX
        .init("SSE3", 1, 0, .ecx, 0), .init("PCLMULQDQ", 1, 0, .ecx, 1), .init("SSSE3", 1, 0, .ecx, 9),
        .init("FMA", 1, 0, .ecx, 12), .init("CX16", 1, 0, .ecx, 13), .init("SSE4.1", 1, 0, .ecx, 19),
        .init("SSE4.2", 1, 0, .ecx, 20), .init("MOVBE", 1, 0, .ecx, 22), .init("POPCNT", 1, 0, .ecx, 23),
        .init("AES", 1, 0, .ecx, 25), .init("XSAVE", 1, 0, .ecx, 26), .init("AVX", 1, 0, .ecx, 28),
        .init("F16C", 1, 0, .ecx, 29), .init("RDRAND", 1, 0, .ecx, 30),
        // Leaf 7.0 EBX
        .init("FSGSBASE", 7, 0, .ebx, 0), .init("BMI1", 7, 0, .ebx, 3), .init("HLE", 7, 0, .ebx, 4),
        .init("AVX2", 7, 0, .ebx, 5), .init("BMI2", 7, 0, .ebx, 8), .init("RTM", 7, 0, .ebx, 11),
        .init("MPX", 7, 0, .ebx, 14), .init("AVX-512F", 7, 0, .ebx, 16), .init("AVX-512DQ", 7, 0, .ebx, 17),
        .init("RDSEED", 7, 0, .ebx, 18), .init("ADX", 7, 0, .ebx, 19), .init("AVX-512IFMA", 7, 0, .ebx, 21),
        .init("CLFLUSHOPT", 7, 0, .ebx, 23), .init("CLWB", 7, 0, .ebx, 24), .init("AVX-512PF", 7, 0, .ebx, 26),
        .init("AVX-512ER", 7, 0, .ebx, 27), .init("AVX-512CD", 7, 0, .ebx, 28), .init("SHA", 7, 0, .ebx, 29),
        .init("AVX-512BW", 7, 0, .ebx, 30), .init("AVX-512VL", 7, 0, .ebx, 31),
        // Leaf 7.0 ECX
        .init("PREFETCHWT1", 7, 0, .ecx, 0), .init("AVX-512VBMI", 7, 0, .ecx, 1), .init("UMIP", 7, 0, .ecx, 2),
        .init("PKU", 7, 0, .ecx, 3), .init("WAITPKG", 7, 0, .ecx, 5), .init("AVX-512VBMI2", 7, 0, .ecx, 6),
        .init("CET-SS", 7, 0, .ecx, 7), .init("GFNI", 7, 0, .ecx, 8), .init("VAES", 7, 0, .ecx, 9),
        .init("VPCLMULQDQ", 7, 0, .ecx, 10), .init("AVX-512VNNI", 7, 0, .ecx, 11),
        .init("AVX-512BITALG", 7, 0, .ecx, 12), .init("AVX-512VPOPCNTDQ", 7, 0, .ecx, 14),
        .init("RDPID", 7, 0, .ecx, 22), .init("CLDEMOTE", 7, 0, .ecx, 25), .init("MOVDIRI", 7, 0, .ecx, 27),
        .init("MOVDIR64B", 7, 0, .ecx, 28), .init("ENQCMD", 7, 0, .ecx, 29),
        // Leaf 7.0 EDX
        .init("AVX-512-4VNNIW", 7, 0, .edx, 2), .init("AVX-512-4FMAPS", 7, 0, .edx, 3),
        .init("AVX-512-VP2INTERSECT", 7, 0, .edx, 8), .init("SERIALIZE", 7, 0, .edx, 14),
        .init("TSXLDTRK", 7, 0, .edx, 16), .init("AMX-BF16", 7, 0, .edx, 22), .init("AVX-512-FP16", 7, 0, .edx, 23),
        .init("AMX-TILE", 7, 0, .edx, 24), .init("AMX-INT8", 7, 0, .edx, 25),
        // Leaf 7.1 EAX
        .init("AVX-VNNI", 7, 1, .eax, 4), .init("AVX-512-BF16", 7, 1, .eax, 5), .init("CMPCCXADD", 7, 1, .eax, 7),
        .init("AMX-FP16", 7, 1, .eax, 21), .init("AVX-IFMA", 7, 1, .eax, 23),
        // Leaf 0xD.1 EAX
        .init("XSAVEOPT", 0xd, 1, .eax, 0), .init("XSAVEC", 0xd, 1, .eax, 1), .init("XGETBV1", 0xd, 1, .eax, 2),
        .init("XSAVES", 0xd, 1, .eax, 3),
        // Leaf 0x80000001 ECX / EDX
        .init("LAHF-SAHF", 0x8000_0001, 0, .ecx, 0), .init("LZCNT", 0x8000_0001, 0, .ecx, 5),
        .init("SSE4a", 0x8000_0001, 0, .ecx, 6), .init("PREFETCHW", 0x8000_0001, 0, .ecx, 8),
        .init("XOP", 0x8000_0001, 0, .ecx, 11), .init("FMA4", 0x8000_0001, 0, .ecx, 16),
        .init("TBM", 0x8000_0001, 0, .ecx, 21), .init("MONITORX", 0x8000_0001, 0, .ecx, 29),
        .init("SYSCALL", 0x8000_0001, 0, .edx, 11), .init("NX", 0x8000_0001, 0, .edx, 20),
        .init("RDTSCP", 0x8000_0001, 0, .edx, 27), .init("LM", 0x8000_0001, 0, .edx, 29),
        // Leaf 0x80000008 EBX
        .init("CLZERO", 0x8000_0008, 0, .ebx, 0), .init("WBNOINVD", 0x8000_0008, 0, .ebx, 9),
    ]

    public static func named(_ name: String) -> CPUFeature? { known.first { $0.name == name } }
}

/// The XSAVE state components (XCR0 bits), by name.
public enum XSaveComponent {
    public static let names: [Int: String] = [
        0: "x87", 1: "SSE", 2: "AVX", 3: "MPX BNDREGS", 4: "MPX BNDCSR", 5: "AVX-512 opmask",
        6: "AVX-512 ZMM_Hi256", 7: "AVX-512 Hi16_ZMM", 9: "PKRU", 11: "CET_U", 17: "AMX TILECFG", 18: "AMX TILEDATA",
    ]

    public static func name(_ bit: Int) -> String { names[bit] ?? "component \(bit)" }
}
