/// The guest's 4-level page tables (Intel SDM vol. 3, 4.5), kept in their
/// own physical region so that KVM can be told to forget its cached
/// translations of them (see `VirtualMachine.invalidateTranslations`).
///
/// Interior entries allow everything (present, writable, user); the leaf
/// decides. Leaves map 4 KiB pages only, so `mprotect` works per page.
final class PageTables {
    let region: PhysicalRegion
    private var allocator: PageAllocator
    let root: UInt64

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
            t = slot.pointee & PTE.addressMask
            guard region.contains(t) else { return nil }
        }
        return table(t) + PageTables.index(va, level: 0)
    }

    /// The leaf entry's value for `va`, 0 when there is none.
    func entry(_ va: UInt64) -> UInt64 { leaf(va, create: false)?.pointee ?? 0 }

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
                let next = e & PTE.addressMask
                if region.contains(next) { walk(next, level: level - 1, base: va) }
            }
        }
        walk(root, level: 3, base: 0)
    }

    /// Every leaf slot that holds a frame in [start, end), in order: used to
    /// walk a range without visiting the holes page by page.
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
                t = slot.pointee & PTE.addressMask
            }
            if skipped { continue }
            let slot = table(t) + PageTables.index(va, level: 0)
            if slot.pointee & (PTE.present | PTE.ownsFrame) != 0 { body(va, slot) }
            va += 4096
        }
    }
}
