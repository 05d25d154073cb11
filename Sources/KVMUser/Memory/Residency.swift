import Glibc

extension GuestMemory {
    /// Whether each of `pages` pages from `va` has been touched since it
    /// was mapped, as Linux's mincore reports it for anonymous memory: the
    /// host's residency of the frame behind it (frames start out
    /// discarded, and go back discarded). 0 for a page with no frame.
    public func residency(_ va: UInt64, pages: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: max(0, pages))
        for i in out.indices {
            let (offset, o1) = UInt64(i).multipliedReportingOverflow(by: 4096)
            let (at, o2) = va.addingReportingOverflow(offset)
            guard !o1, !o2, let frame = frame(of: at) else { continue }
            var v: UInt8 = 0
            if mincore(data.pointer(frame), 4096, &v) == 0 { out[i] = v & 1 }
        }
        return out
    }
}

extension GuestMemory {
    /// How many of `pages` pages from `va` are resident, as `residency`
    /// decides it, asking the host once per run of consecutive frames
    /// and walking only the page tables that exist (/proc's RSS figures
    /// count whole mappings, a JVM's reservation of gigabytes among them).
    public func residentPages(_ va: UInt64, pages: Int) -> Int {
        var count = 0
        var run: (first: UInt64, pages: Int)?
        var vector = [UInt8](repeating: 0, count: 512)
        func flush() {
            guard let r = run else { return }
            run = nil
            if vector.count < r.pages { vector = [UInt8](repeating: 0, count: r.pages) }
            let ok = vector.withUnsafeMutableBufferPointer { mincore(data.pointer(r.first), r.pages * 4096, $0.baseAddress) == 0 }
            // Without an answer the frames count as touched.
            count += ok ? vector[0..<r.pages].reduce(0) { $0 + Int($1 & 1) } : r.pages
        }
        let (end, overflow) = va.addingReportingOverflow(UInt64(max(0, pages)) &* 4096)
        tables.forEachLeaf(from: va, to: overflow ? GuestMemory.userLimit : min(end, GuestMemory.userLimit)) { _, slot in
            let e = slot.pointee
            guard e & PTE.ownsFrame != 0, data.contains(e & PTE.addressMask) else { flush(); return }
            let frame = e & PTE.addressMask
            if let r = run, r.first &+ UInt64(r.pages) * 4096 == frame, r.pages < 1 << 16 {
                run = (r.first, r.pages + 1)
            } else {
                flush()
                run = (frame, 1)
            }
        }
        flush()
        return count
    }
}
