import Glibc
import KVMUser

/// The address space calls. They only change the guest (page tables and
/// the mapping list), so they run the same way in record and replay; only
/// the contents of a file mapping come from the host (or the trace).
enum MemorySyscalls {
    static func register(_ t: inout SyscallTable) {
        t.add(SYS.brk, brk)
        t.add(SYS.mmap, .emulated, note: "MAP_HUGETLB is ENOMEM (no huge page pool); MAP_GROWSDOWN grows on faults", mmap)
        t.add(SYS.munmap, munmap)
        t.add(SYS.mprotect, mprotect)
        t.add(SYS.mremap, .emulated, note: "old_size 0 and MREMAP_DONTUNMAP of shared memory refused (EINVAL)", Remap.mremap)
        t.add(SYS.madvise, .emulated, note: "MADV_GUARD_INSTALL and MADV_COLLAPSE refused (EINVAL), MADV_HWPOISON EPERM", MemoryAdvice.madvise)
        t.add(SYS.msync, .emulated, note: "writes shared file pages back", msync)
        MemoryLocks.register(&t)
        ProcessMemoryTransfer.register(&t)
    }

    static func protection(_ prot: Int32) throws(Errno) -> PageProtection {
        guard prot & ~0x7 == 0 else { throw .inval }
        var p: PageProtection = []
        if prot & 1 != 0 { p.insert(.read) }
        if prot & 2 != 0 { p.insert(.write) }
        // x86 cannot map write-only or execute-only: both imply read, as on Linux.
        if prot & 4 != 0 { p.formUnion([.execute, .read]) }
        if p.contains(.write) { p.insert(.read) }
        return p
    }

    /// brk: a request that cannot be met (below the start, into other
    /// mappings or past the mmap area, or out of memory) returns the old
    /// break and leaves the address space as it was.
    static func brk(_ c: SyscallCall) throws -> Int64 {
        let p = c.process
        let want = c.arg(0)
        guard want >= p.space.brkStart, let newEnd = AddressSpace.pageUp(want), newEnd <= p.space.mmapBase else {
            return Int64(p.space.brk)
        }
        let oldEnd = AddressSpace.pageUp(p.space.brk) ?? p.space.brk
        let heap = Mapping(start: p.space.brkStart, end: newEnd, protection: .rw, name: "[heap]",
                           options: p.space.futureOptions)
        if newEnd > oldEnd, DemandFault.brkReserves(newEnd - oldEnd) {
            guard p.space.isFree(oldEnd, newEnd) else { return Int64(p.space.brk) }
            do throws(Errno) { try DemandFault.reserve(p, heap, from: oldEnd, to: newEnd) } catch { return Int64(p.space.brk) }
        } else if newEnd > oldEnd {
            guard p.space.isFree(oldEnd, newEnd) else { return Int64(p.space.brk) }
            do { try p.memory.map(oldEnd, pages: Int((newEnd - oldEnd) / 4096), protection: .rw) } catch {
                // Out of guest memory part way: the pages already mapped go again.
                p.memory.unmap(oldEnd, pages: Int((newEnd - oldEnd) / 4096))
                return Int64(p.space.brk)
            }
        } else if newEnd < oldEnd {
            p.memory.unmap(newEnd, pages: Int((oldEnd - newEnd) / 4096))
        }
        p.space.remove(p.space.brkStart, max(oldEnd, newEnd))
        if newEnd > p.space.brkStart { p.space.insert(heap) }
        // mlockall(MCL_FUTURE): brk faults the new pages in, as Linux's mm_populate.
        if newEnd > oldEnd, heap.options.contains(.locked) { _ = MemoryLocks.populate(p, oldEnd, newEnd) }
        p.space.brk = want
        return Int64(want)
    }

    static let MAP_SHARED: Int32 = 0x1, MAP_PRIVATE: Int32 = 0x2, MAP_SHARED_VALIDATE: Int32 = 0x3
    static let MAP_FIXED: Int32 = 0x10, MAP_ANONYMOUS: Int32 = 0x20, MAP_FIXED_NOREPLACE: Int32 = 0x100000
    static let MAP_DROPPABLE: Int32 = 0x08, MAP_32BIT: Int32 = 0x40, MAP_GROWSDOWN: Int32 = 0x100
    static let MAP_LOCKED: Int32 = 0x2000, MAP_NORESERVE: Int32 = 0x4000, MAP_POPULATE: Int32 = 0x8000
    static let MAP_HUGETLB: Int32 = 0x40000
    /// The flags MAP_SHARED_VALIDATE knows on x86-64 (LEGACY_MAP_MASK, MAP_32BIT,
    /// MAP_ABOVE4G, the huge page size bits' MAP_UNINITIALIZED); MAP_SYNC
    /// needs a DAX file, which a recording never maps.
    static let validatedFlags: Int32 = 0x3 | 0x10 | 0x20 | 0x40 | 0x80 | 0x100 | 0x800 | 0x1000 | 0x2000 | 0x4000
        | 0x8000 | 0x10000 | 0x20000 | 0x40000 | 0x400_0000
    /// MAP_32BIT places mappings in [1 GiB, 2 GiB), bottom-up (x86's legacy layout).
    static let low32Base: UInt64 = 0x4000_0000, low32End: UInt64 = 0x8000_0000

    static func mmap(_ c: SyscallCall) throws -> Int64 {
        let hint = c.arg(0), flags = c.int(3), offset = c.arg(5)
        // do_mmap takes the PROT_ bits it knows and ignores the rest (only
        // mprotect validates them).
        let prot = try protection(c.int(2) & 0x7)
        guard c.arg(1) > 0, offset & 4095 == 0 else { throw Errno.inval }
        guard let length = AddressSpace.pageUp(c.arg(1)), length < GuestMemory.userLimit else { throw Errno.nomem }
        let kind = flags & 0xf   // MAP_TYPE
        guard [MAP_SHARED, MAP_PRIVATE, MAP_SHARED_VALIDATE, MAP_DROPPABLE].contains(kind) else { throw Errno.inval }
        let anonymous = flags & MAP_ANONYMOUS != 0
        var file: OpenFile?
        if !anonymous {
            file = try c.file(4)
        }
        if flags & MAP_HUGETLB != 0 {
            // The guest has no huge page pool, as a host with
            // vm.nr_hugepages = 0: a size the CPU has is ENOMEM, any other
            // EINVAL; a file that is not on hugetlbfs is EINVAL.
            let sizeLog = (flags >> 26) & 0x3f
            guard anonymous, [0, 21, 30].contains(sizeLog) else { throw Errno.inval }
            throw Errno.nomem
        }
        // MAP_SHARED_VALIDATE is for files; MAP_DROPPABLE for anonymous memory.
        if kind == MAP_SHARED_VALIDATE {
            guard !anonymous else { throw Errno.inval }
            guard flags & ~validatedFlags == 0 else { throw Errno.notsup }
        }
        if kind == MAP_DROPPABLE && !anonymous { throw Errno.inval }
        // VM_GROWSDOWN only for private anonymous memory (and not droppable).
        if flags & MAP_GROWSDOWN != 0 && (!anonymous || kind != MAP_PRIVATE) { throw Errno.inval }
        var options = c.process.space.futureOptions
        if flags & MAP_GROWSDOWN != 0 { options.insert(.growsDown) }
        if flags & MAP_LOCKED != 0 { options.insert(.locked) }
        if flags & MAP_NORESERVE != 0 { options.insert(.noReserve) }
        // Droppable pages are wiped in a fork's child and left out of dumps.
        if kind == MAP_DROPPABLE { options.formUnion([.wipeOnFork, .dontDump]) }
        let shared = kind == MAP_SHARED || kind == MAP_SHARED_VALIDATE
        // Writable shared file mappings and shared anonymous memory stay
        // coherent between processes and with the file (`SharedMemory`).
        let sharedView = shared && (anonymous || prot.contains(.write))
        let p = c.process
        let start: UInt64
        if flags & (MAP_FIXED | MAP_FIXED_NOREPLACE) != 0 {
            guard hint & 4095 == 0 else { throw Errno.inval }
            guard hint < GuestMemory.userLimit, length <= GuestMemory.userLimit - hint else { throw Errno.nomem }
            if flags & MAP_FIXED == 0, !p.space.isFree(hint, hint + length) { throw Errno.exist }
            start = hint
            p.unmap(start, start + length)
        } else if flags & MAP_32BIT != 0 {
            guard let low = lowFree(p.space, length: length, hint: hint) else { throw Errno.nomem }
            start = low
        } else {
            guard let free = p.space.findFree(length: length, hint: hint) else { throw Errno.nomem }
            start = free
        }
        var mapping = Mapping(start: start, end: start + length, protection: prot, shared: shared,
                              name: file?.path ?? "", fileOffset: anonymous ? 0 : offset, options: options,
                              file: file.map(MappedFile.init))
        try p.map(mapping)
        guard let file else {
            if sharedView {
                p.mm.sharedViews.append(SharedView(start: start, end: start + length, object: SharedMemory.object(for: nil, process: p), offset: 0))
            }
            // MAP_POPULATE and MAP_LOCKED fault the pages in (mincore sees them).
            if flags & MAP_POPULATE != 0 || options.contains(.locked) { _ = MemoryLocks.populate(p, start, start + length) }
            return Int64(start)
        }
        let outcome = try c.hostOutcome { effects throws(Errno) -> Int64 in
            guard let fd = file.hostFD else { throw .badf }
            if sharedView {
                // As Linux: the file must be open for reading and writing, and not sealed against writes.
                guard SharedMemory.openForWriting(file) else { throw .acces }
                let seals = Glibc.fcntl(fd, 1034)   // F_GET_SEALS
                if seals > 0 && seals & (8 | 16) != 0 { throw .perm }   // F_SEAL_WRITE, F_SEAL_FUTURE_WRITE
                // Which file this is, so replay finds the same shared object.
                if let identity = SharedMemory.identity(of: fd) { effects.carry(identity) }
            } else if shared, let inode = SharedObject.inode(of: fd) {
                // A read-only view of a regular file: it shows what the file
                // gets, too. One more byte: whether mprotect may make it writable.
                effects.carry(inode.carried + [SharedMemory.openForWriting(file) ? 1 : 0])
            }
            try effects.fill(start, fromHostFD: fd, offset: offset, length: length)
            return Int64(start)
        }
        let r = outcome.result
        if r < 0 {
            p.unmap(start, start + length)
            return r
        }
        // What was filled in (the trace's record of it, in replay) says where
        // the file ended: whole pages past that raise SIGBUS when touched.
        let filled = outcome.filled(at: start)
        if filled < length {
            mapping.fileEnd = offset + (AddressSpace.pageUp(filled) ?? length)
            p.space.insert(mapping)
            p.protectPages(start, start + length)
        }
        if prot.contains(.execute) && !WriteXorExecute.applies(prot) {
            // Fresh pages with nothing but the file's bytes: the scan of the
            // same bytes at the same offset is known (`ScanKey`).
            let key = outcome.fill(at: start).flatMap { f in
                f.sha256.isEmpty || f.offset != offset ? nil
                    : PatchedInstructions.ScanKey(layout: .fileMapping, sha256: f.sha256, offset: offset, extent: f.length, length: length)
            }
            let code = outcome.fill(at: start).flatMap { f in
                PatchedInstructions.codeOfMapping(f.content, sha256: f.sha256, start: start, offset: f.offset, length: length)
            }
            PatchedInstructions.patch(p.mm, from: start, to: start + length, content: key, code: code)
        }
        // Decided from what the host call carried, the same in record and replay.
        let readOnlyView = shared && !sharedView && outcome.carried.first?.count == 17
        if sharedView || readOnlyView {
            let carried = outcome.carried.first.map { Array($0.prefix(16)) }
            let object = SharedMemory.object(for: file, identity: carried, process: p)
            if p.mm.sharedViews.contains(where: { $0.object === object && $0.offset < offset + length && offset < $0.offset + ($0.end - $0.start) }) {
                // Two ranges of one memory showing the same pages would need
                // one frame behind both; each is its own copy until the next
                // process switch.
                p.report("mmap of a range of \(file.path) this process already maps MAP_SHARED: writes through one are not seen through the other at once",
                         key: 0x2_0000_0003, rip: c.rip)
            }
            var view = SharedView(start: start, end: start + length, object: object, offset: offset)
            if readOnlyView {
                view.guestWritable = false
                view.mayWrite = outcome.carried.first?.last == 1
            }
            p.mm.sharedViews.append(view)
            // The object has what this view shows. A read-only one shows
            // the file, which is what a page the object lacks means.
            if sharedView { SharedMemory.push(p.mm, from: start, to: start + length) }
        }
        return r
    }

    /// The lowest free range of `length` bytes in [1 GiB, 2 GiB), or the
    /// hint when that range is free and ends below 2 GiB (MAP_32BIT).
    static func lowFree(_ space: AddressSpace, length: UInt64, hint: UInt64) -> UInt64? {
        guard length <= low32End - low32Base else { return nil }
        if hint != 0, let h = AddressSpace.pageUp(hint), h >= space.mmapMin, h <= low32End - length, space.isFree(h, h + length) {
            return h
        }
        var at = low32Base
        for m in space.mappings where m.end > at {
            if m.start >= at + length { break }
            at = m.end
        }
        return at <= low32End - length ? at : nil
    }

    static func munmap(_ c: SyscallCall) throws -> Int64 {
        let start = c.arg(0)
        guard start & 4095 == 0, c.arg(1) > 0, let length = AddressSpace.pageUp(c.arg(1)),
              start < GuestMemory.userLimit, length <= GuestMemory.userLimit - start else { throw Errno.inval }
        c.process.unmap(start, start + length)
        return 0
    }

    /// mprotect as mm/mprotect.c does it: the mappings from `start` on get
    /// the new rights up to the first hole, which makes it ENOMEM (so does
    /// a range past the guest's TASK_SIZE, where nothing is mapped).
    static func mprotect(_ c: SyscallCall) throws -> Int64 {
        let start = c.arg(0)
        let raw = c.int(2)
        guard raw & 0x0300_0000 != 0x0300_0000 else { throw Errno.inval }   // GROWSDOWN and GROWSUP
        guard start & 4095 == 0 else { throw Errno.inval }
        guard c.arg(1) > 0 else { return 0 }
        guard let length = AddressSpace.pageUp(c.arg(1)), start.addingReportingOverflow(length).overflow == false else {
            throw Errno.nomem
        }
        guard raw & ~0x0300_0008 & ~0x7 == 0 else { throw Errno.inval }   // PROT_SEM is accepted
        let prot = try protection(raw & 0x7)
        let p = c.process
        let end = start + length
        var at = start
        for m in p.space.mappings where m.end > at && m.start < end {
            guard m.start <= at else { break }
            at = min(m.end, end)
        }
        // A shared view of a file not open for writing stays read-only:
        // the mappings before it change, then EACCES (mm/mprotect.c).
        var refused = false
        if prot.contains(.write), let bad = p.mm.sharedViews.filter({ !$0.mayWrite && $0.start < at && start < $0.end }).min(by: { $0.start < $1.start }) {
            at = max(start, bad.start)
            refused = true
        }
        if prot.contains(.write) {
            for i in p.mm.sharedViews.indices where p.mm.sharedViews[i].start < at && start < p.mm.sharedViews[i].end {
                p.mm.sharedViews[i].guestWritable = true
            }
        }
        if at > start {
            p.space.protect(start, at, prot)
            // Code made writable may be rewritten: its patches go; code made
            // executable is scanned (a JIT that flips W^X itself).
            p.space.codePages = p.space.codePages.filter { $0 < start || $0 >= at }
            if prot.contains(.write) { PatchedInstructions.unpatch(p, from: start, to: at) }
            p.protectPages(start, at)   // pages beyond a mapped file's end keep faulting
            if prot.contains(.execute) && !WriteXorExecute.applies(prot) { PatchedInstructions.patch(p, from: start, to: at) }
        }
        if refused { throw Errno.acces }
        guard at >= end else { throw Errno.nomem }
        return 0
    }

    /// msync as mm/msync.c: the mapped parts of the range are synced, a
    /// hole makes the result ENOMEM, MS_INVALIDATE of locked pages is
    /// EBUSY. Pages of shared file mappings reach their files in the host
    /// call (`SyscallCall.hostOutcome` writes them back); MS_SYNC also
    /// syncs those files, as vfs_fsync_range does.
    static func msync(_ c: SyscallCall) throws -> Int64 {
        let start = c.arg(0), flags = c.int(2)
        let MS_ASYNC: Int32 = 1, MS_INVALIDATE: Int32 = 2, MS_SYNC: Int32 = 4
        guard start & 4095 == 0, flags & ~(MS_ASYNC | MS_INVALIDATE | MS_SYNC) == 0,
              flags & (MS_ASYNC | MS_SYNC) != (MS_ASYNC | MS_SYNC) else { throw Errno.inval }
        guard let length = AddressSpace.pageUp(c.arg(1)), !start.addingReportingOverflow(length).overflow else { throw Errno.nomem }
        guard length > 0 else { return 0 }
        let p = c.process
        let end = start + length
        let inRange = p.space.mappings.filter { $0.end > start && $0.start < end }
        if flags & MS_INVALIDATE != 0, inRange.contains(where: { $0.options.contains(.locked) }) { throw Errno(EBUSY) }
        let result: Int64 = p.space.isFullyMapped(start, end) ? 0 : Errno.nomem.result
        let files = flags & MS_SYNC == 0 ? [] : p.mm.sharedViews.filter { $0.start < end && start < $0.end }.compactMap { $0.object.file?.hostFD }
        return try c.host { _ in
            for fd in Set(files) { _ = fsync(fd) }
            return result
        }
    }
}
