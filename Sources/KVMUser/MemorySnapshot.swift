import Glibc

/// The contents of every page the guest could write, at one moment: what a
/// slice of guest execution is rolled back to (see docs/preemption.md).
///
/// Only writable pages of the guest are kept: without a syscall, nothing
/// else can change (detrec's own exception stack, at Layout.systemBase, is
/// left out: exits write frames there). Pages the host has never backed with memory (they read as zero,
/// and the guest's 8 MiB thread stacks are mostly such pages) are skipped,
/// and `restore` zeroes any of them touched since, so a snapshot costs
/// what the guest has really written (about 25 µs for a small program on
/// PVM, mostly mincore and the page-table walk).
public final class MemorySnapshot {
    /// Frames (guest-physical) whose copy sits at `index * 4096` in `copies`.
    fileprivate var copied: [UInt64] = []
    fileprivate var copies: UnsafeMutableRawPointer?
    fileprivate var capacity = 0

    public init() {}

    deinit { free(copies) }

    /// Bytes held, for measurements.
    public var bytes: Int { copied.count * 4096 }

    fileprivate func reserve(_ pages: Int) {
        guard pages > capacity else { return }
        capacity = max(pages, capacity * 2)
        copies = realloc(copies, capacity * 4096)
    }
}

extension GuestMemory {
    /// Copies every writable page into `snapshot` (reusing its storage).
    public func capture(into snapshot: MemorySnapshot) {
        snapshot.copied.removeAll(keepingCapacity: true)
        let resident = residency()
        var frames: [UInt64] = []
        tables.forEachLeafEntry(below: Layout.systemBase) { e in
            guard e & PTE.present != 0, e & PTE.writable != 0 else { return }
            let frame = e & PTE.addressMask
            guard data.contains(frame) else { return }
            let page = Int((frame - data.guestBase) / 4096)
            if page < resident.count, resident[page] & 1 != 0 { frames.append(frame) }
        }
        snapshot.reserve(frames.count)
        guard let base = snapshot.copies else { return }
        for (i, frame) in frames.enumerated() {
            (base + i * 4096).copyMemory(from: data.pointer(frame), byteCount: 4096)
        }
        snapshot.copied = frames
    }

    /// Puts every page of `snapshot` back as it was. The page tables must
    /// be those of the snapshot (no syscall ran since), so frames still
    /// belong to the same pages.
    public func restore(_ snapshot: MemorySnapshot) {
        if let base = snapshot.copies {
            for (i, frame) in snapshot.copied.enumerated() {
                let p = data.pointer(frame), saved = base + i * 4096
                if memcmp(p, saved, 4096) != 0 { p.copyMemory(from: saved, byteCount: 4096) }
            }
        }
        // Writable pages touched since (not in the snapshot) were zero then.
        let resident = residency()
        let kept = Set(snapshot.copied)
        tables.forEachLeafEntry(below: Layout.systemBase) { e in
            guard e & PTE.present != 0, e & PTE.writable != 0 else { return }
            let frame = e & PTE.addressMask
            guard data.contains(frame), !kept.contains(frame) else { return }
            let page = Int((frame - data.guestBase) / 4096)
            if page < resident.count, resident[page] & 1 != 0 { memset(data.pointer(frame), 0, 4096) }
        }
    }

    /// The pages that differ from `snapshot` now, with their contents: a
    /// state to compare with later (`matches`).
    public func changes(since snapshot: MemorySnapshot) -> [UInt64: [UInt8]] {
        var out: [UInt64: [UInt8]] = [:]
        guard let base = snapshot.copies else { return out }
        for (i, frame) in snapshot.copied.enumerated() {
            let p = data.pointer(frame)
            if memcmp(p, base + i * 4096, 4096) != 0 {
                out[frame] = Array(UnsafeRawBufferPointer(start: p, count: 4096))
            }
        }
        return out
    }

    /// Whether the snapshot's pages hold now what they held when `changes`
    /// was taken.
    public func matches(_ snapshot: MemorySnapshot, changes: [UInt64: [UInt8]]) -> Bool {
        guard let base = snapshot.copies else { return true }
        for (i, frame) in snapshot.copied.enumerated() {
            let p = data.pointer(frame)
            let same: Bool
            if let bytes = changes[frame] {
                same = bytes.count == 4096 && bytes.withUnsafeBytes { b in b.baseAddress.map { memcmp(p, $0, 4096) == 0 } ?? false }
            } else {
                same = memcmp(p, base + i * 4096, 4096) == 0
            }
            if !same { return false }
        }
        return true
    }

    /// Which frames of the data region the host has backed with memory
    /// (mincore), up to the highest frame handed out.
    private func residency() -> [UInt8] {
        let pages = Int((highestFrame - data.guestBase) / 4096)
        guard pages > 0 else { return [] }
        var vector = [UInt8](repeating: 0, count: pages)
        let r = vector.withUnsafeMutableBufferPointer { mincore(data.host, pages * 4096, $0.baseAddress) }
        // Without residency every page counts as touched: slower, still right.
        if r != 0 { return [UInt8](repeating: 1, count: pages) }
        return vector
    }
}
