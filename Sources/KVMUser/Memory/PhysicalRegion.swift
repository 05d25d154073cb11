import Glibc

/// A range of guest-physical memory backed by an anonymous host mapping.
/// The mapping is reserved with MAP_NORESERVE, so host memory is only used
/// for the pages the guest (or detrec) actually touches.
///
/// KVM sees it as one memslot, or as several of `slotSize` bytes each
/// (slots `slot`, `slot + 1`, ...): a dirty page log is read one slot at
/// a time and costs the slot's size, so a large region with a log is cut
/// into slots and only those below the highest frame in use are read.
///
/// The slots are registered with KVM as the frames handed out reach them
/// (`ensureRegistered`), not all at once: KVM allocates and later frees
/// per-page bookkeeping for every byte of a slot (its reverse maps, the
/// dirty bitmap), which for the whole 32 GiB reservation cost a new process
/// more than all else it does (docs/benchmarks.md, processes).
final class PhysicalRegion {
    let slot: UInt32
    let guestBase: UInt64
    let size: UInt64
    let host: UnsafeMutableRawPointer
    let slotSize: UInt64
    /// How many of the slots KVM has now (`VirtualMachine.add`, `register`).
    var registeredSlots = 0
    /// One past the last guest-physical byte those slots cover.
    private(set) var registeredEnd: UInt64 = 0
    /// Registers the slot of that index with KVM (set by `VirtualMachine.add`); false when KVM refuses.
    var registerSlot: ((Int) -> Bool)?

    init(slot: UInt32, guestBase: UInt64, size: UInt64, slotSize: UInt64? = nil) throws(KVMError) {
        // Aligned to 2 MiB (as guestBase is): KVM maps a guest's 2 MiB
        // page with one large entry only where guest-physical and host
        // addresses agree modulo 2 MiB and the host backs it with a huge page.
        let align = Int(PhysicalRegion.hugeSize)
        let raw = mmap(nil, Int(size) + align, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        guard let raw, raw != MAP_FAILED else { throw .hostMemory(errno: errno) }
        let head = (align - Int(bitPattern: raw) % align) % align
        if head > 0 { munmap(raw, head) }
        let p = raw + head
        munmap(p + Int(size), align - head)
        // No transparent huge pages unless asked for a block (`populateHuge`):
        // a fault on one page must not back 2 MiB (and take as long to clear).
        madvise(p, Int(size), 15 /* MADV_NOHUGEPAGE */)
        self.slot = slot
        self.guestBase = guestBase
        self.size = size
        self.host = p
        self.slotSize = max(4096, min(slotSize ?? size, size))
    }

    /// How many memslots the region takes.
    var slotCount: Int { Int((size + slotSize - 1) / slotSize) }

    /// Guest-physical start and size of the region's `index`-th memslot.
    func slotRange(_ index: Int) -> (base: UInt64, size: UInt64) {
        let offset = UInt64(index) * slotSize
        return (guestBase + offset, min(slotSize, size - offset))
    }

    deinit { munmap(host, Int(size)) }

    /// KVM has slots `0..<count` of this region now.
    func registered(count: Int) {
        registeredSlots = count
        registeredEnd = count >= slotCount ? guestBase + size : guestBase + UInt64(count) * slotSize
    }

    /// Makes sure KVM has a memslot for the frame at `gpa` (about to be
    /// handed to the guest), registering the slots up to it; false when
    /// KVM refuses one (the frame must not be used then).
    @inline(__always) func ensureRegistered(_ gpa: UInt64) -> Bool {
        gpa < registeredEnd || registerThrough(gpa)
    }

    private func registerThrough(_ gpa: UInt64) -> Bool {
        guard contains(gpa), let registerSlot else { return false }
        let index = Int((gpa - guestBase) / slotSize)
        while registeredSlots <= index {
            guard registerSlot(registeredSlots) else { return false }
            registered(count: registeredSlots + 1)
        }
        return true
    }

    func contains(_ gpa: UInt64) -> Bool { gpa >= guestBase && gpa - guestBase < size }

    /// Host address of a guest-physical address; the caller has checked `contains`.
    func pointer(_ gpa: UInt64) -> UnsafeMutableRawPointer { host + Int(gpa - guestBase) }

    static let hugeSize: UInt64 = 2 << 20

    /// Backs the aligned 2 MiB at `gpa` with host memory now, as one huge
    /// page where the host's transparent huge pages allow it (KVM can then
    /// map a guest 2 MiB page there with one entry), with 4 KiB pages
    /// otherwise. The range is marked MADV_HUGEPAGE only for the populate
    /// and goes back to MADV_NOHUGEPAGE after it (the huge page stays), so
    /// the region stays one host mapping. Contents do not change (fresh
    /// frames read zero). Only a speed-up: refusals are ignored.
    func populateHuge(_ gpa: UInt64) {
        guard contains(gpa), gpa & (PhysicalRegion.hugeSize - 1) == 0 else { return }
        let p = pointer(gpa), n = Int(PhysicalRegion.hugeSize)
        if PhysicalRegion.hostHugePages { madvise(p, n, 14 /* MADV_HUGEPAGE */) }
        madvise(p, n, 23 /* MADV_POPULATE_WRITE */)
        if PhysicalRegion.hostHugePages { madvise(p, n, 15 /* MADV_NOHUGEPAGE */) }
    }

    /// `DETREC_HUGE_PAGES`: `off` maps no guest 2 MiB pages at all,
    /// `guest` maps them but backs them with 4 KiB host pages (for
    /// measurements: docs/preemption.md); anything else, both.
    static let hugePagesSetting: String = getenv("DETREC_HUGE_PAGES").map { String(cString: $0) } ?? "on"
    static let guestHugePages = hugePagesSetting != "off"
    static let hostHugePages = hugePagesSetting != "off" && hugePagesSetting != "guest"

    /// Gives pages back to the host: they read as zero afterwards.
    func discard(_ gpa: UInt64, bytes: UInt64) {
        madvise(pointer(gpa), Int(bytes), MADV_DONTNEED)
    }
}

/// Hands out 4 KiB guest-physical pages of one region. Freed pages are
/// discarded on the host first, so every page handed out reads as zero.
struct PageAllocator {
    private(set) var next: UInt64
    let end: UInt64
    private var free: [UInt64] = []

    init(region: PhysicalRegion) {
        next = region.guestBase
        end = region.guestBase + region.size
    }

    mutating func allocate() -> UInt64? {
        if let page = free.popLast() { return page }
        guard next < end else { return nil }
        defer { next += 4096 }
        return next
    }

    mutating func release(_ page: UInt64) { free.append(page) }

    /// 512 contiguous pages aligned to 2 MiB (guest-physical), from the
    /// top of what was handed out; the pages skipped to align go to the
    /// free list (never handed out, so zero). Nil when none are left.
    mutating func allocateHuge() -> UInt64? {
        let huge = PhysicalRegion.hugeSize
        let aligned = (next + huge - 1) & ~(huge - 1)
        guard aligned <= end, end - aligned >= huge else { return nil }
        var skipped = aligned
        while skipped > next {
            skipped -= 4096
            free.append(skipped)
        }
        next = aligned + huge
        return aligned
    }

    /// How many pages `allocate` can still hand out.
    var available: UInt64 { (end - next) / 4096 + UInt64(free.count) }
}
