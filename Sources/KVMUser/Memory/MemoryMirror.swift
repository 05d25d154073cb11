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
    /// Where a checkpoint with many changed pages protects them instead of
    /// copying them (`CopyBeforeWrite`); nil where the host cannot, or
    /// `DETREC_CHECKPOINTS=dirty-log` asked for eager copies.
    private(set) var lazy: CopyBeforeWrite?
    /// Why `lazy` is nil.
    private(set) var eagerReason: String?

    /// A checkpoint with at least this many changed pages protects them
    /// instead of copying them: below, copying (≈ 1–5 µs a page here) costs
    /// less than the write fault a protected page takes when written again.
    static let lazyThreshold = 1024

    static let eagerRequested: Bool = getenv("DETREC_CHECKPOINTS").map { String(cString: $0) == "dirty-log" } ?? false

    init?(size: UInt64, data: UnsafeMutableRawPointer, eager: String? = nil) {
        let p = mmap(nil, Int(size), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        guard let p, p != MAP_FAILED else { return nil }
        host = p
        self.size = Int(size)
        if let eager {
            eagerReason = eager
        } else if MemoryMirror.eagerRequested {
            eagerReason = "DETREC_CHECKPOINTS=dirty-log"
        } else {
            var reason: String?
            lazy = CopyBeforeWrite(data: data, mirror: p, size: Int(size), reason: &reason)
            eagerReason = reason
        }
    }

    deinit {
        lazy = nil  // stops its thread and lifts its protection before the mirror goes
        munmap(host, size)
    }

    /// Stops protecting pages: everything pending is copied now.
    func stopLazyCopies(reason: String) {
        lazy?.flushAll()
        lazy = nil
        eagerReason = reason
    }

    /// Takes a checkpoint of the given changed pages (sorted, each once):
    /// protects them when they are many and the host can, copies them
    /// otherwise. Returns how many were copied now.
    func take(_ pages: [UInt32], from data: UnsafeMutableRawPointer) -> Int {
        if pages.count >= MemoryMirror.lazyThreshold, let lazy {
            if lazy.protect(pages) { return 0 }
            stopLazyCopies(reason: lazy.failure ?? "UFFDIO_WRITEPROTECT failed")
        }
        // A page marked by detrec but not written may still be pending.
        lazy?.materialize(pages.map { Int($0) })
        copy(pages, from: data)
        return pages.count
    }

    @inline(__always) func page(_ index: Int) -> UnsafeMutableRawPointer { host + index * 4096 }

    /// The page went back to the host: it reads as zero on both sides now.
    func discard(_ index: Int) {
        lazy?.forget(index)
        madvise(page(index), 4096, MADV_DONTNEED)
    }

    /// Before the mirror's copies of `pages` are read: the handler's
    /// copies are seen, and pages still pending are copied.
    func settle(_ pages: [Int]) {
        guard let lazy else { return }
        lazy.materialize(pages)
    }

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
