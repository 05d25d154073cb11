import Glibc

extension GuestMemory {
    /// Backs the host pages behind the mapped pages of [va, va+count)
    /// before detrec writes all of them (the loader copying a program in):
    /// one MADV_POPULATE_WRITE per run of consecutive frames instead of a
    /// host page fault per page, each of which costs an exception entry
    /// (docs/benchmarks.md, processes). Contents do not change: fresh frames
    /// stay zero, so no dirty mark is needed. Skipped while a mirror may have
    /// pages write-protected (userfaultfd), where populating would fault.
    /// Only a speed-up: where madvise refuses, the writes fault as before.
    public func populate(_ va: UInt64, count: Int) {
        guard count > 0, mirror == nil else { return }
        let (end, overflow) = va.addingReportingOverflow(UInt64(count))
        guard !overflow, end <= GuestMemory.userLimit else { return }
        var run: (start: UInt64, end: UInt64)?
        func flush() {
            if let r = run { _ = madvise(data.pointer(r.start), Int(r.end - r.start), 23 /* MADV_POPULATE_WRITE */) }
            run = nil
        }
        var page = va & ~4095
        while page < end {
            if let frame = frame(of: page) {
                // Frames from the free list come in descending order: a run either way.
                if let r = run, r.end == frame {
                    run = (r.start, frame + 4096)
                } else if let r = run, r.start == frame + 4096 {
                    run = (frame, r.end)
                } else {
                    flush()
                    run = (frame, frame + 4096)
                }
            } else {
                flush()
            }
            page += 4096
        }
        flush()
    }

    /// Copies file content to `va`, ignoring page protection (kernel
    /// access): the loader's segments and file mappings' fills, recorded
    /// or replayed, each backed first with `populate`.
    public func fill(_ va: UInt64, with bytes: ArraySlice<UInt8>) throws(GuestMemoryFault) {
        populate(va, count: bytes.count)
        var failure: GuestMemoryFault?
        bytes.withUnsafeBytes { b in
            do throws(GuestMemoryFault) { try write(va, bytes: b, access: .kernel) } catch { failure = error }
        }
        if let failure { throw failure }
    }
}
