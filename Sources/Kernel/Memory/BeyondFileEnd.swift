import KVMUser

// Pages of a file mapping that lie wholly beyond the end of the file. On
// Linux the rest of the file's last page reads as zeros, but touching a
// page past it raises SIGBUS (BUS_ADRERR). detrec keeps such pages
// non-present in the page tables, so that the guest faults on them, while
// the mapping keeps its own protection (what /proc/self/maps shows and what
// mprotect changes). Where the file ends comes from what the mmap filled
// in, which the trace holds, so record and replay agree on it.

extension Mapping {
    /// Where the pages beyond the file's end start: `end` when there are none.
    public var fileBackedEnd: UInt64 {
        guard let fileEnd else { return end }
        guard fileEnd > fileOffset else { return start }
        let backed = fileEnd - fileOffset
        return backed >= end - start ? end : start + backed
    }

    /// The parts of this mapping within [from, to) with the protection their
    /// page tables get: the mapping's own, none beyond the file's end.
    func pageTableParts(from: UInt64, to: UInt64) -> [(start: UInt64, end: UInt64, protection: PageProtection)] {
        let s = max(start, from), e = min(end, to)
        guard s < e else { return [] }
        let split = min(max(fileBackedEnd, s), e)
        var parts: [(start: UInt64, end: UInt64, protection: PageProtection)] = []
        if s < split { parts.append((s, split, protection)) }
        if split < e { parts.append((split, e, .none)) }
        return parts
    }
}

extension Process {
    /// Maps fresh pages for the part of `m` within [from, to), with the
    /// page-table protection of each part.
    func mapPages(of m: Mapping, from: UInt64, to: UInt64) throws(Errno) {
        if DemandFault.reserves(m) {
            try DemandFault.reserve(self, m, from: from, to: to)
            WriteXorExecute.protect(self, m, from: from, to: to)
            return
        }
        if DemandFault.reservesFile(m) {
            // Filled at their first touch from the source the mapping's
            // fill gives them (`FileRange.fill`).
            for part in m.pageTableParts(from: from, to: to) {
                let pages = Int((part.end - part.start) / 4096)
                if !m.options.contains(.noReserve), UInt64(pages) > memory.framesAvailable { throw .nomem }
                do { try memory.reserve(part.start, pages: pages, protection: part.protection) } catch { throw .nomem }
            }
            WriteXorExecute.protect(self, m, from: from, to: to)
            return
        }
        for part in m.pageTableParts(from: from, to: to) {
            do { try memory.map(part.start, pages: Int((part.end - part.start) / 4096), protection: part.protection) } catch {
                throw .nomem
            }
        }
        WriteXorExecute.protect(self, m, from: from, to: to)
    }

    /// Gives the existing pages of [start, end) the page-table protection of
    /// the mappings there (after mprotect, or a copy made writable).
    func protectPages(_ start: UInt64, _ end: UInt64) {
        for m in space.mappings where m.end > start && m.start < end {
            for part in m.pageTableParts(from: start, to: end) {
                memory.protect(part.start, pages: Int((part.end - part.start) / 4096), protection: part.protection)
            }
            WriteXorExecute.protect(self, m, from: start, to: end)
        }
    }

    /// What a page fault touched, which decides its signal. A page beyond a
    /// file's end only raises SIGBUS when the mapping allows the access:
    /// Linux checks the mapping's rights before it looks at the file.
    func faultedPage(_ e: GuestException) -> FaultedPage {
        guard memory.protection(at: e.address) != nil else { return .unmapped }
        guard e.vector == GuestException.pageFault, let m = space.mapping(containing: e.address),
              e.address >= m.fileBackedEnd else { return .refused }
        let code = e.errorCode ?? 0
        let write = code & 2 != 0, fetch = code & 16 != 0
        let allowed = !m.protection.isEmpty && (!write || m.protection.contains(.write))
            && (!fetch || m.protection.contains(.execute))
        return allowed ? .beyondFileEnd : .refused
    }
}
