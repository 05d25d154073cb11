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
        let p = mmap(nil, Int(size), PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        guard let p, p != MAP_FAILED else { throw .hostMemory(errno: errno) }
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

    /// How many pages `allocate` can still hand out.
    var available: UInt64 { (end - next) / 4096 + UInt64(free.count) }
}
