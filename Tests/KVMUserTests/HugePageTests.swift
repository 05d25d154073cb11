import Testing
@testable import KVMUser

/// Guest 2 MiB pages (PageTables.mapHuge): a demand fault whose block is a
/// whole aligned 2 MiB of a reserved range maps it with one directory
/// entry and 512 contiguous aligned frames; whatever needs one page's
/// entry (mprotect, munmap of part of it, a watched page) splits it into
/// 512 entries that translate as it did. Reads never split.
@Suite(.serialized) struct HugePageTests {
    static let base: UInt64 = 0x4000_0000
    static let huge = PageTables.hugeSize

    // mov byte [0x40000000], 0x2a; mov byte [0x40201000], 0x2b;
    // mov byte [0x40005000], 0x2c; mov eax, 60; syscall
    static let program: [UInt8] = [0xc6, 0x04, 0x25, 0x00, 0x00, 0x00, 0x40, 0x2a,
                                   0xc6, 0x04, 0x25, 0x00, 0x10, 0x20, 0x40, 0x2b,
                                   0xc6, 0x04, 0x25, 0x00, 0x50, 0x00, 0x40, 0x2c,
                                   0xb8, 60, 0, 0, 0, 0x0f, 0x05]

    /// Runs the program, demand-mapping its faults with 2 MiB blocks.
    func runToExit(_ m: UserMachine) throws {
        while case .exception(let e) = try m.run() {
            guard m.memory.demandMap(e.address, block: FaultAround.most) else {
                Issue.record("fault not demand-mapped: \(e)")
                return
            }
        }
    }

    @Test func wholeBlocksAreMappedHugeAndSplitForOnePage() throws {
        guard PhysicalRegion.guestHugePages else { return }  // DETREC_HUGE_PAGES=off
        let m = try testMachine(running: Self.program)
        try m.memory.reserve(Self.base, pages: 4 * 512, protection: .rw)
        try runToExit(m)
        #expect(m.memory.tables.isHuge(Self.base) && m.memory.tables.isHuge(Self.base + Self.huge))
        #expect(!m.memory.tables.isHuge(Self.base + 2 * Self.huge), "a block never touched has no entry")
        // 512 contiguous frames, aligned as the block is.
        let first = try #require(m.memory.frame(of: Self.base))
        #expect(first % Self.huge == 0)
        #expect((0..<512).allSatisfy { m.memory.frame(of: Self.base + UInt64($0) * 4096) == first + UInt64($0) * 4096 })
        #expect(try m.memory.read(Self.base, count: 1) == [0x2a])
        #expect(try m.memory.read(Self.base + Self.huge + 0x1000, count: 1) == [0x2b])
        #expect(try m.memory.read(Self.base + 0x5000, count: 1) == [0x2c])
        // Host writes and reads go through the block without splitting it.
        try m.memory.write(Self.base + 0x1ff_fff0, [UInt8](repeating: 7, count: 32))
        #expect(try m.memory.read(Self.base + 0x1ff_fff0, count: 32) == [UInt8](repeating: 7, count: 32))
        #expect(m.memory.tables.isHuge(Self.base) && m.memory.tables.isHuge(Self.base + Self.huge))
        #expect(m.memory.framedParts(Self.base, Self.base + 4 * Self.huge).map { [$0.start, $0.end] }
                == [[Self.base, Self.base + 2 * Self.huge]])

        // mprotect of one page splits its block: that page only is read-only,
        // and KVM is told to forget what it cached of the block.
        m.memory.translationsChanged = false
        m.memory.protect(Self.base + 0x5000, pages: 1, protection: .read)
        #expect(!m.memory.tables.isHuge(Self.base))
        #expect(m.memory.translationsChanged)
        #expect(m.memory.protection(at: Self.base + 0x5000) == .read)
        #expect(m.memory.protection(at: Self.base + 0x4000) == .rw && m.memory.protection(at: Self.base + 0x6000) == .rw)
        #expect(m.memory.accessibleExtent(Self.base + 0x5000, count: 4096, write: true) == 0)
        #expect(try m.memory.read(Self.base, count: 1) == [0x2a])
        #expect(try m.memory.read(Self.base + 0x5000, count: 1) == [0x2c])
        #expect(try m.memory.read(Self.base + 0x1ff_fff0, count: 16) == [UInt8](repeating: 7, count: 16))

        // munmap of one page inside the second block: a hole, the rest kept.
        m.memory.unmap(Self.base + Self.huge + 0x1000, pages: 1)
        #expect(!m.memory.tables.isHuge(Self.base + Self.huge))
        #expect(m.memory.protection(at: Self.base + Self.huge + 0x1000) == nil)
        #expect(m.memory.protection(at: Self.base + Self.huge) == .rw)
        #expect(throws: GuestMemoryFault.self) { try m.memory.read(Self.base + Self.huge + 0x1000, count: 1) }
        #expect(try m.memory.read(Self.base + Self.huge + 0x1ff0, count: 16) == [UInt8](repeating: 7, count: 16))

        // munmap of a whole block takes it without a split: 512 frames back.
        #expect(m.memory.demandMap(Self.base + 2 * Self.huge + 0x3000, block: FaultAround.most))
        #expect(m.memory.tables.isHuge(Self.base + 2 * Self.huge))
        let before = m.memory.framesAvailable
        m.memory.translationsChanged = false
        m.memory.unmap(Self.base + 2 * Self.huge, pages: 512)
        #expect(m.memory.framesAvailable == before + 512)
        #expect(!m.memory.translationsChanged, "discarded frames need no memslot round trip")
        #expect(m.memory.protection(at: Self.base + 2 * Self.huge) == nil)
        // A block whose table exists is not mapped whole again.
        try m.memory.reserve(Self.base + Self.huge, pages: 512, protection: .rw)
        #expect(m.memory.demandMap(Self.base + Self.huge, block: FaultAround.most))
        #expect(!m.memory.tables.isHuge(Self.base + Self.huge))
        #expect(try m.memory.read(Self.base + Self.huge + 0x1000, count: 1) == [0])
    }

    /// A slice that demand-maps 2 MiB blocks and writes them, rolled back
    /// (dirty page log and full copy): they read zero again, and the
    /// re-run writes the same.
    @Test(arguments: [false, true]) func rollbackOfASliceThatTookHugeBlocks(fullCopy: Bool) throws {
        let m = try testMachine(running: Self.program)
        if fullCopy { m.memory.useFullCopyCheckpoints(reason: "test") }
        try m.memory.reserve(Self.base, pages: 4 * 512, protection: .rw)
        let snapshot = MemorySnapshot()
        m.memory.capture(into: snapshot)
        try runToExit(m)
        #expect(try m.memory.read(Self.base + 0x5000, count: 1) == [0x2c])
        try m.memory.restore(snapshot)
        #expect(try m.memory.read(Self.base, count: 4096) == [UInt8](repeating: 0, count: 4096))
        #expect(try m.memory.read(Self.base + 0x5000, count: 1) == [0])
        #expect(try m.memory.read(Self.base + Self.huge + 0x1000, count: 1) == [0])
        m.registers.rip = 0x40_0000
        #expect(try m.run() == .syscall, "the blocks keep their frames: no fault")
        #expect(try m.memory.read(Self.base + Self.huge + 0x1000, count: 1) == [0x2b])
        // A checkpoint now sees the guest's writes into the blocks.
        m.memory.capture(into: snapshot)
        try m.memory.write(Self.base + 0x5000, [9])
        let changes = try m.memory.changes(since: snapshot)
        #expect(changes.count == 1)
        try m.memory.restore(snapshot)
        #expect(try m.memory.read(Self.base + 0x5000, count: 1) == [0x2c])
    }
}
