import Testing
@testable import KVMUser

/// Reserved (demand-mapped) memory: ranges without frames until touched,
/// carried exactly by unmap, protect and move, given frames by a guest
/// fault (`demandMap`) or detrec's first touch, and rolled back as the
/// untouched pages they were.
@Suite(.serialized) struct ReservedMemoryTests {
    static let data: UInt64 = 0x50_0000

    // mov byte [0x500000], 0x2a; mov byte [0x521000], 0x2b; mov eax, 60; syscall
    static let program: [UInt8] = [0xc6, 0x04, 0x25, 0x00, 0x00, 0x50, 0x00, 0x2a,
                                   0xc6, 0x04, 0x25, 0x00, 0x10, 0x52, 0x00, 0x2b,
                                   0xb8, 60, 0, 0, 0, 0x0f, 0x05]

    @Test func rangesSplitMergeAndMove() {
        var r = ReservedRanges()
        r.insert(0x1000, 0x9000, protection: .rw)
        r.protect(0x3000, 0x5000, .read)
        #expect(r.ranges.map { [$0.start, $0.end] } == [[0x1000, 0x3000], [0x3000, 0x5000], [0x5000, 0x9000]])
        #expect(r.range(containing: 0x3fff)?.protection == .read)
        #expect(r.range(containing: 0x9000) == nil)
        r.protect(0x3000, 0x5000, .rw)
        #expect(r.ranges.count == 1, "equal neighbours merge again")
        r.remove(0x2000, 0x4000)
        #expect(r.ranges.map { [$0.start, $0.end] } == [[0x1000, 0x2000], [0x4000, 0x9000]])
        #expect(r.gaps(0, 0xa000).map { [$0.start, $0.end] } == [[0, 0x1000], [0x2000, 0x4000], [0x9000, 0xa000]])
        #expect(r.overlapping(0x1800, 0x5000).map { [$0.start, $0.end] } == [[0x1800, 0x2000], [0x4000, 0x5000]])
    }

    /// Ranges with a source (a lazily filled file mapping) split with it,
    /// keep their offsets through mprotect and merge only when one's
    /// source continues the other's; a first touch fills the page from it.
    @Test func sourcesSplitMergeAndFill() throws {
        let bytes = (0..<(8 * 4096)).map { UInt8(truncatingIfNeeded: $0 / 4096 + 1) }
        guard let content = PageContent(extents: [PageContent.Extent(start: 0, length: UInt64(bytes.count))], data: bytes,
                                        end: UInt64(bytes.count) - 10) else { Issue.record("no content"); return }
        var r = ReservedRanges()
        r.insert(0x10000, 0x18000, protection: .read, source: PageSource(content: content, offset: 0))
        r.protect(0x12000, 0x13000, .rw)
        #expect(r.ranges.map { $0.source?.offset } == [0, 0x2000, 0x3000])
        r.protect(0x12000, 0x13000, .read)
        #expect(r.ranges.count == 1, "a source continuing its neighbour's merges again")
        // The same content at an offset that does not continue: no merge.
        r.insert(0x18000, 0x19000, protection: .read, source: PageSource(content: content, offset: 0))
        #expect(r.ranges.count == 2)

        let m = try testMachine(running: Self.program)
        let va: UInt64 = 0x100_0000_0000
        try m.memory.reserve(va, pages: 8, protection: .read)
        #expect(m.memory.attach(content, offset: 4096, at: va, length: 7 * 4096 - 10).isEmpty)
        #expect(try m.memory.peek(va + 4096 - 1, count: 2) == [2, 3], "peek reads the source without a frame")
        #expect(m.memory.isUntouchedReserved(va))
        #expect(try m.memory.read(va + 3 * 4096, count: 1, access: .kernel) == [5])
        #expect(!m.memory.isUntouchedReserved(va), "its block was filled")
        #expect(try m.memory.read(va + 7 * 4096 - 11, count: 2, access: .kernel) == [8, 0], "past the fill: zero")
    }

    @Test func terabytesCostNothingUntilTouched() throws {
        let m = try testMachine(running: Self.program)
        let before = m.memory.framesAvailable
        // 1 TiB well away from the test's code and stack.
        let big: UInt64 = 0x100_0000_0000
        try m.memory.reserve(big, pages: Int((1 << 40) / 4096), protection: .rw)
        #expect(m.memory.framesAvailable == before)
        #expect(m.memory.protection(at: big + (1 << 39)) == .rw)
        // Checks see the page as accessible without giving it a frame.
        #expect(m.memory.accessibleExtent(big + 100, count: 1 << 20, write: true) == 1 << 20)
        try m.memory.check(big, count: 8192, write: true)
        #expect(m.memory.isUntouchedReserved(big))
        // A host read maps the page's block (the one rule for host accesses) and reads zero.
        #expect(try m.memory.read(big + (1 << 39) + 5, count: 3) == [0, 0, 0])
        #expect(!m.memory.isUntouchedReserved(big + (1 << 39)))
        #expect(before - m.memory.framesAvailable == UInt64(FaultAround.first))
        // Read pages are resident (Linux maps its zero page); the rest of the block is not.
        #expect(m.memory.residency(big + (1 << 39), pages: 2) == [1, 0])
        // mprotect splits; a read-only reserved page refuses user writes.
        m.memory.protect(big, pages: 16, protection: .read)
        #expect(m.memory.protection(at: big) == .read)
        #expect(m.memory.accessibleExtent(big, count: 4096, write: true) == 0)
        #expect(m.memory.accessibleExtent(big, count: 4096, write: false) == 4096)
        // munmap of the middle, mremap of a touched part.
        m.memory.unmap(big + (1 << 38), pages: 16)
        #expect(m.memory.protection(at: big + (1 << 38)) == nil)
        try m.memory.write(big + (1 << 39), [7])
        try m.memory.move(from: big + (1 << 39), to: 0x300_0000_0000, pages: 32)
        #expect(try m.memory.read(0x300_0000_0000, count: 1) == [7])
        #expect(m.memory.isUntouchedReserved(0x300_0000_0000 + 16 * 4096), "the untouched rest moved as reserved")
        #expect(m.memory.protection(at: big + (1 << 39)) == nil)
        m.memory.unmap(big, pages: Int((1 << 41) / 4096))
        #expect(m.memory.reservedRanges.filter { $0.start >= big && $0.start < 0x200_0000_0000 }.isEmpty)
    }

    @Test func guestFaultMapsTheBlockAndRunsOn() throws {
        let m = try testMachine(running: Self.program)
        try m.memory.reserve(Self.data, pages: 64, protection: .rw)
        guard case .exception(let e) = try m.run() else { Issue.record("no fault"); return }
        #expect(e.vector == GuestException.pageFault && e.address == Self.data)
        #expect(m.memory.demandMap(e.address))
        guard case .exception(let e2) = try m.run() else { Issue.record("no second fault"); return }
        #expect(e2.address == Self.data + 0x21000, "the second store is outside the first block")
        #expect(m.memory.demandMap(e2.address))
        #expect(try m.run() == .syscall)
        #expect(try m.memory.read(Self.data, count: 1) == [0x2a])
        #expect(try m.memory.read(Self.data + 0x21000, count: 1) == [0x2b])
        #expect(m.memory.isUntouchedReserved(Self.data + 0x10000), "the block between stays untouched")
        #expect(m.memory.residency(Self.data, pages: 2) == [1, 0])
    }

    /// A slice that demand-maps pages and writes them, rolled back: the
    /// pages keep their frames but read zero, as the untouched pages did.
    @Test(arguments: [false, true]) func rollbackOfASliceThatTookFreshPages(fullCopy: Bool) throws {
        let m = try testMachine(running: Self.program)
        if fullCopy { m.memory.useFullCopyCheckpoints(reason: "test") }
        // Frames from the free list too: map and unmap some first.
        try m.memory.map(0x70_0000, pages: 32, protection: .rw)
        try m.memory.write(0x70_0000, [UInt8](repeating: 9, count: 32 * 4096))
        m.memory.unmap(0x70_0000, pages: 32)
        try m.memory.reserve(Self.data, pages: 64, protection: .rw)
        let snapshot = MemorySnapshot()
        m.memory.capture(into: snapshot)
        while case .exception(let e) = try m.run() {
            guard m.memory.demandMap(e.address) else { Issue.record("fault not demand-mapped: \(e)"); return }
        }
        #expect(try m.memory.read(Self.data, count: 1) == [0x2a])
        try m.memory.restore(snapshot)
        #expect(try m.memory.read(Self.data, count: 4096) == [UInt8](repeating: 0, count: 4096))
        #expect(try m.memory.read(Self.data + 0x21000, count: 4096) == [UInt8](repeating: 0, count: 4096))
        // The re-run takes no fault and writes the same.
        m.registers.rip = 0x40_0000
        #expect(try m.run() == .syscall)
        #expect(try m.memory.read(Self.data + 0x21000, count: 1) == [0x2b])
    }

    @Test func outOfFramesIsAFailureNotATrap() throws {
        let device = try KVMDevice()
        let m = try UserMachine(device: device, cpuid: try CPUIDTable.forRecording(device: device), memorySize: 1 << 20)
        try m.memory.reserve(0x1000_0000, pages: 1 << 20, protection: .rw)
        var mapped = 0
        while m.memory.demandMap(0x1000_0000 + UInt64(mapped) * 4096) { mapped += 1 }
        #expect(mapped > 0 && mapped < 256)
        #expect(m.memory.isUntouchedReserved(0x1000_0000 + UInt64(mapped) * 4096))
        #expect(throws: GuestMemoryFault.self) { try m.memory.write(0x1000_0000 + UInt64(mapped) * 4096, [1]) }
    }
}
