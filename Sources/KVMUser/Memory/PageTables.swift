/// The guest's 4-level page tables (Intel SDM vol. 3, 4.5), kept in their
/// own physical region so that KVM can be told to forget its cached
/// translations of them (see `VirtualMachine.invalidateTranslations`).
///
/// Interior entries allow everything (present, writable, user); the leaf
/// decides. Leaves map 4 KiB pages, or a whole aligned 2 MiB block with
/// one page-directory entry (`mapHuge`: the PS bit) where detrec gave the
/// block 512 contiguous, aligned frames at once, so that KVM's shadow MMU
/// can map it with one large entry where the host backs it with a huge
/// page (docs/preemption.md, "2 MiB pages"). Everything that needs one
/// page's entry to change splits such a block first (`leaf`,
/// `forEachLeaf`): a table of 512 entries that translate exactly as the
/// block did. Reads never split (`entry`, `forEachEntry`, `forEachLeafEntry`).
final class PageTables {
    let region: PhysicalRegion
    private var allocator: PageAllocator
    let root: UInt64
    /// Called after a 2 MiB entry was split (GuestMemory: KVM may still
    /// hold the block's shadow mapping, built for the directory entry).
    var didSplit: (() -> Void)?

    static let hugeSize: UInt64 = 2 << 20

    init(region: PhysicalRegion) throws(KVMError) {
        self.region = region
        allocator = PageAllocator(region: region)
        guard let root = allocator.allocate() else { throw .hostMemory(errno: 12) }
        self.root = root
    }

    /// One past the highest table page handed out.
    var highestPage: UInt64 { allocator.next }

    private func table(_ gpa: UInt64) -> UnsafeMutablePointer<UInt64> {
        region.pointer(gpa).assumingMemoryBound(to: UInt64.self)
    }

    private static func index(_ va: UInt64, level: Int) -> Int {
        Int((va >> (12 + 9 * UInt64(level))) & 0x1ff)
    }

    /// The leaf entry for `va`, creating the tables on the way when asked.
    /// Nil for a non-canonical or kernel-half address, or when out of table pages.
    func leaf(_ va: UInt64, create: Bool) -> UnsafeMutablePointer<UInt64>? {
        guard va < 0x0000_8000_0000_0000 else { return nil }
        var t = root
        for level in stride(from: 3, through: 1, by: -1) {
            let slot = table(t) + PageTables.index(va, level: level)
            if slot.pointee & PTE.present == 0 {
                guard create, let page = allocator.allocate() else { return nil }
                guard region.ensureRegistered(page) else {
                    allocator.release(page)
                    return nil
                }
                slot.pointee = page | PTE.present | PTE.writable | PTE.user | PTE.accessed
            }
            if level == 1, slot.pointee & PTE.huge != 0, !split(slot) { return nil }
            t = slot.pointee & PTE.addressMask
            guard region.contains(t) else { return nil }
        }
        return table(t) + PageTables.index(va, level: 0)
    }

    /// The leaf entry's value for `va`, 0 when there is none; inside a
    /// 2 MiB block, the 4 KiB entry its split would give `va` (no split).
    func entry(_ va: UInt64) -> UInt64 {
        guard va < 0x0000_8000_0000_0000 else { return 0 }
        var t = root
        for level in stride(from: 3, through: 1, by: -1) {
            let e = table(t)[PageTables.index(va, level: level)]
            guard e & PTE.present != 0 else { return 0 }
            if level == 1, e & PTE.huge != 0 { return PageTables.smallEntry(e, at: va) }
            t = e & PTE.addressMask
            guard region.contains(t) else { return 0 }
        }
        return table(t)[PageTables.index(va, level: 0)]
    }

    /// Whether `va` lies in a block mapped with one 2 MiB entry.
    func isHuge(_ va: UInt64) -> Bool {
        guard va < 0x0000_8000_0000_0000 else { return false }
        var t = root
        for level in stride(from: 3, through: 1, by: -1) {
            let e = table(t)[PageTables.index(va, level: level)]
            guard e & PTE.present != 0 else { return false }
            if level == 1 { return e & PTE.huge != 0 }
            t = e & PTE.addressMask
            guard region.contains(t) else { return false }
        }
        return false
    }

    /// The 4 KiB entry for `va` within the 2 MiB block of `huge`.
    private static func smallEntry(_ huge: UInt64, at va: UInt64) -> UInt64 {
        (huge & ~(PTE.huge | PTE.addressMask)) | ((huge & PTE.addressMask) + (va & (hugeSize - 4096)))
    }

    /// The page-directory slot for the 2 MiB block at `va` (aligned),
    /// creating the tables above it; nil when out of table pages.
    private func directorySlot(_ va: UInt64) -> UnsafeMutablePointer<UInt64>? {
        guard va < 0x0000_8000_0000_0000 else { return nil }
        var t = root
        for level in stride(from: 3, through: 2, by: -1) {
            let slot = table(t) + PageTables.index(va, level: level)
            if slot.pointee & PTE.present == 0 {
                guard let page = allocator.allocate() else { return nil }
                guard region.ensureRegistered(page) else {
                    allocator.release(page)
                    return nil
                }
                slot.pointee = page | PTE.present | PTE.writable | PTE.user | PTE.accessed
            }
            t = slot.pointee & PTE.addressMask
            guard region.contains(t) else { return nil }
        }
        return table(t) + PageTables.index(va, level: 1)
    }

    /// Maps the aligned 2 MiB block at `va` with one entry: `entry` is the
    /// 4 KiB leaf its first page would have (PTE.leaf of an aligned frame,
    /// present), the other 511 pages following it. Only where nothing of
    /// the block is mapped (no directory entry); false otherwise.
    func mapHuge(_ va: UInt64, entry: UInt64) -> Bool {
        guard va & (PageTables.hugeSize - 1) == 0, entry & PTE.present != 0,
              entry & PTE.addressMask & (PageTables.hugeSize - 1) == 0,
              let slot = directorySlot(va), slot.pointee & PTE.present == 0 else { return false }
        slot.pointee = entry | PTE.huge
        return true
    }

    /// Whether the aligned 2 MiB block at `va` has no directory entry
    /// (nothing of it was ever mapped since its table went). A block with
    /// a table, even an empty one, is not mapped whole: KVM may keep a
    /// shadow of that table, which a host write of the entry would not reach.
    func blockHasNoEntry(_ va: UInt64) -> Bool {
        guard va < 0x0000_8000_0000_0000 else { return false }
        var t = root
        for level in stride(from: 3, through: 1, by: -1) {
            let e = table(t)[PageTables.index(va, level: level)]
            guard e & PTE.present != 0 else { return true }
            if level == 1 { return false }
            t = e & PTE.addressMask
            guard region.contains(t) else { return false }
        }
        return false
    }

    /// Removes the 2 MiB entries wholly inside [start, end) and returns
    /// their blocks (virtual address, the 4 KiB entry of their first page):
    /// unmapping a whole block needs no split.
    func takeHugeBlocks(from start: UInt64, to end: UInt64) -> [(va: UInt64, entry: UInt64)] {
        var out: [(va: UInt64, entry: UInt64)] = []
        var va = (start + PageTables.hugeSize - 1) & ~(PageTables.hugeSize - 1)
        while va < end, end - va >= PageTables.hugeSize {
            var t = root
            var found: UnsafeMutablePointer<UInt64>?
            var skip = PageTables.hugeSize
            for level in stride(from: 3, through: 1, by: -1) {
                let slot = table(t) + PageTables.index(va, level: level)
                if slot.pointee & PTE.present == 0 {
                    skip = 1 << (12 + 9 * UInt64(level))
                    break
                }
                if level == 1 {
                    if slot.pointee & PTE.huge != 0 { found = slot }
                    break
                }
                t = slot.pointee & PTE.addressMask
            }
            if let found {
                out.append((va, found.pointee & ~PTE.huge))
                found.pointee = 0
            }
            va = (va & ~(skip - 1)) + skip
        }
        return out
    }

    /// Turns the 2 MiB entry in `slot` into a table of 512 entries that
    /// translate exactly as it did. False when out of table pages.
    private func split(_ slot: UnsafeMutablePointer<UInt64>) -> Bool {
        guard let page = allocator.allocate() else { return false }
        guard region.ensureRegistered(page) else {
            allocator.release(page)
            return false
        }
        let huge = slot.pointee, entries = table(page)
        for i in 0..<512 { entries[i] = PageTables.smallEntry(huge, at: UInt64(i) * 4096) }
        slot.pointee = page | PTE.present | PTE.writable | PTE.user | PTE.accessed
        didSplit?()
        return true
    }

    /// Every leaf entry of the user half, table by table: a walk that costs
    /// one load per entry, for scanning the whole address space often
    /// (MemorySnapshot).
    func forEachLeafEntry(below limit: UInt64, _ body: (UInt64) -> Void) {
        func walk(_ t: UInt64, level: Int, base: UInt64) {
            let entries = table(t)
            let span: UInt64 = 1 << (12 + 9 * UInt64(level))
            for i in 0..<512 {
                let va = base + UInt64(i) * span
                if va >= limit { return }
                let e = entries[i]
                if level == 0 {
                    if e & (PTE.present | PTE.ownsFrame) != 0 { body(e) }
                    continue
                }
                guard e & PTE.present != 0 else { continue }
                if level == 1, e & PTE.huge != 0 {
                    for j in 0..<512 where va + UInt64(j) * 4096 < limit {
                        body(PageTables.smallEntry(e, at: UInt64(j) * 4096))
                    }
                    continue
                }
                let next = e & PTE.addressMask
                if region.contains(next) { walk(next, level: level - 1, base: va) }
            }
        }
        walk(root, level: 3, base: 0)
    }

    /// Every leaf entry that holds a frame in [start, end), in order, with
    /// its page's address, as `entry` gives it (2 MiB blocks are not split):
    /// for walks that only read.
    func forEachEntry(from start: UInt64, to end: UInt64, _ body: (UInt64, UInt64) -> Void) {
        var va = start
        while va < end {
            var t = root
            var skipped = false
            for level in stride(from: 3, through: 1, by: -1) {
                let e = table(t)[PageTables.index(va, level: level)]
                let span: UInt64 = 1 << (12 + 9 * UInt64(level))
                if e & PTE.present == 0 {
                    va = (va & ~(span - 1)) + span
                    skipped = true
                    break
                }
                if level == 1, e & PTE.huge != 0 {
                    let blockEnd = min(end, (va & ~(span - 1)) + span)
                    while va < blockEnd {
                        body(va, PageTables.smallEntry(e, at: va))
                        va += 4096
                    }
                    skipped = true
                    break
                }
                t = e & PTE.addressMask
            }
            if skipped { continue }
            let e = table(t)[PageTables.index(va, level: 0)]
            if e & (PTE.present | PTE.ownsFrame) != 0 { body(va, e) }
            va += 4096
        }
    }

    /// Every leaf slot that holds a frame in [start, end), in order: used to
    /// walk a range without visiting the holes page by page. A 2 MiB block
    /// on the way is split (the caller may change its slots).
    func forEachLeaf(from start: UInt64, to end: UInt64, _ body: (UInt64, UnsafeMutablePointer<UInt64>) -> Void) {
        var va = start
        while va < end {
            // Skip a whole missing table at the highest level it is missing.
            var t = root
            var skipped = false
            for level in stride(from: 3, through: 1, by: -1) {
                let slot = table(t) + PageTables.index(va, level: level)
                if slot.pointee & PTE.present == 0 {
                    let span: UInt64 = 1 << (12 + 9 * UInt64(level))
                    va = (va & ~(span - 1)) + span
                    skipped = true
                    break
                }
                if level == 1, slot.pointee & PTE.huge != 0, !split(slot) {
                    // Out of table pages: the block stays whole and is skipped.
                    va = (va & ~(PageTables.hugeSize - 1)) + PageTables.hugeSize
                    skipped = true
                    break
                }
                t = slot.pointee & PTE.addressMask
            }
            if skipped { continue }
            let slot = table(t) + PageTables.index(va, level: 0)
            if slot.pointee & (PTE.present | PTE.ownsFrame) != 0 { body(va, slot) }
            va += 4096
        }
    }
}
