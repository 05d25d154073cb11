import KVMUser

/// Code the program generates at run time (a JIT) must be scanned for
/// rdtsc and cpuid like code loaded from files (`PatchedInstructions`), or
/// it would read the host's counter and CPU unrecorded. A mapping that is
/// both writable and executable gets W^X in the guest page tables: each of
/// its pages is either writable and not executable (its data phase, where
/// it starts) or executable and not writable (its code phase). The first
/// fetch from a page in its data phase faults, and detrec scans the page and
/// moves it to its code phase; the first store to a page in its code phase
/// (by the program or by a syscall writing into it) faults, and detrec
/// lifts the page's patches and moves it back. The program sees neither
/// fault: /proc/self/maps and its own accesses keep the mapping's rights.
/// Faults are deterministic, so replay flips the same pages at the same
/// instructions. Code made executable by mprotect or mmap without write
/// permission is scanned when it is mapped (`MemorySyscalls`).
///
/// Not covered: an instruction that straddles two pages of such a mapping.
enum WriteXorExecute {
    /// Whether the pages of a mapping with this protection alternate.
    static func applies(_ protection: PageProtection) -> Bool {
        protection.contains(.write) && protection.contains(.execute)
    }

    /// Gives the pages of `m` within [start, end) their phase's protection
    /// (after the mapping's own protection was applied to the range).
    static func protect(_ p: Process, _ m: Mapping, from start: UInt64, to end: UInt64) {
        guard applies(m.protection) else { return }
        let s = max(start, m.start), e = min(end, m.fileBackedEnd)
        guard s < e else { return }
        p.memory.protect(s, pages: Int((e - s) / 4096), protection: m.protection.subtracting(.execute))
        for page in p.space.codePages where page >= s && page < e {
            p.memory.protect(page, pages: 1, protection: m.protection.subtracting(.write))
        }
    }

    /// A page fault the mapping's rights allow on a page of a W^X mapping:
    /// the page changes phase and the instruction runs again. False for
    /// any other fault.
    static func handleFault(_ p: Process, _ e: GuestException) -> Bool {
        guard e.vector == GuestException.pageFault, let code = e.errorCode, code & 1 != 0,
              let m = p.space.mapping(containing: e.address), applies(m.protection),
              e.address < m.fileBackedEnd else { return false }
        let page = e.address & ~4095
        let write = code & 2 != 0, fetch = code & 16 != 0
        if fetch && !p.space.codePages.contains(page) {
            toCode(p.mm, page, m.protection)
            return true
        }
        if write && p.space.codePages.contains(page) {
            toData(p.mm, page, m.protection)
            return true
        }
        return false
    }

    /// A syscall is about to write into `page` with the guest's rights:
    /// a page in its code phase moves back to data first.
    static func makeWritable(_ mm: MemoryContext, _ page: UInt64) -> Bool {
        guard mm.space.codePages.contains(page), let m = mm.space.mapping(containing: page), applies(m.protection) else {
            return false
        }
        toData(mm, page, m.protection)
        return true
    }

    /// Which pages are in their code phase and what is patched, as a
    /// preemption checkpoint keeps it: phases flip at faults inside a slice,
    /// so a rollback that puts memory back must put these back with it.
    struct Phases {
        var codePages: Set<UInt64>
        var sites: [UInt64: PatchedInstruction]
        var overlay: GuestMemory.PatchState
    }

    static func phases(_ mm: MemoryContext) -> Phases {
        Phases(codePages: mm.space.codePages, sites: mm.patchedSites, overlay: mm.machine.memory.patchState)
    }

    /// After memory was restored to the checkpoint of `saved` (no syscall
    /// since, so the mappings are the same): each page that changed phase
    /// gets its old phase's protection back, and the patches are those the
    /// restored bytes hold.
    static func restore(_ mm: MemoryContext, _ saved: Phases) {
        for page in mm.space.codePages.symmetricDifference(saved.codePages) {
            guard let m = mm.space.mapping(containing: page), applies(m.protection) else { continue }
            let code = saved.codePages.contains(page)
            mm.machine.memory.protect(page, pages: 1, protection: m.protection.subtracting(code ? .write : .execute), keepingFrames: true)
        }
        mm.space.codePages = saved.codePages
        mm.patchedSites = saved.sites
        mm.machine.memory.restorePatchState(saved.overlay)
    }

    private static func toCode(_ mm: MemoryContext, _ page: UInt64, _ protection: PageProtection) {
        mm.space.codePages.insert(page)
        mm.machine.memory.protect(page, pages: 1, protection: protection.subtracting(.write), keepingFrames: true)
        PatchedInstructions.patch(mm, from: page, to: page + 4096)
    }

    private static func toData(_ mm: MemoryContext, _ page: UInt64, _ protection: PageProtection) {
        mm.space.codePages.remove(page)
        PatchedInstructions.unpatch(mm, from: page, to: page + 4096)
        mm.machine.memory.protect(page, pages: 1, protection: protection.subtracting(.execute), keepingFrames: true)
    }
}
