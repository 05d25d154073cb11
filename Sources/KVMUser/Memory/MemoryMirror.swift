import Glibc

/// A copy of the guest's data region as it was at the last checkpoint,
/// kept up to date page by page (docs/preemption.md): a checkpoint copies
/// into it only the pages changed since the previous one, and a rollback
/// copies back only the pages changed since.
///
/// It is a reservation of the region's size (MAP_NORESERVE): host memory
/// is used only for pages ever copied, at most one copy of each page the
/// guest has written while checkpoints were taken; pages given back to the
/// host are given back here too at the next checkpoint.
final class MemoryMirror {
    let host: UnsafeMutableRawPointer
    let size: Int
    /// Bumped at each checkpoint: a snapshot older than the last one cannot
    /// be restored from the mirror any more.
    var epoch = 0

    init?(size: UInt64) {
        let p = mmap(nil, Int(size), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        guard let p, p != MAP_FAILED else { return nil }
        host = p
        self.size = Int(size)
    }

    deinit { munmap(host, size) }

    @inline(__always) func page(_ index: Int) -> UnsafeMutableRawPointer { host + index * 4096 }

    func discard(_ index: Int) { madvise(page(index), 4096, MADV_DONTNEED) }

    /// Copies the given pages of `data` (a region-sized mapping) in. Runs of
    /// consecutive pages are backed first with one MADV_POPULATE_WRITE each:
    /// a first checkpoint after the guest wrote a large heap would otherwise
    /// take one host page fault per page (expensive under PVM).
    func copy(_ pages: [UInt32], from data: UnsafeMutableRawPointer) {
        var i = 0
        while i < pages.count {
            var j = i + 1
            while j < pages.count, pages[j] == pages[j - 1] &+ 1 { j += 1 }
            let first = Int(pages[i])
            if j - i >= 16 { _ = madvise(page(first), (j - i) * 4096, 23 /* MADV_POPULATE_WRITE */) }
            page(first).copyMemory(from: data + first * 4096, byteCount: (j - i) * 4096)
            i = j
        }
    }
}
