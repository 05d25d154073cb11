import KVMUser

/// mremap as mm/mremap.c (Linux 6.18) has it. The pages move with
/// everything keyed by their address: the breakpoint overlay
/// (GuestMemory.move), the patched rdtsc/cpuid sites, the W^X code phase
/// and the MAP_SHARED views. A file mapping that grows maps more of its
/// file (one host call, whose fill the trace holds); a shared one grows
/// its view of the same object, so every process and the file stay
/// coherent with it.
///
/// Not supported, with a report: old_size 0 (a second view of the same
/// shared pages in one process) and MREMAP_DONTUNMAP of shared memory,
/// which would both need one frame behind two addresses.
enum Remap {
    static let MAYMOVE: Int32 = 1, FIXED: Int32 = 2, DONTUNMAP: Int32 = 4

    static func mremap(_ c: SyscallCall) throws -> Int64 {
        let old = c.arg(0), flags = c.int(3), newAddress = c.arg(4)
        // check_mremap_params: every EINVAL before the mappings are looked at.
        guard flags & ~(MAYMOVE | FIXED | DONTUNMAP) == 0, old & 4095 == 0 else { throw Errno.inval }
        guard flags & FIXED == 0 || flags & MAYMOVE != 0 else { throw Errno.inval }
        guard let oldSize = AddressSpace.pageUp(c.arg(1)), let newSize = AddressSpace.pageUp(c.arg(2)), newSize > 0 else {
            throw Errno.inval
        }
        if flags & DONTUNMAP != 0 {
            guard flags & MAYMOVE != 0, oldSize == newSize else { throw Errno.inval }
        }
        let impliesNewAddress = flags & (FIXED | DONTUNMAP) != 0
        if impliesNewAddress {
            guard newAddress & 4095 == 0 else { throw Errno.inval }
        }
        if flags & FIXED != 0 {
            guard newSize <= GuestMemory.userLimit, newAddress <= GuestMemory.userLimit - newSize else { throw Errno.inval }
            let (oldEnd, o) = old.addingReportingOverflow(oldSize)
            guard o || !(oldEnd > newAddress && newAddress + newSize > old) else { throw Errno.inval }
        }
        let p = c.process
        guard old < GuestMemory.userLimit, let m = p.space.mapping(containing: old) else { throw Errno.fault }
        if oldSize == 0 {
            guard m.shared, flags & MAYMOVE != 0 else { throw Errno.inval }
            p.report("mremap with old_size 0 (a second view of shared pages) is not supported; returning EINVAL",
                     key: 0x2_0000_0002, rip: c.rip)
            throw Errno.inval
        }
        guard oldSize <= GuestMemory.userLimit - old else { throw Errno.fault }
        // Shrinking in place unmaps the tail, whatever mappings it spans.
        if !impliesNewAddress && oldSize >= newSize {
            if oldSize > newSize { p.unmap(old + newSize, old + oldSize) }
            return Int64(old)
        }
        // vma_to_resize: the old range lies within one mapping.
        guard oldSize <= m.end - old else { throw Errno.fault }
        let shared = MemoryAdvice.isSharedMemory(p.mm, old, old + oldSize)
        if flags & DONTUNMAP != 0 && shared {
            p.report("mremap(MREMAP_DONTUNMAP) of shared memory is not supported; returning EINVAL", key: 0x2_0000_0012, rip: c.rip)
            throw Errno.inval
        }
        if !impliesNewAddress {
            // Growing in place: the old range ends the mapping, and what follows is free.
            let (end, o) = old.addingReportingOverflow(newSize)
            if old + oldSize == m.end, !o, end <= GuestMemory.userLimit, p.space.isFree(old + oldSize, end) {
                var piece = m.tail(from: old)
                piece.end = old + oldSize
                if let r = try extend(c, piece, to: end), r < 0 { return r }
                return Int64(old)
            }
            guard flags & MAYMOVE != 0 else { throw Errno.nomem }
        }
        let dest: UInt64
        if flags & FIXED != 0 {
            p.unmap(newAddress, newAddress + newSize)
            dest = newAddress
        } else {
            // MREMAP_DONTUNMAP takes new_address as a hint, as mmap does.
            let hint = flags & DONTUNMAP != 0 ? newAddress : 0
            guard let free = p.space.findFree(length: newSize, hint: hint) else { throw Errno.nomem }
            dest = free
        }
        let keep = min(oldSize, newSize)
        if oldSize > keep { p.unmap(old + keep, old + oldSize) }
        SharedMemory.push(p.mm, from: old, to: old + keep)
        var piece = m.tail(from: old)
        piece.end = old + keep
        do { try p.memory.move(from: old, to: dest, pages: Int(keep / 4096)) } catch { throw Errno.nomem }
        move(p, from: old, length: keep, to: dest)
        var result = Int64(dest)
        if flags & DONTUNMAP != 0 {
            // The old range stays, emptied as MADV_DONTNEED would: zeros,
            // or the file read again.
            p.space.insert(piece)
            let r = try MemoryAdvice.discard(c, [piece])
            if r < 0 { result = r }
        } else if newSize > keep {
            var moved = piece.tail(from: piece.start)
            moved.start = dest
            moved.end = dest + keep
            if let r = try extend(c, moved, to: dest + newSize), r < 0 { result = r }
        }
        return result
    }

    /// The bookkeeping of [from, from+length) moves to `to` (the pages
    /// already did): mappings, patched sites, code phases, shared views.
    static func move(_ p: Process, from: UInt64, length: UInt64, to: UInt64) {
        let mm = p.mm
        func moved(_ a: UInt64) -> UInt64? { a >= from && a - from < length ? to + (a - from) : nil }
        var sites: [UInt64: PatchedInstruction] = [:]
        for (site, kind) in mm.patchedSites { sites[moved(site) ?? site] = kind }
        mm.patchedSites = sites
        p.space.codePages = Set(p.space.codePages.map { moved($0) ?? $0 })
        var views: [SharedView] = []
        for v in mm.sharedViews {
            guard v.start < from + length, from < v.end else { views.append(v); continue }
            if v.start < from { views.append(SharedView(start: v.start, end: from, object: v.object, offset: v.offset)) }
            let s = max(v.start, from), e = min(v.end, from + length)
            views.append(SharedView(start: s - from + to, end: e - from + to, object: v.object, offset: v.offset + (s - v.start)))
            if e < v.end { views.append(SharedView(start: e, end: v.end, object: v.object, offset: v.offset + (e - v.start))) }
        }
        mm.sharedViews = views
        p.space.move(from: from, length: length, to: to)
    }

    /// Grows `piece` (the last part of a mapping) up to `end`: fresh pages,
    /// the file's next pages for a file mapping, more of the same object
    /// for shared memory. The host call's result when there was one.
    static func extend(_ c: SyscallCall, _ piece: Mapping, to end: UInt64) throws -> Int64? {
        let p = c.process
        var extra = piece.tail(from: piece.end)
        extra.start = piece.end
        extra.end = end
        try p.map(extra)
        let view = p.mm.sharedViews.first { $0.start < piece.end && piece.end <= $0.end }
        if let view {
            p.mm.sharedViews.append(SharedView(start: extra.start, end: end, object: view.object,
                                               offset: view.offset + (extra.start - view.start)))
        }
        guard extra.isFileBacked else {
            if view != nil { SharedMemory.pull(p.mm) }
            return nil
        }
        let outcome = try c.hostOutcome { effects throws(Errno) -> Int64 in
            try MemoryAdvice.withReadableFD(extra) { fd throws(Errno) in
                try effects.fill(extra.start, fromHostFD: fd, offset: extra.fileOffset, length: end - extra.start)
            }
            return 0
        }
        // Pages past the file's end raise SIGBUS (BeyondFileEnd.swift).
        let filled = outcome.filled(at: extra.start)
        if filled < end - extra.start, piece.fileEnd == nil {
            let fileEnd = extra.fileOffset + (AddressSpace.pageUp(filled) ?? 0)
            let first = p.space.mapping(containing: piece.start)?.start ?? piece.start
            p.space.update(first, end) { if $0.file == extra.file && $0.name == extra.name { $0.fileEnd = fileEnd } }
            p.protectPages(extra.start, end)
        }
        if extra.protection.contains(.execute) && !WriteXorExecute.applies(extra.protection) {
            PatchedInstructions.patch(p, from: extra.start, to: end)
        }
        if view != nil { SharedMemory.push(p.mm, from: extra.start, to: end) }
        return outcome.result
    }
}
