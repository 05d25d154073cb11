import Glibc

/// The guest's memory at one moment: what a slice of guest execution is
/// rolled back to (see docs/preemption.md). Two ways to keep it:
///
/// - **Dirty page log** (where KVM offers it): the snapshot stands for the
///   memory's `MemoryMirror`, which holds the data region as it was at the
///   last checkpoint. Taking a checkpoint copies into the mirror the pages
///   changed since the previous one (`DirtyPageLog`: KVM's log for the
///   guest's writes, GuestMemory's marks for detrec's own), and a rollback
///   copies back the pages changed since the checkpoint. Both cost what was
///   written, not what the guest holds. Only the latest checkpoint of a
///   memory can be restored (the mirror has moved on from older ones).
/// - **Full copy** (the fallback): the contents of every writable page the
///   host has backed with memory. Pages the host never backed (they read as
///   zero; the guest's 8 MiB thread stacks are mostly such pages) are
///   skipped, and `restore` zeroes any of them touched since, so a snapshot
///   costs what the guest holds (one page-table walk, one mincore, a copy).
///
/// Either way the page tables are not part of it: they change only in
/// syscalls, and a slice has none. Detrec's own exception stack (at
/// Layout.systemBase; exits write frames there) is left out of comparisons.
public final class MemorySnapshot {
    /// Full copy: frames (guest-physical) whose copy sits at `index * 4096` in `copies`.
    fileprivate var copied: [UInt64] = []
    fileprivate var copies: UnsafeMutableRawPointer?
    fileprivate var capacity = 0
    /// Dirty page log: the mirror this snapshot is, at which checkpoint.
    fileprivate weak var mirror: MemoryMirror?
    fileprivate var epoch = 0
    fileprivate var pagesCopied = 0
    fileprivate var pagesProtected = 0

    public init() {}

    deinit { free(copies) }

    /// Bytes copied to take it (full copy: all of it; dirty log: the pages
    /// changed since the previous checkpoint), for measurements.
    public var bytes: Int { mirror != nil ? pagesCopied * 4096 : copied.count * 4096 }

    /// Pages write-protected instead of copied to take it (copied at their
    /// next write, `CopyBeforeWrite`), for measurements.
    public var protectedPages: Int { mirror != nil ? pagesProtected : 0 }

    /// Whether it was taken with the dirty page log.
    public var isIncremental: Bool { mirror != nil }

    fileprivate func reserve(_ pages: Int) {
        guard pages > capacity else { return }
        capacity = max(pages, capacity * 2)
        copies = realloc(copies, capacity * 4096)
    }

    /// A full copy learns a page filled since it was taken (a lazily filled
    /// file page, `GuestMemory.fillFresh`): restoring it keeps those bytes,
    /// where it would otherwise zero a page it never saw.
    func add(_ frame: UInt64, _ bytes: UnsafeRawPointer) {
        guard mirror == nil else { return }
        if let i = copied.firstIndex(of: frame) {
            copies.map { ($0 + i * 4096).copyMemory(from: bytes, byteCount: 4096) }
            return
        }
        reserve(copied.count + 1)
        guard let base = copies else { copied.removeAll(); capacity = 0; return }
        (base + copied.count * 4096).copyMemory(from: bytes, byteCount: 4096)
        copied.append(frame)
    }
}

/// A snapshot that is no longer the memory's latest checkpoint.
public struct StaleSnapshot: Error, CustomStringConvertible {
    public var description: String { "memory snapshot is older than the last checkpoint" }
}

/// How this memory takes checkpoints, for `detrec doctor` and measurements.
public enum CheckpointMethod: Sendable, Equatable, CustomStringConvertible {
    case dirtyLog
    case fullCopy(reason: String)

    public var description: String {
        switch self {
        case .dirtyLog: return "KVM dirty page log (cost follows the pages written)"
        case .fullCopy(let reason): return "full copy of every writable page (\(reason))"
        }
    }
}

extension GuestMemory {
    public var checkpointMethod: CheckpointMethod {
        if let reason = fullCopyReason { return .fullCopy(reason: reason) }
        return dirty == nil ? .fullCopy(reason: "no dirty page log") : .dirtyLog
    }

    /// How a checkpoint with many changed pages takes them: protected and
    /// copied at their next write, or copied at once (and why).
    public var largeCheckpoints: String {
        guard checkpointMethod == .dirtyLog else { return "full copy" }
        if let mirror {
            return mirror.lazy != nil ? "copy before write (userfaultfd write-protect)"
                : "copied at once (\(mirror.eagerReason ?? "no userfaultfd"))"
        }
        if let eagerMirrorReason { return "copied at once (\(eagerMirrorReason))" }
        if MemoryMirror.eagerRequested { return "copied at once (DETREC_CHECKPOINTS=dirty-log)" }
        if let reason = CopyBeforeWrite.unavailable(data: data.host, size: Int(data.size)) { return "copied at once (\(reason))" }
        return "copy before write (userfaultfd write-protect)"
    }

    /// Write faults that copied pending pages, and the pages copied, since
    /// the mirror was made (measurements and tests).
    public var copyBeforeWriteCounts: (faults: Int, pages: Int) { mirror?.lazy?.counts ?? (0, 0) }

    /// The memory is being thrown away: its checkpoints go (and with them
    /// any write protection), without copying what is pending.
    func dropMirror() { mirror = nil }

    /// From now on, a checkpoint copies all its changed pages at once, even
    /// many (tests and measurements compare with copy before write).
    public func useEagerMirror(reason: String) {
        mirror?.stopLazyCopies(reason: reason)
        eagerMirrorReason = reason
    }

    /// From now on, checkpoints copy every page (tests and measurements
    /// compare the two methods).
    public func useFullCopyCheckpoints(reason: String) {
        fullCopyReason = reason
        dirty = nil
        mirror = nil
    }

    /// Takes a checkpoint into `snapshot` (reusing its storage).
    public func capture(into snapshot: MemorySnapshot) {
        if fullCopyReason == nil, let log = dirty {
            if mirror == nil { mirror = MemoryMirror(size: data.size, data: data.host, eager: eagerMirrorReason) }
            if let mirror, log.harvest(below: highestFrame) {
                for page in log.released { mirror.discard(Int(page)) }
                snapshot.pagesCopied = mirror.take(log.pages, from: data.host)
                snapshot.pagesProtected = log.pages.count - snapshot.pagesCopied
                log.clear()
                mirror.epoch += 1
                snapshot.mirror = mirror
                snapshot.epoch = mirror.epoch
                snapshot.copied.removeAll(keepingCapacity: true)
                return
            }
            useFullCopyCheckpoints(reason: log.failure ?? "no host memory for the mirror")
        }
        snapshot.mirror = nil
        captureAll(into: snapshot)
        latestFullCopy = snapshot
    }

    /// Puts every page back as it was at `snapshot`. The page tables must
    /// be those of the snapshot (no syscall ran since), so frames still
    /// belong to the same pages.
    public func restore(_ snapshot: MemorySnapshot) throws(StaleSnapshot) {
        guard let mirror = try latestMirror(snapshot) else { restoreAll(snapshot); return }
        let pages = changedPages(since: mirror)
        mirror.settle(pages)
        for page in pages {
            (data.host + page * 4096).copyMemory(from: mirror.page(page), byteCount: 4096)
        }
        dirty?.clear()
    }

    /// The pages that differ from `snapshot` now, with their contents (int3
    /// patches show as the original bytes): a state to compare with later
    /// (`matches`).
    public func changes(since snapshot: MemorySnapshot) throws(StaleSnapshot) -> [UInt64: [UInt8]] {
        guard let mirror = try latestMirror(snapshot) else { return changesAll(since: snapshot) }
        var out: [UInt64: [UInt8]] = [:]
        let patched = patchedPages()
        let system = systemPages()
        var buffer = [UInt8](repeating: 0, count: 4096)
        let changed = changedPages(since: mirror)
        mirror.settle(changed)
        for page in changed where !system.contains(page) {
            buffer.withUnsafeMutableBytes { b in
                guard let base = b.baseAddress else { return }
                current(page, patched, into: base)
                if memcmp(base, mirror.page(page), 4096) != 0 {
                    out[data.guestBase + UInt64(page) * 4096] = Array(UnsafeRawBufferPointer(b))
                }
            }
        }
        return out
    }

    /// Whether memory holds now what it held when `changes` was taken.
    public func matches(_ snapshot: MemorySnapshot, changes: [UInt64: [UInt8]]) throws(StaleSnapshot) -> Bool {
        guard let mirror = try latestMirror(snapshot) else { return matchesAll(snapshot, changes: changes) }
        let patched = patchedPages()
        let system = systemPages()
        var pages = Set(changedPages(since: mirror))
        for frame in changes.keys where data.contains(frame) { pages.insert(Int((frame - data.guestBase) / 4096)) }
        mirror.settle(Array(pages))
        var buffer = [UInt8](repeating: 0, count: 4096)
        for page in pages where !system.contains(page) {
            let expected = changes[data.guestBase + UInt64(page) * 4096]
            let same = buffer.withUnsafeMutableBytes { b -> Bool in
                guard let base = b.baseAddress else { return false }
                current(page, patched, into: base)
                if let expected {
                    return expected.count == 4096 && expected.withUnsafeBytes { e in e.baseAddress.map { memcmp(base, $0, 4096) == 0 } ?? false }
                }
                return memcmp(base, mirror.page(page), 4096) == 0
            }
            if !same { return false }
        }
        return true
    }

    /// The mirror `snapshot` stands for, nil for a full copy.
    private func latestMirror(_ snapshot: MemorySnapshot) throws(StaleSnapshot) -> MemoryMirror? {
        guard snapshot.isIncremental else { return nil }
        guard let mirror = snapshot.mirror, mirror === self.mirror, mirror.epoch == snapshot.epoch else {
            throw StaleSnapshot()
        }
        return mirror
    }

    /// The pages (index in the data region) that may differ from the
    /// mirror: those the log and the marks name, or, if KVM stopped
    /// answering, every page either side has backed (and checkpoints fall
    /// back to full copies from now on).
    private func changedPages(since mirror: MemoryMirror) -> [Int] {
        if let log = dirty, log.harvest(below: highestFrame) {
            return log.released.map { Int($0) } + log.pages.map { Int($0) }
        }
        // Pending pages are in guest memory only: copy them first.
        mirror.stopLazyCopies(reason: dirty?.failure ?? "dirty page log failed")
        let ours = residency(of: data.host), theirs = residency(of: mirror.host)
        var pages: [Int] = []
        for i in 0..<max(ours.count, theirs.count)
            where (i < ours.count && ours[i] & 1 != 0) || (i < theirs.count && theirs[i] & 1 != 0) {
            pages.append(i)
        }
        fullCopyReason = dirty?.failure ?? fullCopyReason ?? "dirty page log failed"
        dirty = nil
        return pages
    }

    /// The page's bytes as the program sees them (int3 patches undone).
    fileprivate func current(_ page: Int, _ patched: [Int: [(Int, UInt8)]], into buffer: UnsafeMutableRawPointer) {
        buffer.copyMemory(from: data.host + page * 4096, byteCount: 4096)
        for (offset, original) in patched[page] ?? [] { buffer.storeBytes(of: original, toByteOffset: offset, as: UInt8.self) }
    }

    fileprivate func patchedPages() -> [Int: [(Int, UInt8)]] {
        var out: [Int: [(Int, UInt8)]] = [:]
        for (va, original) in patches {
            guard let frame = frame(of: va) else { continue }
            out[Int((frame - data.guestBase) / 4096), default: []].append((Int(va & 4095), original))
        }
        return out
    }

    /// Detrec's own pages (GDT, IDT, TSS, stubs, exception stack).
    private func systemPages() -> Set<Int> {
        var out = Set<Int>()
        for i in 0..<Layout.systemPages {
            if let frame = frame(ofAny: Layout.systemBase + UInt64(i) * 4096) { out.insert(Int((frame - data.guestBase) / 4096)) }
        }
        return out
    }

    /// Which pages of a region-sized host mapping at `host` are backed
    /// (mincore), up to the highest frame handed out.
    func residency(of host: UnsafeMutableRawPointer) -> [UInt8] {
        GuestMemory.residency(ofHost: host, pages: Int((highestFrame - data.guestBase) / 4096))
    }

    /// Which of the `pages` pages at `host` are backed (mincore).
    static func residency(ofHost host: UnsafeMutableRawPointer, pages: Int) -> [UInt8] {
        guard pages > 0 else { return [] }
        var vector = [UInt8](repeating: 0, count: pages)
        let r = vector.withUnsafeMutableBufferPointer { mincore(host, pages * 4096, $0.baseAddress) }
        // Without residency every page counts as touched: slower, still right.
        if r != 0 { return [UInt8](repeating: 1, count: pages) }
        return vector
    }
}

// MARK: full copy

extension GuestMemory {
    /// Copies every writable page into `snapshot` (reusing its storage).
    fileprivate func captureAll(into snapshot: MemorySnapshot) {
        snapshot.copied.removeAll(keepingCapacity: true)
        let resident = residency(of: data.host)
        var frames: [UInt64] = []
        tables.forEachLeafEntry(below: Layout.systemBase) { entry in
            let e = PTE.real(entry)  // a watched page is the guest's as it protects it
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

    /// Puts every page of `snapshot` back as it was.
    fileprivate func restoreAll(_ snapshot: MemorySnapshot) {
        if let base = snapshot.copies {
            for (i, frame) in snapshot.copied.enumerated() {
                let p = data.pointer(frame), saved = base + i * 4096
                if memcmp(p, saved, 4096) != 0 { p.copyMemory(from: saved, byteCount: 4096) }
            }
        }
        // Writable pages touched since (not in the snapshot) were zero then.
        let resident = residency(of: data.host)
        let kept = Set(snapshot.copied)
        tables.forEachLeafEntry(below: Layout.systemBase) { entry in
            let e = PTE.real(entry)  // a watched page is the guest's as it protects it
            guard e & PTE.present != 0, e & PTE.writable != 0 else { return }
            let frame = e & PTE.addressMask
            guard data.contains(frame), !kept.contains(frame) else { return }
            let page = Int((frame - data.guestBase) / 4096)
            if page < resident.count, resident[page] & 1 != 0 { memset(data.pointer(frame), 0, 4096) }
        }
    }

    /// The pages that differ from `snapshot` now, with their contents: a
    /// state to compare with later (`matches`).
    fileprivate func changesAll(since snapshot: MemorySnapshot) -> [UInt64: [UInt8]] {
        var out: [UInt64: [UInt8]] = [:]
        guard let base = snapshot.copies else { return out }
        let patched = patchedPages()
        var buffer = [UInt8](repeating: 0, count: 4096)
        for (i, frame) in snapshot.copied.enumerated() {
            buffer.withUnsafeMutableBytes { b in
                guard let p = b.baseAddress else { return }
                current(Int((frame - data.guestBase) / 4096), patched, into: p)
                if memcmp(p, base + i * 4096, 4096) != 0 { out[frame] = Array(UnsafeRawBufferPointer(b)) }
            }
        }
        return out
    }

    /// Whether the snapshot's pages hold now what they held when `changes`
    /// was taken.
    fileprivate func matchesAll(_ snapshot: MemorySnapshot, changes: [UInt64: [UInt8]]) -> Bool {
        guard let base = snapshot.copies else { return true }
        let patched = patchedPages()
        var buffer = [UInt8](repeating: 0, count: 4096)
        for (i, frame) in snapshot.copied.enumerated() {
            let same = buffer.withUnsafeMutableBytes { b -> Bool in
                guard let p = b.baseAddress else { return false }
                current(Int((frame - data.guestBase) / 4096), patched, into: p)
                if let bytes = changes[frame] {
                    return bytes.count == 4096 && bytes.withUnsafeBytes { e in e.baseAddress.map { memcmp(p, $0, 4096) == 0 } ?? false }
                }
                return memcmp(p, base + i * 4096, 4096) == 0
            }
            if !same { return false }
        }
        return true
    }
}
