/// A guest access that Linux would refuse: the guest sees EFAULT (from a
/// syscall) or a fault (from an instruction).
public struct GuestMemoryFault: Error, Equatable, Sendable, CustomStringConvertible {
    public var address: UInt64
    public init(address: UInt64) { self.address = address }
    public var description: String { "bad guest address 0x\(String(address, radix: 16))" }
}

/// Who is touching guest memory: the guest's own rights (syscall buffers),
/// or detrec itself (the loader writing read-only text, replay restoring
/// recorded memory), or the machine (its own system pages, above the
/// guest's address space: `UserMachine` only).
public enum GuestAccess: Sendable {
    case user
    case kernel
    case system
}

/// The guest's virtual memory as the host sees it: pages mapped, protected
/// and unmapped by the emulated kernel, and every read and write by guest
/// virtual address bounds- and permission-checked.
public final class GuestMemory {
    public static let pageSize: UInt64 = 4096
    /// The guest's TASK_SIZE: the highest address it may map or touch,
    /// plus one. Linux's is 0x7ffffffff000; detrec's system pages
    /// (`Layout`) take the 64 KiB just below that, so the guest's address
    /// space ends where they begin, and every request that reaches them
    /// gets what Linux gives an address at or past TASK_SIZE.
    public static let userLimit: UInt64 = Layout.systemBase

    /// How far an access of this kind may reach.
    static func limit(_ access: GuestAccess) -> UInt64 {
        access == .system ? Layout.systemEnd : userLimit
    }

    let tables: PageTables
    let data: PhysicalRegion
    private var frames: PageAllocator
    /// Set when a translation was removed or narrowed: the vCPU must drop
    /// cached translations before it runs again.
    ///
    /// Not set where a page's frame goes (unmap, a mapping replaced, a
    /// narrowed protection: `moveToFreshFrame`): its host memory is
    /// discarded then (MADV_DONTNEED), and KVM's MMU notifier drops every
    /// translation to that host memory, flushing the TLBs, before madvise
    /// returns; the next access walks the page tables again. So only a
    /// moved page, a rebuilt table or a large narrowing needs the memslot
    /// round trip, which drops every cached
    /// translation of the address space (and with them the guest's
    /// shadow pages: each page faults again).
    public var translationsChanged = false
    /// False until the guest runs on these tables (a new machine, or one
    /// just reset: KVM has dropped every translation of them): until then
    /// no change needs telling KVM (the loader's mprotects at an exec).
    var mayHoldTranslations = false

    /// One past the highest guest-physical frame ever handed out.
    var highestFrame: UInt64 { frames.next }
    /// Counts the changes of which frame backs a page (map, unmap, move, a
    /// narrowing protect): a preemption window ends at a syscall that made
    /// one, since its re-run would write through the new tables.
    public private(set) var frameChanges = 0

    /// How many more pages can get frames (the rest of the data region
    /// and the free list).
    public var framesAvailable: UInt64 { frames.available }

    /// What changed since the last checkpoint, when KVM keeps a dirty page
    /// log of `data` (MemorySnapshot.swift); every host write below marks it.
    var dirty: DirtyPageLog?
    /// The data region at the last checkpoint, when checkpoints use `dirty`.
    var mirror: MemoryMirror?
    /// The last full copy taken (`captureAll`), which a lazily filled page
    /// is added to (`fillFresh`).
    weak var latestFullCopy: MemorySnapshot?
    /// Why checkpoints copy every page instead (no log, or it failed).
    var fullCopyReason: String?
    /// Why the mirror copies every changed page at once, even many
    /// (no `CopyBeforeWrite`: tests and measurements compare the two).
    var eagerMirrorReason: String?

    /// Pages a debugger protects to see the guest's own accesses
    /// (watchpoints, DebugProtection.swift).
    var debugPages: [UInt64: DebugFault] = [:]

    /// Mapped pages without frames yet (`ReservedRanges`): a page gets its
    /// frame at its first touch (`demandMap`).
    var reserved = ReservedRanges()
    /// How many pages the next demand fault maps.
    var faultAround = FaultAround()

    /// The reserved ranges, for tests and diagnostics.
    public var reservedRanges: [ReservedRange] { reserved.ranges }

    init(tables: PageTables, data: PhysicalRegion) {
        self.tables = tables
        self.data = data
        frames = PageAllocator(region: data)
    }

    // MARK: mapping

    /// Maps fresh zeroed pages over [start, start + pages*4096), replacing
    /// whatever was there.
    public func map(_ start: UInt64, pages: Int, protection: PageProtection) throws(GuestMemoryFault) {
        try map(start, pages: pages, protection: protection, access: .user)
    }

    /// `map` for the machine's own pages: `user` false makes them
    /// supervisor pages, which no CPL3 access reaches.
    func map(_ start: UInt64, pages: Int, protection: PageProtection, access: GuestAccess,
             user: Bool = true) throws(GuestMemoryFault) {
        try checkRange(start, pages: pages, limit: GuestMemory.limit(access))
        reserved.remove(start, start + UInt64(pages) * 4096)
        // Out of guest memory is refused before anything changes (a huge
        // brk or mmap would otherwise map pages until the frames run out).
        guard UInt64(pages) <= frames.available else { throw GuestMemoryFault(address: start) }
        frameChanges &+= 1
        for i in 0..<pages {
            let va = start + UInt64(i) * 4096
            guard let slot = tables.leaf(va, create: true) else { throw GuestMemoryFault(address: va) }
            if slot.pointee & (PTE.present | PTE.ownsFrame) != 0 {
                if !release(slot.pointee) { translationsChanged = true }
            }
            dropPatches(va, count: 4096)  // breakpoint overlay: the page is new
            guard let frame = freshFrame() else { throw GuestMemoryFault(address: va) }
            slot.pointee = PTE.leaf(frame: frame, protection: protection, user: user)
        }
        reapplyDebugProtection(start, pages: pages)
    }

    /// Reserves [start, start + pages*4096) with `protection`, replacing
    /// whatever was there: no frame until a page is touched (`demandMap`),
    /// when it reads as zero, as a fresh mapped page does.
    /// `source`: what the pages read at their first touch instead of zeros.
    public func reserve(_ start: UInt64, pages: Int, protection: PageProtection, source: PageSource? = nil) throws(GuestMemoryFault) {
        try checkRange(start, pages: pages)
        guard pages > 0 else { return }
        unmap(start, pages: pages)
        reserved.insert(start, start + UInt64(pages) * 4096, protection: protection, source: source)
    }

    /// A file mapping's fill: the untouched reserved pages of [va, va +
    /// length) read `content` from `offset` on (at `va`) when first touched
    /// (`demandMap`), instead of being written now. Returns the parts of
    /// [va, va + length) that must be written now: pages that have frames
    /// or are not reserved (all of it when `va` is not page-aligned).
    public func attach(_ content: PageContent, offset: UInt64, at va: UInt64, length: UInt64) -> [(start: UInt64, end: UInt64)] {
        guard length > 0 else { return [] }
        let (end, overflow) = va.addingReportingOverflow(length)
        guard va & 4095 == 0, !overflow, end <= GuestMemory.userLimit, !reserved.isEmpty else { return [(va, end)] }
        let pageEnd = (end + 4095) & ~4095
        var now: [(start: UInt64, end: UInt64)] = reserved.gaps(va, pageEnd).map { ($0.start, min($0.end, end)) }
        reserved.setSource(va, pageEnd, PageSource(content: content, offset: offset))
        for r in reserved.overlapping(va, pageEnd) {
            tables.forEachLeaf(from: r.start, to: r.end) { page, slot in
                guard slot.pointee & PTE.ownsFrame != 0, page < end else { return }
                now.append((max(page, va), min(page + 4096, end)))
            }
        }
        now.sort { $0.start < $1.start }
        return now.filter { $0.start < $0.end }
    }

    /// Whether `va` is on a reserved page that has no frame yet.
    public func isUntouchedReserved(_ va: UInt64) -> Bool { untouchedReservation(va) != nil }

    /// The reserved range holding `va`, when its page has no frame yet.
    private func untouchedReservation(_ va: UInt64) -> ReservedRange? {
        guard va < GuestMemory.userLimit, !reserved.isEmpty, let r = reserved.range(containing: va),
              PTE.real(tables.entry(va & ~4095)) & PTE.ownsFrame == 0 else { return nil }
        return r
    }

    /// The parts of [start, end) that are not untouched reserved pages
    /// without a source, in order: what a scan of the range's bytes must
    /// read with `peek` (the rest reads zero, and reading it would give it
    /// frames).
    public func framedParts(_ start: UInt64, _ end: UInt64) -> [(start: UInt64, end: UInt64)] {
        guard start < end, !reserved.isEmpty else { return start < end ? [(start, end)] : [] }
        var out: [(start: UInt64, end: UInt64)] = []
        for gap in reserved.gaps(start, end) where gap.start < gap.end { out.append(gap) }
        for r in reserved.overlapping(start, end) {
            if r.source != nil { out.append((r.start, r.end)); continue }
            tables.forEachLeaf(from: r.start & ~4095, to: r.end) { va, slot in
                guard slot.pointee & PTE.ownsFrame != 0 else { return }
                out.append((max(va, start), min(va + 4096, end)))
            }
        }
        out.sort { $0.start < $1.start }
        var merged: [(start: UInt64, end: UInt64)] = []
        for part in out {
            if let last = merged.last, last.end >= part.start { merged[merged.count - 1].end = max(last.end, part.end) } else { merged.append(part) }
        }
        return merged
    }

    /// Gives the reserved page holding `va` (and its untouched neighbours
    /// in its fault-around block, `FaultAround`) fresh zero frames with the
    /// range's protection. A fault (a VM exit and a trip through the run
    /// loop) costs far more than a few more zero frames. Frames come from
    /// the free list (discarded on the host when freed, so zero: a
    /// preemption rollback of a slice that took some leaves them reading
    /// zero, as they did) or are new. True when the page has a frame now
    /// (or had one); false when `va` is not reserved, or no frame is left
    /// for it.
    /// `block`: the pages a fault that continues no run maps (`FaultAround`).
    public func demandMap(_ va: UInt64, block: Int = FaultAround.first) -> Bool {
        guard va < GuestMemory.userLimit, let r = reserved.range(containing: va) else { return false }
        let page = va & ~4095
        var fresh: [(va: UInt64, frame: UInt64)] = []
        switch takeFrame(page, r) {
        case .failed: return false
        case .fresh(let frame): fresh.append((page, frame))
        case .had: break
        }
        let (from, to, run) = faultAround.block(for: page, start: r.start, end: r.end, first: block)
        var at = from
        blocks: while at < to {
            if at != page {
                switch takeFrame(at, r) {
                case .failed: break blocks
                case .fresh(let frame): fresh.append((at, frame))
                case .had: break
                }
            }
            at += 4096
        }
        if let source = r.source {
            // Backed on the host with one madvise, then filled.
            populate(from, count: Int(at - from))
            for f in fresh { fillFresh(f.frame, va: f.va, source.advanced(by: f.va - r.start)) }
        } else if run, !r.protection.isEmpty {
            populate(from, count: Int(at - from))
        }
        reapplyDebugProtection(from, pages: Int((to - from) / 4096))
        return true
    }

    /// One page of the reserved range `r` gets a frame unless it has one,
    /// with the bytes of `r`'s source when it has one and `fill` (a fork
    /// copies the parent's page instead); false when it has none and none
    /// can be had.
    func mapReserved(_ va: UInt64, _ r: ReservedRange, fill: Bool = true) -> Bool {
        switch takeFrame(va, r) {
        case .failed: return false
        case .had: return true
        case .fresh(let frame):
            if fill, let source = r.source { fillFresh(frame, va: va, source.advanced(by: va - r.start)) }
            return true
        }
    }

    private enum Taken { case had, fresh(UInt64), failed }

    /// A frame (zero) for the page at `va` of `r` unless it has one.
    private func takeFrame(_ va: UInt64, _ r: ReservedRange) -> Taken {
        guard let slot = tables.leaf(va, create: true) else { return .failed }
        if slot.pointee & PTE.ownsFrame != 0 || slot.pointee & PTE.present != 0 { return .had }
        guard let frame = freshFrame() else { return .failed }
        slot.pointee = PTE.leaf(frame: frame, protection: r.protection)
        return .fresh(frame)
    }

    /// Writes a fresh frame for the page at `va` with its source's bytes,
    /// and the int3s of the patches on it (their originals are kept already:
    /// `insertPatch`). A preemption checkpoint's idea of a page it has not
    /// seen is zero, which this page no longer is though the slice's page
    /// tables now map it: so the checkpoint learns the bytes too, the
    /// mirror getting them (and the log a mark, for when a checkpoint
    /// discards the frame's old copy) or the latest full copy the page.
    /// A rollback then leaves the page as filled, as a replay (which fills
    /// it at the same first touch) has it.
    private func fillFresh(_ frame: UInt64, va: UInt64, _ source: PageSource) {
        let p = data.pointer(frame)
        source.content.copy(from: source.offset, count: 4096, to: p)
        if !patches.isEmpty {
            for (address, _) in patches where address & ~4095 == va {
                p.storeBytes(of: 0xCC as UInt8, toByteOffset: Int(address & 4095), as: UInt8.self)
            }
        }
        dirty?.mark(frame)
        if let mirror, fullCopyReason == nil, dirty != nil {
            mirror.page(Int((frame - data.guestBase) / 4096)).copyMemory(from: p, byteCount: 4096)
        } else if let snapshot = latestFullCopy {
            snapshot.add(frame, p)
        }
    }

    /// A zero frame KVM has a memslot for, or nil when none is left.
    private func freshFrame() -> UInt64? {
        guard let frame = frames.allocate() else { return nil }
        guard data.ensureRegistered(frame) else {
            frames.release(frame)
            return nil
        }
        return frame
    }

    /// Removes pages; holes are skipped. Their frames go back to the host.
    public func unmap(_ start: UInt64, pages: Int) {
        guard pages > 0, start < GuestMemory.userLimit else { return }
        frameChanges &+= 1
        let end = min(start.saturatingAdd(pages: pages), GuestMemory.userLimit)
        reserved.remove(start, end)
        // Frames handed out in a row mostly come back in a row: one
        // madvise per run of them, not one per page. Frames from the free
        // list come in descending order: a run either way (as `populate`).
        var run: (start: UInt64, end: UInt64)?
        tables.forEachLeaf(from: start, to: end) { _, slot in
            let frame = slot.pointee & PTE.addressMask
            if data.contains(frame) {
                if let r = run, r.end == frame {
                    run = (r.start, frame + 4096)
                } else if let r = run, r.start == frame + 4096 {
                    run = (frame, r.end)
                } else {
                    if let r = run { data.discard(r.start, bytes: r.end - r.start) }
                    run = (frame, frame + 4096)
                }
                release(slot.pointee, discarded: true)
            } else {
                translationsChanged = true  // nothing discarded tells KVM
            }
            slot.pointee = 0
        }
        if let r = run { data.discard(r.start, bytes: r.end - r.start) }
        dropPatches(start, count: Int(end - start))  // breakpoint overlay: the pages are gone
    }

    /// Changes the protection of the mapped pages in the range.
    /// `keepingFrames`: a narrowed page keeps its frame (and the next run
    /// drops every cached translation) instead of moving to a fresh one.
    /// Changes in the middle of a slice need it (W^X phase flips at a
    /// fault): a preemption checkpoint is indexed by frame and assumes the
    /// slice's page tables are those it was taken with.
    public func protect(_ start: UInt64, pages: Int, protection: PageProtection, keepingFrames: Bool = false) {
        protect(start, pages: pages, protection: protection, access: .user, keepingFrames: keepingFrames)
    }

    func protect(_ start: UInt64, pages: Int, protection: PageProtection, access: GuestAccess, user: Bool = true,
                 keepingFrames: Bool = false) {
        let limit = GuestMemory.limit(access)
        guard pages > 0, start < limit else { return }
        let end = min(start.saturatingAdd(pages: pages), limit)
        reserved.protect(start, end, protection)
        var narrowed: [UnsafeMutablePointer<UInt64>] = []
        tables.forEachLeaf(from: start, to: end) { _, slot in
            let old = slot.pointee
            let new = PTE.leaf(frame: old & PTE.addressMask, protection: protection, user: user)
            if !PTE.protection(of: old).isSubset(of: protection) { narrowed.append(slot) }
            slot.pointee = new
        }
        if narrowed.isEmpty || !mayHoldTranslations {
            // Nothing the vCPU may have cached.
        } else if keepingFrames || narrowed.count > GuestMemory.mostFramesMovedForProtection {
            translationsChanged = true
        } else {
            for slot in narrowed where !moveToFreshFrame(slot) { translationsChanged = true }
        }
        reapplyDebugProtection(start, pages: Int((end - start) / 4096))
    }

    /// Up to how many pages a narrowing mprotect moves to fresh frames
    /// rather than drop every cached translation (ld.so's RELRO: a few).
    static let mostFramesMovedForProtection = 64

    /// Gives the page of `slot` a copy of its frame, discarding the old one:
    /// KVM's MMU notifier then drops its translations to the old frame
    /// (see `translationsChanged`), so a narrowed protection needs no
    /// memslot round trip. False when that cannot be done (no frame free).
    private func moveToFreshFrame(_ slot: UnsafeMutablePointer<UInt64>) -> Bool {
        let entry = slot.pointee
        let old = entry & PTE.addressMask
        guard data.contains(old), let fresh = freshFrame() else { return false }
        data.pointer(fresh).copyMemory(from: data.pointer(old), byteCount: 4096)
        frameChanges &+= 1
        dirty?.mark(fresh)  // a host write: KVM's log does not see it
        slot.pointee = (entry & ~PTE.addressMask) | fresh
        release(entry)
        return true
    }

    /// Moves the frames of [from, from+pages) to [to, to+pages) without
    /// copying (mremap). The destination must be unmapped.
    public func move(from: UInt64, to: UInt64, pages: Int) throws(GuestMemoryFault) {
        try checkRange(from, pages: pages)
        try checkRange(to, pages: pages)
        frameChanges &+= 1
        let length = UInt64(pages) * 4096
        let movedRanges = reserved.overlapping(from, from + length)
        reserved.remove(from, from + length)
        reserved.remove(to, to + length)
        for r in movedRanges { reserved.insert(r.start - from + to, r.end - from + to, protection: r.protection, source: r.source) }
        var moved: [(UInt64, UInt64)] = []
        tables.forEachLeaf(from: from, to: from + UInt64(pages) * 4096) { va, slot in
            moved.append((va - from, slot.pointee))
            slot.pointee = 0
        }
        for (offset, entry) in moved {
            guard let slot = tables.leaf(to + offset, create: true) else { throw GuestMemoryFault(address: to + offset) }
            slot.pointee = PTE.real(entry)
        }
        translationsChanged = true
        reapplyDebugProtection(to, pages: pages)
        movePatches(from: from, to: to, count: pages * 4096)  // breakpoint overlay: the bytes moved
    }

    /// Asked before a write with the guest's rights to a page the page
    /// tables keep read-only: the kernel may make it writable and answer
    /// true (a page of a writable and executable mapping in its executable
    /// phase, `WriteXorExecute` in Kernel).
    public var makeWritable: ((UInt64) -> Bool)?

    /// The protection of the page holding `va`, nil when nothing is mapped there.
    /// detrec's system pages are not the guest's: nothing is mapped there for it.
    public func protection(at va: UInt64) -> PageProtection? {
        guard va < GuestMemory.userLimit else { return nil }
        let e = tables.entry(va & ~4095)
        if e & (PTE.present | PTE.ownsFrame) != 0 { return PTE.protection(of: e) }
        return reserved.isEmpty ? nil : reserved.range(containing: va)?.protection
    }

    /// Gives a page's frame back; `discarded`: the caller discards it on
    /// the host (before the frame is handed out again, and before the
    /// guest runs: that drops KVM's translations to it). False when the
    /// entry's frame is none of `data`'s (nothing was discarded).
    @discardableResult
    private func release(_ entry: UInt64, discarded: Bool = false) -> Bool {
        let frame = entry & PTE.addressMask
        guard data.contains(frame) else { return false }
        if !discarded { data.discard(frame, bytes: 4096) }
        dirty?.release(frame)
        frames.release(frame)
        return true
    }

    private func checkRange(_ start: UInt64, pages: Int, limit: UInt64 = GuestMemory.userLimit) throws(GuestMemoryFault) {
        guard start & 4095 == 0, pages >= 0,
              start < limit,
              UInt64(pages) <= (limit - start) / 4096 else {
            throw GuestMemoryFault(address: start)
        }
    }

    // MARK: access

    /// The host address of the byte at `va` and how many bytes of its page
    /// follow, if the access is allowed.
    private func hostSpan(_ va: UInt64, write: Bool, access: GuestAccess) -> (UnsafeMutableRawPointer, Int)? {
        guard va < GuestMemory.limit(access) else { return nil }
        // The guest's own rights, not what a debugger's watchpoints hide.
        var e = PTE.real(tables.entry(va & ~4095))
        if e & PTE.ownsFrame == 0 {
            // A reserved page gets its frame at detrec's first touch too,
            // read or write (the one rule for every host access: syscall
            // buffers, signal frames, replay's writes, a debugger's reads).
            guard !reserved.isEmpty, let r = reserved.range(containing: va),
                  GuestMemory.allows(r.protection, write: write, access: access), demandMap(va) else { return nil }
            e = PTE.real(tables.entry(va & ~4095))
            guard e & PTE.ownsFrame != 0 else { return nil }
        }
        if access == .user {
            guard e & PTE.present != 0, e & PTE.user != 0 else { return nil }
            if write && e & PTE.writable == 0 {
                guard let makeWritable, makeWritable(va & ~4095) else { return nil }
                e = PTE.real(tables.entry(va & ~4095))
                guard e & PTE.writable != 0 else { return nil }
            }
        }
        let frame = e & PTE.addressMask
        guard data.contains(frame) else { return nil }
        // The one place detrec's writes go through: KVM's log does not see them.
        if write { dirty?.mark(frame) }
        let offset = Int(va & 4095)
        return (data.pointer(frame) + offset, 4096 - offset)
    }

    /// The bytes of [va, va + count) as a read with detrec's rights shows
    /// them, without giving untouched reserved pages frames: those read
    /// their source's bytes (or zeros). The rdtsc scan of a mapping filled
    /// lazily reads this (`PatchedInstructions`).
    public func peek(_ va: UInt64, count: Int) throws(GuestMemoryFault) -> [UInt8] {
        guard count > 0 else { return [] }
        let (end, overflow) = va.addingReportingOverflow(UInt64(count))
        guard !overflow, end <= GuestMemory.userLimit else { throw GuestMemoryFault(address: va) }
        var out = [UInt8](repeating: 0, count: count)
        var at = va
        while at < end {
            let n = Int(min(end, (at & ~4095) + 4096) - at)
            let done = Int(at - va)
            if let r = untouchedReservation(at) {
                if let source = r.source {
                    out.withUnsafeMutableBytes { b in
                        guard let base = b.baseAddress else { return }
                        source.content.copy(from: source.offset &+ (at - r.start), count: n, to: base + done)
                    }
                }
            } else {
                guard let (p, _) = hostSpan(at, write: false, access: .kernel) else { throw GuestMemoryFault(address: at) }
                out.withUnsafeMutableBytes { b in
                    guard let base = b.baseAddress else { return }
                    (base + done).copyMemory(from: p, byteCount: n)
                }
            }
            at += UInt64(n)
        }
        // Patches on unfilled pages hold the source's bytes as originals too.
        if !patches.isEmpty { out.withUnsafeMutableBytes { showOriginals($0, at: va) } }
        return out
    }

    /// Whether a reserved page of this protection takes the access.
    private static func allows(_ protection: PageProtection, write: Bool, access: GuestAccess) -> Bool {
        access != .user || (!protection.isEmpty && (!write || protection.contains(.write)))
    }

    /// How many bytes of the page of `va` an access may reach, without
    /// giving a reserved page its frame (checks before the access).
    private func reach(_ va: UInt64, write: Bool, access: GuestAccess) -> Int? {
        if let r = untouchedReservation(va) {
            return GuestMemory.allows(r.protection, write: write, access: access) ? 4096 - Int(va & 4095) : nil
        }
        return hostSpan(va, write: write, access: access)?.1
    }

    /// The guest-physical frame behind `va` in the data region, if any.
    func frame(of va: UInt64) -> UInt64? {
        guard va < GuestMemory.userLimit else { return nil }
        return frame(ofAny: va)
    }

    /// `frame(of:)` for the machine's own pages as well (GDT ... XSAVE area).
    func frame(ofAny va: UInt64) -> UInt64? {
        guard va < Layout.systemEnd else { return nil }
        let e = tables.entry(va & ~4095)
        guard e & PTE.ownsFrame != 0 else { return nil }
        let frame = e & PTE.addressMask
        return data.contains(frame) ? frame : nil
    }

    /// Walks [va, va+count) page by page; throws at the first bad page.
    private func forEachSpan(_ va: UInt64, count: Int, write: Bool, access: GuestAccess,
                             _ body: (UnsafeMutableRawPointer, Int, Int) -> Void) throws(GuestMemoryFault) {
        guard count > 0 else { return }
        let (end, overflow) = va.addingReportingOverflow(UInt64(count))
        guard !overflow, end <= GuestMemory.limit(access) else { throw GuestMemoryFault(address: va) }
        var done = 0
        while done < count {
            let at = va + UInt64(done)
            guard let (p, avail) = hostSpan(at, write: write, access: access) else {
                throw GuestMemoryFault(address: at)
            }
            let n = min(avail, count - done)
            body(p, done, n)
            done += n
        }
    }

    /// How many bytes from `va` (at most `count`) the guest may read (or
    /// write) before the first page it may not.
    public func accessibleExtent(_ va: UInt64, count: Int, write: Bool, access: GuestAccess = .user) -> Int {
        var done = 0
        while done < count {
            let (at, overflow) = va.addingReportingOverflow(UInt64(done))
            guard !overflow, let avail = reach(at, write: write, access: access) else { break }
            done += min(avail, count - done)
        }
        return done
    }

    /// Checks that the whole range may be read (or written) without touching it.
    public func check(_ va: UInt64, count: Int, write: Bool, access: GuestAccess = .user) throws(GuestMemoryFault) {
        guard count > 0 else { return }
        let (end, overflow) = va.addingReportingOverflow(UInt64(count))
        guard !overflow, end <= GuestMemory.limit(access) else { throw GuestMemoryFault(address: va) }
        let reachable = accessibleExtent(va, count: count, write: write, access: access)
        if reachable < count { throw GuestMemoryFault(address: va + UInt64(reachable)) }
    }

    public func read(_ va: UInt64, count: Int, access: GuestAccess = .user) throws(GuestMemoryFault) -> [UInt8] {
        try check(va, count: count, write: false, access: access)
        var out = [UInt8](repeating: 0, count: count)
        var failure: GuestMemoryFault?
        out.withUnsafeMutableBytes { buf in
            do throws(GuestMemoryFault) { try read(into: buf, from: va, access: access) } catch { failure = error }
        }
        if let failure { throw failure }   // a reserved page no frame was left for
        return out
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, from va: UInt64, access: GuestAccess = .user) throws(GuestMemoryFault) {
        guard let base = buffer.baseAddress else { return }
        try forEachSpan(va, count: buffer.count, write: false, access: access) { p, off, n in
            (base + off).copyMemory(from: p, byteCount: n)
        }
        if !patches.isEmpty { showOriginals(UnsafeMutableRawBufferPointer(start: base, count: buffer.count), at: va) }
    }

    public func write(_ va: UInt64, bytes: UnsafeRawBufferPointer, access: GuestAccess = .user) throws(GuestMemoryFault) {
        guard let base = bytes.baseAddress else { return }
        // Check first so that a failed write changes nothing: this pass
        // also gives reserved pages their frames (or fails, out of frames).
        try forEachSpan(va, count: bytes.count, write: true, access: access) { _, _, _ in }
        try forEachSpan(va, count: bytes.count, write: true, access: access) { p, off, n in
            p.copyMemory(from: base + off, byteCount: n)
        }
        if !patches.isEmpty { keepPatches(va, count: bytes.count) }
    }

    public func write(_ va: UInt64, _ bytes: [UInt8], access: GuestAccess = .user) throws(GuestMemoryFault) {
        try check(va, count: bytes.count, write: true, access: access)
        var failure: GuestMemoryFault?
        bytes.withUnsafeBytes { b in
            do throws(GuestMemoryFault) { try write(va, bytes: b, access: access) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    /// Zeroes a range (the tail of a file mapping's last page, bss).
    public func zero(_ va: UInt64, count: Int, access: GuestAccess = .user) throws(GuestMemoryFault) {
        try check(va, count: count, write: true, access: access)
        try forEachSpan(va, count: count, write: true, access: access) { p, _, n in
            p.initializeMemory(as: UInt8.self, repeating: 0, count: n)
        }
        if !patches.isEmpty { keepPatches(va, count: count) }
    }

    public func readValue<T: FixedWidthInteger>(_ va: UInt64, as: T.Type = T.self, access: GuestAccess = .user) throws(GuestMemoryFault) -> T {
        try check(va, count: MemoryLayout<T>.size, write: false, access: access)
        var v = T.zero
        try withUnsafeMutableBytes(of: &v) { b throws(GuestMemoryFault) in try read(into: b, from: va, access: access) }
        return T(littleEndian: v)
    }

    public func writeValue<T: FixedWidthInteger>(_ va: UInt64, _ value: T, access: GuestAccess = .user) throws(GuestMemoryFault) {
        try check(va, count: MemoryLayout<T>.size, write: true, access: access)
        var v = value.littleEndian
        try withUnsafeBytes(of: &v) { b throws(GuestMemoryFault) in try write(va, bytes: b, access: access) }
    }

    /// A NUL-terminated string of at most `limit` bytes (without the NUL).
    /// Reads page by page, so a string ending just before an unmapped page works.
    public func readCString(_ va: UInt64, limit: Int = 4096) throws(GuestMemoryFault) -> [UInt8] {
        var out: [UInt8] = []
        var at = va
        while out.count <= limit {
            guard let (p, avail) = hostSpan(at, write: false, access: .user) else { throw GuestMemoryFault(address: at) }
            var bytes = Array(UnsafeRawBufferPointer(start: p, count: avail))
            if !patches.isEmpty { bytes.withUnsafeMutableBytes { showOriginals($0, at: at) } }
            if let nul = bytes.firstIndex(of: 0) {
                out.append(contentsOf: bytes[0..<nul])
                guard out.count <= limit else { throw GuestMemoryFault(address: va) }
                return out
            }
            out.append(contentsOf: bytes)
            at += UInt64(avail)
        }
        throw GuestMemoryFault(address: va)
    }

    // MARK: breakpoint overlay (added for the gdb stub, Sources/Replay/GDB)
    //
    // A debugger's int3 (0xCC) patched into guest memory must be invisible
    // to everything but the CPU: gdb reading code, a syscall handler reading
    // a guest buffer and replay's checks all see the original byte, and a
    // write over a patched byte (replay restoring recorded memory, the
    // guest's own writes through a syscall) updates the saved original and
    // keeps the 0xCC. Mapping or unmapping a page drops its patches; mremap
    // moves them. Costs nothing while no breakpoint is inserted.

    /// Patched addresses and the original byte at each.
    public private(set) var patches: [UInt64: UInt8] = [:]
    /// How many users hold each patch (a gdb breakpoint, a preemption
    /// counter and an rdtsc site may share an address).
    private var holders: [UInt64: Int] = [:]

    /// The overlay's bookkeeping (what is patched, the original bytes, the
    /// holders), saved by a preemption checkpoint: a rollback puts memory's
    /// bytes back as they were, int3s included, so it must put back which
    /// of them are patches too (`restorePatchState`).
    public struct PatchState {
        fileprivate var patches: [UInt64: UInt8]
        fileprivate var holders: [UInt64: Int]
    }

    public var patchState: PatchState { PatchState(patches: patches, holders: holders) }

    /// Only right after memory was restored to the bytes it held when
    /// `state` was taken.
    public func restorePatchState(_ state: PatchState) {
        patches = state.patches
        holders = state.holders
    }

    /// Writes an int3 (0xCC) at `va`, ignoring page protection, and
    /// remembers what was there. Each insert needs its own remove.
    public func insertPatch(_ va: UInt64) throws(GuestMemoryFault) {
        if let r = untouchedReservation(va), let source = r.source {
            // Its page is not filled yet: the original comes from the
            // source, and the int3 goes in with the fill (`fillFresh`).
            if patches[va] == nil { patches[va] = source.content.bytes(from: source.offset &+ (va - r.start), count: 1)[0] }
            holders[va, default: 0] += 1
            return
        }
        guard let (p, _) = hostSpan(va, write: true, access: .kernel) else { throw GuestMemoryFault(address: va) }
        if patches[va] == nil { patches[va] = p.load(as: UInt8.self) }
        p.storeBytes(of: 0xCC as UInt8, as: UInt8.self)
        holders[va, default: 0] += 1
    }

    /// How many inserts at `va` are not removed yet.
    public func patchHolders(_ va: UInt64) -> Int { patches[va] == nil ? 0 : holders[va] ?? 0 }

    /// Drops one insert at `va`; the last one puts the original byte back.
    /// A byte the guest itself overwrote since (the CPU does not go through
    /// this class) is left as the guest wrote it.
    public func removePatch(_ va: UInt64) {
        guard patches[va] != nil else { return }
        let left = (holders[va] ?? 1) - 1
        guard left <= 0 else { holders[va] = left; return }
        holders[va] = nil
        guard let original = patches.removeValue(forKey: va) else { return }
        if isUntouchedReserved(va) { return }  // never filled: its int3 was never written
        if let (p, _) = hostSpan(va, write: true, access: .kernel), p.load(as: UInt8.self) == 0xCC {
            p.storeBytes(of: original, as: UInt8.self)
        }
    }

    /// Puts the original byte at `va` for one instruction (stepping over a
    /// patch), whoever holds it; `relayPatch` puts the int3 back.
    public func liftPatch(_ va: UInt64) {
        guard let original = patches[va], let (p, _) = hostSpan(va, write: true, access: .kernel) else { return }
        p.storeBytes(of: original, as: UInt8.self)
    }

    public func relayPatch(_ va: UInt64) {
        guard patches[va] != nil, let (p, _) = hostSpan(va, write: true, access: .kernel) else { return }
        p.storeBytes(of: 0xCC as UInt8, as: UInt8.self)
    }

    /// Replaces patched bytes in a buffer just read from [va, va+count) by their originals.
    private func showOriginals(_ buffer: UnsafeMutableRawBufferPointer, at va: UInt64) {
        for (address, original) in patches where address >= va && address - va < UInt64(buffer.count) {
            buffer[Int(address - va)] = original
        }
    }

    /// After a write over [va, va+count): the written bytes become the
    /// originals and the patches go back in.
    private func keepPatches(_ va: UInt64, count: Int) {
        for (address, _) in patches where address >= va && address - va < UInt64(count) {
            guard let (p, _) = hostSpan(address, write: true, access: .kernel) else { continue }
            patches[address] = p.load(as: UInt8.self)
            p.storeBytes(of: 0xCC, as: UInt8.self)
        }
    }

    private func dropPatches(_ va: UInt64, count: Int) {
        guard !patches.isEmpty else { return }
        for address in patches.keys where address >= va && address - va < UInt64(count) {
            patches.removeValue(forKey: address)
            holders[address] = nil
        }
    }

    private func movePatches(from: UInt64, to: UInt64, count: Int) {
        guard !patches.isEmpty else { return }
        for (address, original) in patches where address >= from && address - from < UInt64(count) {
            patches.removeValue(forKey: address)
            patches[to + (address - from)] = original
            holders[to + (address - from)] = holders.removeValue(forKey: address)
        }
    }
}

extension UInt64 {
    /// `self + pages * 4096`, saturating at UInt64.max.
    func saturatingAdd(pages: Int) -> UInt64 {
        let (bytes, o1) = UInt64(Swift.max(0, pages)).multipliedReportingOverflow(by: 4096)
        let (sum, o2) = addingReportingOverflow(bytes)
        return o1 || o2 ? .max : sum
    }
}
