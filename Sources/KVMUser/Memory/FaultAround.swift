/// Which pages a demand fault maps with the faulting one, as Linux's
/// readahead picks a file's pages: a fault away from the last one maps
/// the page's aligned block of `first` pages (the guest's faults on
/// committed memory ask for 512: its frames are promised anyway, and a
/// program touching a large heap in random order then pays one fault per
/// 2 MiB; MAP_NORESERVE memory, sanitizer shadow touched sparsely, keeps
/// 16); a fault on the page just
/// past (or just below: a stack) the block the previous fault mapped
/// doubles the block, up to `most` pages, and those pages are backed on
/// the host at once (`GuestMemory.populate`). A program filling a large
/// heap then takes one fault per 2 MiB instead of one per 64 KiB, and
/// KVM's shadow MMU, finding the neighbours backed, maps up to 8 of them
/// with each page the guest touches (it does not while the dirty page log
/// is on: `populate` is skipped then). Sparse touches keep 16-page blocks
/// that the host backs only where written.
///
/// A grown block never crosses a 2 MiB boundary, so the pages mincore
/// then reports resident although the guest has not touched them yet lie
/// in the aligned 2 MiB around a touched one, as Linux reports them with
/// transparent huge pages (`enabled=always`): each answer lies between
/// what Linux gives with huge pages and without. Otherwise only which
/// frames exist and when changes: the guest reads zero in every fresh
/// page either way, and nothing of it goes in the trace.
public struct FaultAround: Equatable {
    /// Pages mapped by a fault that follows no run (and their alignment).
    public static let first = 16
    /// The largest block a run of sequential faults grows to (2 MiB).
    public static let most = 512

    /// The last block mapped, [low, high), and its size in pages.
    private var low: UInt64 = 0, high: UInt64 = 0
    private var pages = 0

    /// The block to map for a fault on `page` within the reserved range
    /// [start, end), and whether it continues a run (so is to be backed).
    /// `first`: the size (and alignment) of a block that follows no run.
    mutating func block(for page: UInt64, start: UInt64, end: UInt64,
                        first: Int = FaultAround.first) -> (from: UInt64, to: UInt64, run: Bool) {
        let from: UInt64, to: UInt64, run: Bool
        let huge = UInt64(FaultAround.most) * 4096
        if pages > 0, page == high, high < end {
            pages = min(pages * 2, FaultAround.most)
            from = page
            to = min(end, page + UInt64(pages) * 4096, (page & ~(huge - 1)) + huge)
            run = true
        } else if pages > 0, page &+ 4096 == low, low > start {
            pages = min(pages * 2, FaultAround.most)
            to = low
            from = max(start, low - min(UInt64(pages) * 4096, low), page & ~(huge - 1))
            run = true
        } else {
            pages = max(1, min(first, FaultAround.most))
            let block = UInt64(pages) * 4096
            from = max(start, page & ~(block - 1))
            to = min(end, (page & ~(block - 1)) + block)
            run = false
        }
        low = from
        high = to
        return (from, to, run)
    }
}
