import Testing
@testable import KVMUser

/// The blocks demand faults map (`FaultAround`): aligned 16-page blocks
/// for faults that follow no run, doubling blocks (to be backed at once)
/// for faults just past or just below the previous block, never crossing
/// a 2 MiB boundary or the range.
struct FaultAroundTests {
    let start: UInt64 = 0x4000_0000, end: UInt64 = 0x4000_0000 + (16 << 20)

    @Test func faultsInOrderGrowBlocksUpTo2MiB() {
        var f = FaultAround()
        let page: UInt64 = 4096
        var b = f.block(for: start + 3 * page, start: start, end: end)
        #expect(b.from == start && b.to == start + 16 * page && !b.run)
        var sizes: [UInt64] = []
        for _ in 0..<7 {
            b = f.block(for: b.to, start: start, end: end)
            #expect(b.run)
            sizes.append((b.to - b.from) / page)
        }
        // 32, 64, 128, 256, then clipped to the first 2 MiB boundary (16 + 32 + ... + 256 = 496 pages: 16 left), then 512.
        #expect(sizes == [32, 64, 128, 256, 16, 512, 512])
        #expect(b.to % (2 << 20) == 0)
    }

    @Test func aFaultElsewhereStartsAgain() {
        var f = FaultAround()
        let page: UInt64 = 4096
        var b = f.block(for: start, start: start, end: end)
        b = f.block(for: b.to, start: start, end: end)
        #expect(b.run && b.to - b.from == 32 * page)
        b = f.block(for: start + (8 << 20) + 5 * page, start: start, end: end)
        #expect(!b.run && b.from == start + (8 << 20) && b.to - b.from == 16 * page)
        // A fault inside the last block (a frame given back since) is no run either.
        b = f.block(for: b.from + page, start: start, end: end)
        #expect(!b.run)
    }

    @Test func faultsDownwardGrowBelowAndStopAt2MiB() {
        var f = FaultAround()
        let page: UInt64 = 4096
        let top = start + (4 << 20)
        var b = f.block(for: top - page, start: start, end: end)
        #expect(b.from == top - 16 * page && b.to == top && !b.run)
        var low = b.from
        while low > start + (2 << 20) {
            b = f.block(for: low - page, start: start, end: end)
            #expect(b.run && b.to == low)
            #expect(b.from >= start + (2 << 20), "a block never crosses a 2 MiB boundary")
            low = b.from
        }
        #expect(low == start + (2 << 20))
    }

    @Test func blocksStayInsideTheRange() {
        var f = FaultAround()
        let page: UInt64 = 4096
        let s = start + 5 * page, e = start + 40 * page
        var b = f.block(for: s, start: s, end: e)
        #expect(b.from == s && b.to == start + 16 * page)
        b = f.block(for: b.to, start: s, end: e)
        #expect(b.run && b.to == e)
        b = f.block(for: e, start: s, end: e + 64 * page)  // the range grew: still a run
        #expect(b.run && b.from == e)
        var g = FaultAround()
        b = g.block(for: s, start: s, end: e)
        b = g.block(for: b.from - page, start: s, end: e)  // below the range's start: not a run
        #expect(!b.run)
    }
}
