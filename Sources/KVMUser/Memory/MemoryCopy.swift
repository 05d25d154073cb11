/// Fork's copy of a memory: the child's pages get the parent's contents
/// frame to frame, from the page tables, without a walk per page by
/// virtual address or a buffer in between.
extension GuestMemory {
    /// Fork's copy of `source`'s reserved ranges: the same ranges here,
    /// and a frame for each of their pages that has one in `source`
    /// (`copyContents` then copies it). Untouched pages stay untouched.
    public func copyReservations(of source: GuestMemory) throws(GuestMemoryFault) {
        for r in source.reserved.ranges {
            // A file mapping's source goes too: the child's untouched pages
            // read the file as the parent's would.
            try reserve(r.start, pages: Int((r.end - r.start) / 4096), protection: r.protection, source: r.source)
            var failed: UInt64?
            source.tables.forEachLeaf(from: r.start, to: r.end) { va, slot in
                guard failed == nil, slot.pointee & PTE.ownsFrame != 0 else { return }
                // Not filled: `copyContents` copies the parent's page.
                if !mapReserved(va, r, fill: false) { failed = va }
            }
            if let failed { throw GuestMemoryFault(address: failed) }
        }
    }

    /// The parts of [start, end) that are not reserved (fork maps frames for those).
    public func unreservedParts(_ start: UInt64, _ end: UInt64) -> [(start: UInt64, end: UInt64)] {
        reserved.gaps(start, end)
    }

    /// Gives each page of `source` in `ranges` that the host has backed
    /// the same contents here, where the same pages are mapped already
    /// (fresh, so zero). Pages the host never backed in `source` read as
    /// zero and are skipped (mincore), so the copy costs what the parent
    /// touched, not what it mapped (its 8 MiB stacks). The bytes are the
    /// originals under `source`'s breakpoint patches, as a read shows them.
    public func copyContents(of source: GuestMemory, ranges: [(start: UInt64, end: UInt64)]) {
        let resident = source.residency(of: source.data.host)
        for (start, end) in ranges {
            source.tables.forEachLeaf(from: start, to: min(end, GuestMemory.userLimit)) { va, slot in
                let e = slot.pointee
                guard e & PTE.ownsFrame != 0 else { return }
                let from = e & PTE.addressMask
                guard source.data.contains(from) else { return }
                let page = Int((from - source.data.guestBase) / 4096)
                guard page < resident.count, resident[page] & 1 != 0, let to = frame(of: va) else { return }
                // Detrec's own write: KVM's log does not see it.
                dirty?.mark(to)
                data.pointer(to).copyMemory(from: source.data.pointer(from), byteCount: 4096)
            }
        }
        for (address, original) in source.patches {
            guard ranges.contains(where: { address >= $0.start && address < $0.end }), let to = frame(of: address & ~4095) else { continue }
            data.pointer(to).storeBytes(of: original, toByteOffset: Int(address & 4095), as: UInt8.self)
        }
    }
}
