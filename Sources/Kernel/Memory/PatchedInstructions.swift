import CHost
import KVMUser
import Synchronization

/// An instruction detrec replaces with int3 because the hardware may not
/// trap it, though its result depends on the machine:
///
/// - rdtsc and rdtscp read the time-stamp counter, and PVM cannot make them
///   trap (CR4.TSD has no effect there, see shared/docs/platform.md).
///   detrec reads the counter while recording and logs it like a syscall
///   result; replay hands back the recorded value.
/// - cpuid is not trapped at CPL3 by PVM on AMD hosts (measured: the guest
///   saw the host's own CPUID, RDRAND included, whatever KVM_SET_CPUID2
///   said). detrec answers it from the trace's CPU model (`CPUIDTable`), the
///   same in record and replay and on every host, so it needs no event.
///   Where the hypervisor does trap it and answers exactly that
///   (`NativeCPUID`: VMX, SVM, PVM on Intel), cpuid is left unpatched: KVM
///   answers it in the host kernel, with no round trip to detrec.
public enum PatchedInstruction: Sendable, Equatable {
    case rdtsc, rdtscp, cpuid

    public var length: UInt64 { self == .rdtscp ? 3 : 2 }

    init?(kind: UInt8) {
        switch Int32(kind) {
        case Int32(CHOST_RDTSC): self = .rdtsc
        case Int32(CHOST_RDTSCP): self = .rdtscp
        case Int32(CHOST_CPUID): self = .cpuid
        default: return nil
        }
    }
}

/// Finds and patches those instructions in the program's code as it is
/// mapped (ELF load, mmap with PROT_EXEC), hidden from every read through
/// GuestMemory's overlay. Works the same on VMX hosts.
public enum PatchedInstructions {
    /// Scans [start, end) of guest code and patches every rdtsc/rdtscp/cpuid.
    public static func patch(_ process: Process, from start: UInt64, to end: UInt64) {
        patch(process.mm, from: start, to: end)
    }

    /// `code`: where in guest memory the file's instruction sections lie
    /// (`ELFImage.code`), when known: only they are scanned. The same
    /// content gives the same sections, so `key` still names the result.
    static func patch(_ mm: MemoryContext, from start: UInt64, to end: UInt64, content key: ScanKey? = nil,
                      code: [(start: UInt64, end: UInt64)]? = nil) {
        guard end > start, end - start < 1 << 30 else { return }
        let sites: [Site]
        if let key, let known = ScanCache.shared.withLock({ $0[key] }) {
            sites = known
        } else {
            // Untouched reserved pages read zero (no instruction there), or
            // their source's bytes; reading them with `peek` gives them no
            // frames (DemandFault.swift).
            var parts = mm.machine.memory.framedParts(start, end)
            if let code {
                parts = parts.flatMap { part in
                    code.compactMap { c -> (start: UInt64, end: UInt64)? in
                        let s = max(part.start, c.start), e = min(part.end, c.end)
                        return s < e ? (s, e) : nil
                    }
                }
            }
            sites = parts.count == 1 && parts[0] == (start, end) ? scan(mm.machine.memory, from: start, to: end)
                : parts.flatMap { part in
                    scan(mm.machine.memory, from: part.start, to: part.end).map { Site(offset: $0.offset + UInt32(part.start - start), kind: $0.kind) }
                }
            if let key { ScanCache.shared.withLock { $0.remember(key, sites) } }
        }
        // cpuid runs unpatched where the hypervisor answers it from the table (`NativeCPUID`).
        let cpuidNative = NativeCPUID.answersLikeTable(mm.machine.cpuid, device: mm.machine.device)
        for s in sites where !(s.kind == .cpuid && cpuidNative) {
            let site = start + UInt64(s.offset)
            guard mm.patchedSites[site] == nil else { continue }
            if (try? mm.machine.memory.insertPatch(site)) != nil {
                mm.patchedSites[site] = s.kind
            }
        }
    }

    /// One instruction a scan found, by its offset in the scanned range.
    struct Site: Sendable, Equatable {
        var offset: UInt32
        var kind: PatchedInstruction
    }

    /// The instructions to patch in [start, end) of guest memory as it is
    /// now (none when the range cannot be read).
    static func scan(_ memory: GuestMemory, from start: UInt64, to end: UInt64) -> [Site] {
        let size = Int(end - start)
        guard let code = try? memory.peek(start, count: size) else { return [] }
        let max = 4096
        var offsets = [UInt32](repeating: 0, count: max)
        var kinds = [UInt8](repeating: 0, count: max)
        let found = code.withUnsafeBufferPointer { c in
            offsets.withUnsafeMutableBufferPointer { o in
                kinds.withUnsafeMutableBufferPointer { k in
                    chost_find_special_instructions(c.baseAddress, size, o.baseAddress, k.baseAddress, Int32(max))
                }
            }
        }
        guard found > 0 else { return [] }
        return (0..<Int(found)).compactMap { i in PatchedInstruction(kind: kinds[i]).map { Site(offset: offsets[i], kind: $0) } }
    }

    /// What a range of guest code is, when it is known to be nothing but a
    /// file's bytes laid out by a rule that depends on nothing else: a file
    /// mapping just filled from `sha256` at `offset` (`extent` bytes of it,
    /// zeros after) over `length` bytes, or an executable mapping of an ELF
    /// image from `sha256` at [`offset`, `offset + length`) of its own
    /// addresses. The same key means the same bytes, so the disassembling
    /// scan (the most of what mapping a large library cost) runs once per
    /// key, in record and in replay alike, and both get its result.
    struct ScanKey: Hashable, Sendable {
        enum Layout: Hashable, Sendable { case fileMapping, elfImage }
        var layout: Layout
        var sha256: String
        var offset: UInt64
        var extent: UInt64
        var length: UInt64
    }

    /// Scan results by key, for the life of the detrec process (both
    /// worlds see the same file contents, by hash, so sharing is exact).
    struct ScanCache: ~Copyable {
        static let shared = Mutex(ScanCache())
        /// Few programs map more distinct code than this; past it, start over.
        static let limit = 1024
        private var known: [ScanKey: [Site]] = [:]

        subscript(key: ScanKey) -> [Site]? { known[key] }

        mutating func remember(_ key: ScanKey, _ sites: [Site]) {
            if known.count >= ScanCache.limit { known.removeAll() }
            known[key] = sites
        }
    }

    /// Lifts the patches in [start, end): the program may write new code
    /// there, and an int3 left over a byte it replaced would be taken for
    /// an instruction that is gone.
    public static func unpatch(_ process: Process, from start: UInt64, to end: UInt64) {
        unpatch(process.mm, from: start, to: end)
    }

    static func unpatch(_ mm: MemoryContext, from start: UInt64, to end: UInt64) {
        for (site, _) in mm.patchedSites where site >= start && site < end {
            mm.machine.memory.removePatch(site)
            mm.patchedSites[site] = nil
        }
    }

    /// Patches the executable parts of every mapping of a new image.
    /// `images` names, for each loaded ELF image whose content hash is
    /// known, its span and bias (see `ScanKey`).
    /// `code`: the image's instruction sections (`ELFImage.code`), by
    /// unrelocated address.
    public static func patchExecutable(_ process: Process, images: [(sha256: String, low: UInt64, high: UInt64, bias: UInt64, code: [ELFImage.Section]?)] = []) {
        for m in process.space.mappings where m.protection.contains(.execute) && !WriteXorExecute.applies(m.protection) {
            let image = images.first { $0.low <= m.start && m.end <= $0.high }
            let known = image.flatMap { $0.sha256.isEmpty ? nil : $0 }
            let key = known.map { ScanKey(layout: .elfImage, sha256: $0.sha256, offset: m.start &- $0.bias, extent: 0, length: m.end - m.start) }
            let code = image.flatMap { i in
                i.code.map { $0.map { s in (start: i.bias &+ s.address, end: i.bias &+ s.address &+ s.size) } }
            }
            patch(process.mm, from: m.start, to: m.end, content: key, code: code)
        }
    }

    /// Where a file mapping of `[start, start + length)` from file offset
    /// `offset` shows the file's instruction sections, if its content is
    /// an ELF file with section headers.
    static func codeOfMapping(_ content: [UInt8], sha256: String, start: UInt64, offset: UInt64, length: UInt64) -> [(start: UInt64, end: UInt64)]? {
        guard content.count >= 64, content[0] == 0x7f, content[1] == 0x45, content[2] == 0x4c, content[3] == 0x46,
              let sections = (try? ELFImage.parse(content, sha256: sha256))?.code else { return nil }
        return sections.compactMap { s in
            let (sEnd, o1) = s.offset.addingReportingOverflow(s.size)
            let (mEnd, o2) = offset.addingReportingOverflow(length)
            guard !o1, !o2, s.offset < mEnd, offset < sEnd else { return nil }
            let from = max(s.offset, offset), to = min(sEnd, mEnd)
            return (start &+ (from - offset), start &+ (to - offset))
        }
    }

    /// The patched instruction whose int3 the guest just hit (RIP is one
    /// past the int3), or nil for any other #BP.
    static func site(_ process: Process, _ e: GuestException) -> (UInt64, PatchedInstruction)? {
        guard e.vector == GuestException.breakpoint else { return nil }
        let site = e.rip &- 1
        guard let kind = process.patchedSites[site], process.memory.patches[site] != nil else { return nil }
        return (site, kind)
    }

    /// cpuid at `site`: the answer of the trace's CPU model, as KVM would
    /// give it (the 32-bit results zero-extended), and RIP past it.
    static func emulateCPUID(_ process: Process, at site: UInt64) {
        var regs = process.machine.registers
        let answer = process.machine.cpuid.answer(function: UInt32(truncatingIfNeeded: regs.rax),
                                                  index: UInt32(truncatingIfNeeded: regs.rcx))
        regs.rax = UInt64(answer.eax); regs.rbx = UInt64(answer.ebx)
        regs.rcx = UInt64(answer.ecx); regs.rdx = UInt64(answer.edx)
        regs.rip = site + PatchedInstruction.cpuid.length
        process.machine.registers = regs
    }
}

/// rdtsc and rdtscp readings are logged under these pseudo-syscall numbers.
public enum TimestampCounter {
    public static let rdtscNumber: UInt64 = 0x4000_0031
    public static let rdtscpNumber: UInt64 = 0x4000_01f9
}
