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
