import Glibc

/// Which pages of the guest's data region changed since the last
/// checkpoint (docs/preemption.md): KVM's dirty page log for the guest's
/// own writes, and marks that GuestMemory sets for detrec's writes from
/// the host (syscall results, the loader, signal frames, int3 patches),
/// which KVM does not see.
///
/// The log is armed at the first harvest, not when the machine is made:
/// a process that never takes a checkpoint (one thread, no timer; every
/// replay) then runs with KVM's log off, where KVM may map a fault's
/// neighbouring pages with it when the host already backs them (pages
/// detrec filled: exec's file contents, fork's copy). Arming turns
/// KVM_MEM_LOG_DIRTY_PAGES on for the region's memslots and counts every
/// page the host has backed as changed (nothing was logged before it), so
/// nothing written is ever missed. `harvest` then reads the log of the
/// slots below the highest frame in use (one KVM_GET_DIRTY_LOG each, which
/// also re-arms it) and folds it into `pages`, which holds each changed
/// page once. Only the slots' bitmaps are scanned, never the pages.
final class DirtyPageLog {
    let region: PhysicalRegion
    /// Replaced in a forked replayer (`UserMachine.rebuildAfterFork`).
    var vm: VirtualMachine
    /// One memslot's bitmap, as KVM_GET_DIRTY_LOG fills it.
    private let scratch: UnsafeMutablePointer<UInt64>
    private let scratchWords: Int
    /// Changed pages (index in the region) since the last `clear`, each once.
    private(set) var pages: [UInt32] = []
    private var seen: [UInt64] = []
    /// Pages given back to the host (they read as zero now) since the last `clear`.
    private(set) var released: [UInt32] = []
    /// Why KVM stopped answering, once it did: every later harvest fails.
    private(set) var failure: String?
    /// Whether KVM logs the region's writes now (`arm`, `disarm`).
    private(set) var armed = false
    /// Harvests in every log of this detrec process (`PreemptionStats`):
    /// an armed log makes KVM write-protect what it logs, so a process that
    /// needs none should take none. Only the vCPU thread harvests.
    nonisolated(unsafe) private(set) static var harvests = 0

    init(vm: VirtualMachine, region: PhysicalRegion) {
        self.vm = vm
        self.region = region
        scratchWords = Int((region.slotSize / 4096 + 63) / 64)
        scratch = .allocate(capacity: scratchWords)
        scratch.initialize(repeating: 0, count: scratchWords)
    }

    deinit { scratch.deallocate() }

    /// Detrec is about to write the page holding guest-physical `gpa`.
    @inline(__always) func mark(_ gpa: UInt64) {
        let page = Int((gpa - region.guestBase) >> 12)
        if noting { noted.append(UInt32(truncatingIfNeeded: page)) }
        markPage(page)
    }

    /// Whether detrec's own writes and releases are also noted in `noted`
    /// (a preemption window keeps what each of its syscalls changed).
    var noting = false
    /// Pages detrec wrote or gave back while `noting`, in order, with repeats.
    var noted: [UInt32] = []

    @inline(__always) private func markPage(_ page: Int) {
        let word = page >> 6, bit = UInt64(1) << UInt64(page & 63)
        if word >= seen.count { seen.append(contentsOf: repeatElement(0, count: max(word + 1 - seen.count, seen.count))) }
        if seen[word] & bit == 0 {
            seen[word] |= bit
            pages.append(UInt32(truncatingIfNeeded: page))
        }
        markUnlooked(word, bit)
    }

    /// Pages written or released since `takeWritten` last answered for
    /// them: the second reader of the log, `SharedMemory.push`, which
    /// compares only these pages of a shared view with what it stored,
    /// not every page at every process switch. Kept apart from `pages`,
    /// which checkpoints clear.
    private var unlooked: [UInt64] = []

    @inline(__always) private func markUnlooked(_ word: Int, _ bit: UInt64) {
        if word >= unlooked.count { unlooked.append(contentsOf: repeatElement(0, count: max(word + 1 - unlooked.count, unlooked.count))) }
        unlooked[word] |= bit
    }

    /// Whether the page holding `gpa` was written or released since the
    /// last time this answered for it (only after a `harvest` does this
    /// include the guest's own writes); the mark is cleared.
    func takeWritten(_ gpa: UInt64) -> Bool {
        let page = Int((gpa - region.guestBase) >> 12)
        let word = page >> 6, bit = UInt64(1) << UInt64(page & 63)
        guard word < unlooked.count, unlooked[word] & bit != 0 else { return false }
        unlooked[word] &= ~bit
        return true
    }

    /// The page holding `gpa` went back to the host (madvise): it reads as zero.
    func release(_ gpa: UInt64) {
        let page = Int((gpa - region.guestBase) >> 12)
        if noting { noted.append(UInt32(truncatingIfNeeded: page)) }
        released.append(UInt32(truncatingIfNeeded: page))
        markUnlooked(page >> 6, UInt64(1) << UInt64(page & 63))
    }

    /// Adds what the guest wrote below `highest` (one past the highest
    /// frame in use) since the last harvest to `pages`. False when KVM
    /// refuses the log: the caller must not trust `pages` then.
    func harvest(below highest: UInt64) -> Bool {
        guard failure == nil else { return false }
        DirtyPageLog.harvests += 1
        if !armed, !arm(below: highest) { return false }
        let usedPages = pages(below: highest)
        guard usedPages > 0 else { return true }
        let pagesPerSlot = Int(region.slotSize / 4096)
        let slots = (usedPages + pagesPerSlot - 1) / pagesPerSlot
        for i in 0..<slots {
            let r = vm.dirtyLog(region, i, into: scratch)
            if r != 0 {
                failure = "KVM_GET_DIRTY_LOG on memslot \(region.slot + UInt32(i)): \(String(cString: strerror(-r)))"
                return false
            }
            let first = i * pagesPerSlot
            let words = min(scratchWords, (usedPages - first + 63) / 64)
            for w in 0..<words {
                var v = scratch[w]
                while v != 0 {
                    markPage(first + w * 64 + v.trailingZeroBitCount)
                    v &= v &- 1
                }
            }
        }
        return true
    }

    /// Turns KVM's log on and counts every page the host has backed below
    /// `highest` as changed: what was written before is in no log.
    private func arm(below highest: UInt64) -> Bool {
        do throws(KVMError) { try vm.setDirtyLogging(region, on: true) } catch {
            failure = "turning on KVM_MEM_LOG_DIRTY_PAGES: \(error)"
            return false
        }
        armed = true
        for (i, resident) in GuestMemory.residency(ofHost: region.host, pages: pages(below: highest)).enumerated()
            where resident & 1 != 0 { markPage(i) }
        return true
    }

    /// The region's pages below `highest`.
    private func pages(below highest: UInt64) -> Int {
        guard highest > region.guestBase else { return 0 }
        return Int((min(highest, region.guestBase + region.size) - region.guestBase + 4095) / 4096)
    }

    /// The machine goes to a new program (`UserMachine.reset`): KVM stops
    /// logging and drops what it logged, and the next harvest arms again.
    func disarm() throws(KVMError) {
        clear()
        guard armed else { return }
        try vm.setDirtyLogging(region, on: false)
        armed = false
    }

    /// After a checkpoint or a rollback: nothing has changed since.
    func clear() {
        for page in pages { seen[Int(page >> 6)] = 0 }
        pages.removeAll(keepingCapacity: true)
        released.removeAll(keepingCapacity: true)
    }
}
