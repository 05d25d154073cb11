/// Guest memory that is mapped but has no frames yet: anonymous private
/// ranges (MAP_NORESERVE ones, or huge ones) that cost nothing until the
/// guest or detrec touches a page, as Linux's anonymous memory. Page tables
/// for terabytes of sanitizer shadow are impossible, so a range is one
/// entry, not one per page. A page of a range that has a frame (a leaf
/// entry that owns one) is that page's truth; the range still covers it,
/// so that munmap, mprotect and mremap of the range carry both.
public struct ReservedRange: Equatable, Sendable {
    public var start: UInt64
    public var end: UInt64
    public var protection: PageProtection
}

/// Non-overlapping reserved ranges, sorted by start; adjacent ranges of
/// the same protection are merged, so the count follows the number of
/// distinct mappings and mprotect pieces, not the pages touched.
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
            var r = ranges[i]
            r.start = max(r.start, start)
            r.end = min(r.end, end)
            out.append(r)
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
            if r.start < start { kept.append(ReservedRange(start: r.start, end: start, protection: r.protection)) }
            if r.end > end { kept.append(ReservedRange(start: end, end: r.end, protection: r.protection)) }
            j += 1
        }
        guard j > i else { return }
        ranges.replaceSubrange(i..<j, with: kept)
    }

    /// Reserves [start, end) with `protection`, replacing what was there.
    mutating func insert(_ start: UInt64, _ end: UInt64, protection: PageProtection) {
        guard start < end else { return }
        remove(start, end)
        let i = firstEnding(after: start)
        ranges.insert(ReservedRange(start: start, end: end, protection: protection), at: i)
        merge(around: i)
    }

    /// Gives the reserved parts of [start, end) `protection` (mprotect).
    mutating func protect(_ start: UInt64, _ end: UInt64, _ protection: PageProtection) {
        for part in overlapping(start, end) where part.protection != protection {
            insert(part.start, part.end, protection: protection)
        }
    }

    /// Merges the range at `i` with equal neighbours that touch it.
    private mutating func merge(around i: Int) {
        var i = i
        if i > 0, ranges[i - 1].end == ranges[i].start, ranges[i - 1].protection == ranges[i].protection {
            ranges[i - 1].end = ranges[i].end
            ranges.remove(at: i)
            i -= 1
        }
        if i + 1 < ranges.count, ranges[i].end == ranges[i + 1].start, ranges[i].protection == ranges[i + 1].protection {
            ranges[i].end = ranges[i + 1].end
            ranges.remove(at: i + 1)
        }
    }
}
