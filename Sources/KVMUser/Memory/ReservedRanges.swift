/// Guest memory that is mapped but has no frames yet: anonymous private
/// ranges (MAP_NORESERVE ones, or huge ones) that cost nothing until the
/// guest or detrec touches a page, as Linux's anonymous memory, and large
/// private file mappings, whose pages are filled from the file's bytes
/// (`PageContent`) at their first touch, as Linux reads a file's pages at
/// a fault. Page tables for terabytes of sanitizer shadow are impossible,
/// so a range is one entry, not one per page. A page of a range that has a
/// frame (a leaf entry that owns one) is that page's truth; the range
/// still covers it, so that munmap, mprotect and mremap of the range carry
/// both.
public struct ReservedRange: Equatable, Sendable {
    public var start: UInt64
    public var end: UInt64
    public var protection: PageProtection
    /// Where an untouched page's bytes come from; nil: zeros.
    public var source: PageSource?

    public init(start: UInt64, end: UInt64, protection: PageProtection, source: PageSource? = nil) {
        self.start = start; self.end = end; self.protection = protection; self.source = source
    }

    /// The part [s, e) of this range (within it), its source following.
    func clipped(_ s: UInt64, _ e: UInt64) -> ReservedRange {
        let from = max(start, s)
        return ReservedRange(start: from, end: min(end, e), protection: protection,
                             source: source.map { $0.advanced(by: from - start) })
    }
}

/// The bytes a reserved range's untouched pages are filled with: `content`
/// from `offset` on at the range's first byte (the next byte at the next
/// address).
public struct PageSource: Equatable, @unchecked Sendable {
    public let content: PageContent
    public let offset: UInt64

    public init(content: PageContent, offset: UInt64) { self.content = content; self.offset = offset }

    func advanced(by bytes: UInt64) -> PageSource { PageSource(content: content, offset: offset &+ bytes) }

    /// The same content, the same offsets: a comparison by identity, since
    /// ranges only merge when one continues the other.
    public static func == (a: PageSource, b: PageSource) -> Bool { a.content === b.content && a.offset == b.offset }
}

/// A file's bytes as a lazily filled mapping sees them (made by Kernel's
/// `FileRange`): data extents with the holes between them reading as
/// zeros, and everything from `end` on zero too (the rest of the file's
/// last page, which the mapping does not show). Offsets are the content's
/// own (0 is its first byte). Immutable, shared by every range cut from
/// one mapping, and by a fork's child.
public final class PageContent {
    /// A run of data: its offset from the content's first byte, and its length.
    public struct Extent: Equatable, Sendable {
        public var start: UInt64
        public var length: UInt64
        public init(start: UInt64, length: UInt64) { self.start = start; self.length = length }
    }

    /// Sorted and disjoint; `data` holds their bytes one after the other.
    let extents: [Extent]
    /// Where each extent's bytes start in `data`.
    private let dataIndex: [Int]
    let data: [UInt8]
    /// Offsets from here on read zero.
    public let end: UInt64

    /// nil when the extents do not fit `data` (untrusted: a trace's range).
    public init?(extents: [Extent], data: [UInt8], end: UInt64) {
        var index: [Int] = []
        var at = 0
        var last: UInt64 = 0
        for e in extents {
            let (top, overflow) = e.start.addingReportingOverflow(e.length)
            guard !overflow, e.start >= last, e.length <= UInt64(data.count - at) else { return nil }
            index.append(at)
            at += Int(e.length)
            last = top
        }
        self.extents = extents
        dataIndex = index
        self.data = data
        self.end = end
    }

    /// Writes the content's bytes [offset, offset + count) to `to`, which
    /// holds zeros (a fresh frame): only the extents' bytes are written.
    func copy(from offset: UInt64, count: Int, to: UnsafeMutableRawPointer) {
        let (stop, overflow) = offset.addingReportingOverflow(UInt64(count))
        let limit = min(overflow ? UInt64.max : stop, end)
        guard offset < limit else { return }
        // The first extent that ends after `offset`.
        var lo = 0, hi = extents.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if extents[mid].start + extents[mid].length <= offset { lo = mid + 1 } else { hi = mid }
        }
        var i = lo
        while i < extents.count, extents[i].start < limit {
            let e = extents[i]
            let s = max(e.start, offset), t = min(e.start + e.length, limit)
            if s < t {
                data.withUnsafeBytes { d in
                    guard let base = d.baseAddress else { return }
                    (to + Int(s - offset)).copyMemory(from: base + dataIndex[i] + Int(s - e.start), byteCount: Int(t - s))
                }
            }
            i += 1
        }
    }

    /// The content's bytes [offset, offset + count).
    func bytes(from offset: UInt64, count: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        out.withUnsafeMutableBytes { b in
            guard let base = b.baseAddress else { return }
            copy(from: offset, count: count, to: base)
        }
        return out
    }
}

/// Non-overlapping reserved ranges, sorted by start; adjacent ranges of
/// the same protection whose sources continue each other (or that have
/// none) are merged, so the count follows the number of distinct mappings
/// and mprotect pieces, not the pages touched.
struct ReservedRanges: Equatable {
    private(set) var ranges: [ReservedRange] = []

    var isEmpty: Bool { ranges.isEmpty }

    /// The index of the first range that ends after `va`.
    private func firstEnding(after va: UInt64) -> Int {
        var lo = 0, hi = ranges.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if ranges[mid].end <= va { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    func range(containing va: UInt64) -> ReservedRange? {
        let i = firstEnding(after: va)
        guard i < ranges.count, ranges[i].start <= va else { return nil }
        return ranges[i]
    }

    /// The parts of the ranges within [start, end), clipped to it.
    func overlapping(_ start: UInt64, _ end: UInt64) -> [ReservedRange] {
        guard start < end else { return [] }
        var out: [ReservedRange] = []
        var i = firstEnding(after: start)
        while i < ranges.count, ranges[i].start < end {
            out.append(ranges[i].clipped(start, end))
            i += 1
        }
        return out
    }

    /// The parts of [start, end) that no range covers.
    func gaps(_ start: UInt64, _ end: UInt64) -> [(start: UInt64, end: UInt64)] {
        var out: [(start: UInt64, end: UInt64)] = []
        var at = start
        for r in overlapping(start, end) {
            if r.start > at { out.append((at, r.start)) }
            at = r.end
        }
        if at < end { out.append((at, end)) }
        return out
    }

    /// Removes [start, end) from every range (splitting one that spans it).
    mutating func remove(_ start: UInt64, _ end: UInt64) {
        guard start < end, !ranges.isEmpty else { return }
        let i = firstEnding(after: start)
        var j = i
        var kept: [ReservedRange] = []
        while j < ranges.count, ranges[j].start < end {
            let r = ranges[j]
            if r.start < start { kept.append(r.clipped(r.start, start)) }
            if r.end > end { kept.append(r.clipped(end, r.end)) }
            j += 1
        }
        guard j > i else { return }
        ranges.replaceSubrange(i..<j, with: kept)
    }

    /// Reserves [start, end) with `protection`, replacing what was there.
    mutating func insert(_ start: UInt64, _ end: UInt64, protection: PageProtection, source: PageSource? = nil) {
        guard start < end else { return }
        remove(start, end)
        let i = firstEnding(after: start)
        ranges.insert(ReservedRange(start: start, end: end, protection: protection, source: source), at: i)
        merge(around: i)
    }

    /// Gives the reserved parts of [start, end) `protection` (mprotect).
    mutating func protect(_ start: UInt64, _ end: UInt64, _ protection: PageProtection) {
        for part in overlapping(start, end) where part.protection != protection {
            insert(part.start, part.end, protection: protection, source: part.source)
        }
    }

    /// Gives the reserved parts of [start, end) the content `source`
    /// shows at `start` (a file mapping's fill).
    mutating func setSource(_ start: UInt64, _ end: UInt64, _ source: PageSource) {
        for part in overlapping(start, end) {
            insert(part.start, part.end, protection: part.protection, source: source.advanced(by: part.start - start))
        }
    }

    /// Whether `b` continues `a` (touching, same protection, the source
    /// going on where `a`'s ends).
    private static func continues(_ a: ReservedRange, _ b: ReservedRange) -> Bool {
        guard a.end == b.start, a.protection == b.protection else { return false }
        switch (a.source, b.source) {
        case (nil, nil): return true
        case (let x?, let y?): return x.content === y.content && x.offset &+ (a.end - a.start) == y.offset
        default: return false
        }
    }

    /// Merges the range at `i` with equal neighbours that touch it.
    private mutating func merge(around i: Int) {
        var i = i
        if i > 0, ReservedRanges.continues(ranges[i - 1], ranges[i]) {
            ranges[i - 1].end = ranges[i].end
            ranges.remove(at: i)
            i -= 1
        }
        if i + 1 < ranges.count, ReservedRanges.continues(ranges[i], ranges[i + 1]) {
            ranges[i].end = ranges[i + 1].end
            ranges.remove(at: i + 1)
        }
    }
}
