import Testing
@testable import KVMUser

/// The portable CPU models, what CPUID answers from a table, and what a
/// replaying host is checked for: named instruction-set features and the
/// XSAVE layout, never informational bits.
@Suite struct CPUModelTests {
    static func leaf(_ f: UInt32, _ i: UInt32 = 0, flags: UInt32 = 0, eax: UInt32 = 0, ebx: UInt32 = 0, ecx: UInt32 = 0, edx: UInt32 = 0) -> CPUIDLeaf {
        CPUIDLeaf(function: f, index: i, flags: flags, eax: eax, ebx: ebx, ecx: ecx, edx: edx)
    }

    /// A host with every feature of x86-64-v3 (and nothing else named), XCR0 x87|SSE|AVX.
    static var v3Host: [CPUIDLeaf] {
        var leaves = [leaf(0, eax: 0xd, ebx: 0x756e_6547, ecx: 0x6c65_746e, edx: 0x4965_6e69),
                      leaf(1, eax: 0x906ea, ebx: 0x0810_0800), leaf(7, flags: 1), leaf(0xd, 0, flags: 1, eax: 7, ebx: 832, ecx: 832),
                      leaf(0xd, 1, flags: 1), leaf(0xd, 2, flags: 1, eax: 256, ebx: 576),
                      leaf(0x8000_0000, eax: 0x8000_0008), leaf(0x8000_0001), leaf(0x8000_0008, eax: 0x3027)]
        for name in CPUModel.x86_64_v3.features ?? [] {
            guard let f = CPUFeature.named(name), let i = leaves.firstIndex(where: { $0.function == f.function && $0.index == f.index }) else { continue }
            f.set(in: &leaves[i])
        }
        return leaves
    }

    static let enforced = GuestCPUProbe(cpuidVirtualized: true, xcr0Enforced: true, effectiveXCR0: 7)

    @Test func everyBaselineFeatureHasAName() {
        for model in CPUModel.allCases {
            for name in model.features ?? [] { #expect(CPUFeature.named(name) != nil, "\(model.rawValue): \(name)") }
        }
        #expect(Set(CPUFeature.known.map(\.name)).count == CPUFeature.known.count, "feature names are unique")
    }

    @Test func baselineTablePresentsExactlyItsFeatures() {
        var host = Self.v3Host
        // The host also has AVX-512F, SHA and RDRAND: the baseline hides them.
        for name in ["AVX-512F", "SHA", "RDRAND", "RDSEED"] {
            if let f = CPUFeature.named(name), let i = host.firstIndex(where: { $0.function == f.function && $0.index == f.index }) { f.set(in: &host[i]) }
        }
        let table = CPUModel.x86_64_v3.table(host: host)
        let presented = CPUFeature.known.filter { $0.isSet(in: table.leaves.leaf($0.function, $0.index)) }.map(\.name)
        #expect(Set(presented) == Set(CPUModel.x86_64_v3.features ?? []))
        #expect(table.xcr0 == 0x7)
        #expect(table.leaves.leaf(0xd, 0)?.ebx == CPUModel.xsaveRoom)
        #expect(table.leaves.leaf(0xd, 2)?.ebx == 576)
        #expect(table.leaves.leaf(0, 0)?.eax == 0xd, "the highest basic leaf is the highest presented")
        // One CPU: APIC id 0, one logical processor.
        #expect((table.leaves.leaf(1, 0)?.ebx ?? 1) >> 16 == 0)
        let v2 = CPUModel.x86_64_v2.table(host: host)
        #expect(v2.xcr0 == 0x3 && v2.leaves.leaf(0xd, 2) == nil)
        #expect(!(CPUFeature.named("AVX")?.isSet(in: v2.leaves.leaf(1, 0)) ?? true))
    }

    @Test func aHostWithoutAVX2CannotPresentV3() {
        var host = Self.v3Host
        if let i = host.firstIndex(where: { $0.function == 7 }) { host[i].ebx &= ~(1 << 5) }
        #expect(CPUModel.x86_64_v3.missing(on: host) == ["AVX2"])
        #expect(CPUModel.x86_64_v2.missing(on: host).isEmpty)
    }

    @Test func cpuidAnswersAsKVMDoes() {
        let table = CPUModel.x86_64_v3.table(host: Self.v3Host)
        let one = table.answer(function: 1, index: 99)
        #expect(one.ecx & (1 << 27) != 0, "OSXSAVE shows CR4.OSXSAVE")
        #expect(table.answer(function: 0xd, index: 2).ebx == 576, "a significant index selects the subleaf")
        #expect(table.answer(function: 0xd, index: 9) == (0, 0, 0, 0))
        // Past the highest leaf, an Intel model answers as its highest basic leaf.
        #expect(table.answer(function: 0x20, index: 0).eax == table.answer(function: 0xd, index: 0).eax)
    }

    @Test func replayChecksNamedFeaturesOnly() {
        let host = Self.v3Host
        var table = CPUModel.x86_64_v3.table(host: host)
        #expect(table.incompatibility(withHost: host, probe: Self.enforced) == nil)
        // Informational bits differ: self-snoop, APIC id, brand, cache leaves.
        if let i = table.leaves.firstIndex(where: { $0.function == 1 }) { table.leaves[i].edx |= 1 << 27; table.leaves[i].ebx |= 0x0300_0000 }
        table.leaves.append(Self.leaf(0x8000_0002, eax: 0x4445_5452))
        #expect(table.incompatibility(withHost: host, probe: Self.enforced) == nil)
        // An instruction-set feature the host lacks is named.
        if let f = CPUFeature.named("AVX-512F"), let i = table.leaves.firstIndex(where: { $0.function == 7 && $0.index == 0 }) { f.set(in: &table.leaves[i]) }
        let problem = table.incompatibility(withHost: host, probe: Self.enforced) ?? ""
        #expect(problem.contains("needs AVX-512F"), "\(problem)")
    }

    @Test func replayChecksTheXSAVELayout() {
        let host = Self.v3Host
        var table = CPUIDTable.hostModel(host)
        table.xcr0 = 0xe7
        let problem = table.incompatibility(withHost: host, probe: Self.enforced) ?? ""
        #expect(problem.contains("AVX-512 opmask"), "\(problem)")
        var moved = CPUIDTable.hostModel(host)
        if let i = moved.leaves.firstIndex(where: { $0.function == 0xd && $0.index == 2 }) { moved.leaves[i].ebx = 640 }
        let offset = moved.incompatibility(withHost: host, probe: Self.enforced) ?? ""
        #expect(offset.contains("AVX at offset"), "\(offset)")
    }

    /// On this host, whatever its vendor: the default model can be recorded,
    /// and its table replays here.
    @Test func theDefaultModelRecordsAndReplaysHere() throws {
        let device = try KVMDevice()
        let model = try CPUModel.portable(device: device)
        let table = try CPUIDTable.forRecording(device: device, model: model)
        #expect(try table.incompatibility(with: device) == nil)
    }
}
