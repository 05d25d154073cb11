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
}
