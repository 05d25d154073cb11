import Testing
import KVMUser
@testable import Kernel

/// The mapping list: splitting and joining as Linux's VMAs do, and where
/// new mappings go. Pure bookkeeping, no KVM.
@Suite struct AddressSpaceTests {
    static let base: UInt64 = 0x7fff_0000_0000
    static let page: UInt64 = 4096

    func anon(_ start: UInt64, _ end: UInt64, _ p: PageProtection = .rw) -> Mapping {
        Mapping(start: start, end: end, protection: p)
    }

    func file(_ start: UInt64, _ end: UInt64, offset: UInt64, _ p: PageProtection = .read, name: String = "/bin/prog") -> Mapping {
        Mapping(start: start, end: end, protection: p, name: name, fileOffset: offset)
    }

    /// A mapping as a string; the offset only for file mappings (Linux
    /// shows 0 for anonymous memory, [heap] and [stack]).
    func layout(_ m: Mapping) -> String {
        let file = !m.name.isEmpty && !m.name.hasPrefix("[")
        return "\(String(m.start, radix: 16))-\(String(m.end, radix: 16)) \(m.protection.rawValue) \(m.shared) \(m.name)"
            + (file ? " @\(String(m.fileOffset, radix: 16))" : "")
    }

    // MARK: insert

    @Test func adjacentAnonymousMappingsWithTheSameRightsCoalesce() {
        var s = AddressSpace(mmapBase: Self.base)
        s.insert(anon(0x10000, 0x20000))
        s.insert(anon(0x20000, 0x30000))
        s.insert(anon(0x30000, 0x31000))
        #expect(s.mappings == [anon(0x10000, 0x31000)])
        // Inserted below, too.
        s.insert(anon(0xf000, 0x10000))
        #expect(s.mappings == [anon(0xf000, 0x31000)])
    }

    @Test func differentRightsOrBackingDoNotCoalesce() {
        var s = AddressSpace(mmapBase: Self.base)
        s.insert(anon(0x10000, 0x20000, .rw))
        s.insert(anon(0x20000, 0x30000, .read))
        s.insert(Mapping(start: 0x30000, end: 0x31000, protection: .read, shared: true))
        s.insert(Mapping(start: 0x31000, end: 0x32000, protection: .read, name: "[heap]"))
        #expect(s.mappings.count == 4)
        #expect(s.mappings.map(\.start) == [0x10000, 0x20000, 0x30000, 0x31000])
        // A gap keeps equal neighbours apart.
        s.insert(anon(0x40000, 0x41000, .read))
        #expect(s.mappings.count == 5)
    }

    @Test func fileMappingsCoalesceOnlyWithContiguousOffsets() {
        var s = AddressSpace(mmapBase: Self.base)
        s.insert(file(0x400000, 0x401000, offset: 0))
        s.insert(file(0x401000, 0x403000, offset: 0x1000))
        #expect(s.mappings == [file(0x400000, 0x403000, offset: 0)])
        s.insert(file(0x403000, 0x404000, offset: 0x8000))
        #expect(s.mappings.count == 2)
        s.insert(file(0x404000, 0x405000, offset: 0x9000, name: "/other"))
        #expect(s.mappings.count == 3)
    }

    @Test func insertReplacesWhatItOverlaps() {
        var s = AddressSpace(mmapBase: Self.base)
        s.insert(anon(0x10000, 0x20000, .rw))
        s.insert(anon(0x14000, 0x18000, .read))
        #expect(s.mappings.map(layout) == [anon(0x10000, 0x14000, .rw), anon(0x14000, 0x18000, .read), anon(0x18000, 0x20000, .rw)].map(layout))
        // Covering all three: one mapping again.
        s.insert(anon(0xf000, 0x21000, .rw))
        #expect(s.mappings == [anon(0xf000, 0x21000, .rw)])
        // Sorted whatever the insertion order.
        s.insert(anon(0x1000_0000, 0x1000_1000, .read))
        s.insert(anon(0x5000, 0x6000, .read))
        #expect(s.mappings.map(\.start) == [0x5000, 0xf000, 0x1000_0000])
    }

    // MARK: remove

    @Test func removeSplitsAndAdjustsFileOffsets() {
        var s = AddressSpace(mmapBase: Self.base)
        s.insert(file(0x400000, 0x410000, offset: 0x2000))
        s.remove(0x404000, 0x406000)
        #expect(s.mappings == [file(0x400000, 0x404000, offset: 0x2000), file(0x406000, 0x410000, offset: 0x8000)])
        // Removing the edges.
        s.remove(0x3ff000, 0x401000)
        s.remove(0x40f000, 0x500000)
        #expect(s.mappings == [file(0x401000, 0x404000, offset: 0x3000), file(0x406000, 0x40f000, offset: 0x8000)])
        // Across both and the hole between them.
        s.remove(0x402000, 0x407000)
        #expect(s.mappings == [file(0x401000, 0x402000, offset: 0x3000), file(0x407000, 0x40f000, offset: 0x9000)])
        // Nothing there: nothing changes.
        s.remove(0x1000_0000, 0x2000_0000)
        #expect(s.mappings.count == 2)
        s.remove(0, UInt64.max)
        #expect(s.mappings.isEmpty)
    }

    @Test func anonymousMemoryKeepsOffsetZeroWhenSplit() {
        // /proc/self/maps prints a mapping's offset; Linux prints 0 for
        // anonymous memory, [heap] and [stack], however they were split.
        var s = AddressSpace(mmapBase: Self.base)
        s.insert(anon(0x10000, 0x20000))
        s.insert(Mapping(start: 0x7000_0000, end: 0x7001_0000, protection: .rw, name: "[stack]"))
        s.protect(0x14000, 0x15000, .read)
        s.remove(0x18000, 0x19000)
        s.protect(0x7000_8000, 0x7000_9000, .read)
        s.move(from: 0x1a000, length: 0x2000, to: 0x100000)
        for m in s.mappings {
            #expect(m.fileOffset == 0, "\(layout(m)) has offset 0x\(String(m.fileOffset, radix: 16))")
        }
    }

    // MARK: protect

    @Test func protectSplitsInThreeAndCoalescesBack() {
        var s = AddressSpace(mmapBase: Self.base)
        s.insert(anon(0x10000, 0x20000, .rw))
        s.protect(0x14000, 0x16000, .read)
        #expect(s.mappings.map(layout) == [anon(0x10000, 0x14000, .rw), anon(0x14000, 0x16000, .read), anon(0x16000, 0x20000, .rw)].map(layout))
        s.protect(0x14000, 0x16000, .rw)
        #expect(s.mappings == [anon(0x10000, 0x20000, .rw)])
    }

    @Test func protectAtEdgesAndAcrossMappings() {
        var s = AddressSpace(mmapBase: Self.base)
        s.insert(file(0x400000, 0x404000, offset: 0, .rx))
        s.insert(anon(0x404000, 0x408000, .rw))
        s.protect(0x403000, 0x405000, .read)
        #expect(s.mappings.map(layout) == [
            file(0x400000, 0x403000, offset: 0, .rx),
            file(0x403000, 0x404000, offset: 0x3000, .read),
            anon(0x404000, 0x405000, .read),
            anon(0x405000, 0x408000, .rw),
        ].map(layout))
        // Everything to one protection: the file part and the anonymous part stay apart.
        s.protect(0x400000, 0x408000, .none)
        #expect(s.mappings.count == 2)
        #expect(s.mappings.allSatisfy { $0.protection == .none })
        #expect(s.mappings[0] == file(0x400000, 0x404000, offset: 0, .none))
    }

    // MARK: findFree

    @Test func findFreePlacesTopDownBelowMmapBase() throws {
        var s = AddressSpace(mmapBase: Self.base)
        let a = try #require(s.findFree(length: 0x3000))
        #expect(a == Self.base - 0x3000)
        s.insert(anon(a, a + 0x3000))
        let b = try #require(s.findFree(length: 0x1000))
        #expect(b == a - 0x1000, "the next mapping goes right below the last")
        s.insert(anon(b, b + 0x1000, .read))
        // A hole left by an unmap is reused when it fits, the highest first.
        s.remove(a, a + 0x2000)
        #expect(s.findFree(length: 0x2000) == a)
        #expect(s.findFree(length: 0x1000) == a + 0x1000)
        #expect(s.findFree(length: 0x3000) == b - 0x3000, "a hole too small is skipped")
    }

    @Test func findFreeIgnoresMappingsAboveMmapBase() {
        var s = AddressSpace(mmapBase: Self.base)
        s.insert(anon(Self.base, Self.base + 0x100_0000, .rw))       // the stack, say
        s.insert(anon(Self.base - 0x1000, Self.base + 0x1000, .read)) // straddling the base
        #expect(s.findFree(length: 0x1000) == Self.base - 0x1000 - 0x1000)
    }

    @Test func findFreeHonoursAFreeHint() {
        var s = AddressSpace(mmapBase: Self.base)
        #expect(s.findFree(length: 0x2000, hint: 0x1000_0000) == 0x1000_0000)
        #expect(s.findFree(length: 0x2000, hint: 0x1000_0123) == 0x1000_1000, "rounded up to a page")
        s.insert(anon(0x1000_0000, 0x1000_2000))
        #expect(s.findFree(length: 0x2000, hint: 0x1000_1000) == Self.base - 0x2000, "an overlapping hint is ignored")
        #expect(s.findFree(length: 0x2000, hint: 0x1000) == Self.base - 0x2000, "a hint below mmap_min_addr is ignored")
    }

    @Test func findFreeFailsWhenNothingFits() {
        var s = AddressSpace(mmapBase: 0x30000)
        #expect(s.findFree(length: 0x20000) == 0x10000)
        #expect(s.findFree(length: 0x21000) == nil, "below vm.mmap_min_addr")
        s.insert(anon(0x20000, 0x21000))
        #expect(s.findFree(length: 0xf000) == 0x21000, "the gap above the mapping")
        #expect(s.findFree(length: 0x10000) == 0x10000, "the gap below it")
        #expect(s.findFree(length: 0x11000) == nil)
        s.insert(anon(0x18000, 0x30000))
        #expect(s.findFree(length: 0x8000) == 0x10000)
        #expect(s.findFree(length: 0x9000) == nil)
    }

    @Test func findFreeWithAHintNearTheTopOfTheAddressSpaceDoesNotTrap() async {
        // mmap(0xfffffffffffff000, 8192, ...) without MAP_FIXED reaches this
        // with the guest's hint: Linux ignores a hint it cannot use.
        await #expect(processExitsWith: .success) {
            let s = AddressSpace(mmapBase: 0x7fff_0000_0000)
            let at = s.findFree(length: 0x2000, hint: 0xffff_ffff_ffff_f000)
            precondition(at == 0x7fff_0000_0000 - 0x2000)
        }
    }

    // MARK: isFullyMapped and lookups

    @Test func isFullyMapped() {
        var s = AddressSpace(mmapBase: Self.base)
        s.insert(anon(0x10000, 0x20000, .rw))
        s.insert(anon(0x20000, 0x30000, .read))
        s.insert(anon(0x40000, 0x50000, .rw))
        #expect(s.isFullyMapped(0x10000, 0x30000), "contiguous mappings with different rights")
        #expect(s.isFullyMapped(0x18000, 0x22000))
        #expect(s.isFullyMapped(0x40000, 0x41000))
        #expect(!s.isFullyMapped(0x10000, 0x31000), "runs into the hole")
        #expect(!s.isFullyMapped(0x2f000, 0x41000), "spans the hole")
        #expect(!s.isFullyMapped(0xf000, 0x11000), "starts before the first mapping")
        #expect(!s.isFullyMapped(0x60000, 0x61000))
        #expect(s.mapping(containing: 0x2ffff)?.protection == .read)
        #expect(s.mapping(containing: 0x30000) == nil)
        #expect(s.isFree(0x30000, 0x40000))
        #expect(!s.isFree(0x30000, 0x40001))
    }

    @Test func moveCarriesMappingsAndOffsets() {
        var s = AddressSpace(mmapBase: Self.base)
        s.insert(file(0x10000, 0x14000, offset: 0x1000, .read))
        s.insert(anon(0x14000, 0x16000, .rw))
        s.move(from: 0x12000, length: 0x3000, to: 0x100000)
        #expect(s.mappings.map(layout) == [
            file(0x10000, 0x12000, offset: 0x1000, .read),
            anon(0x15000, 0x16000, .rw),
            file(0x100000, 0x102000, offset: 0x3000, .read),
            anon(0x102000, 0x103000, .rw),
        ].map(layout))
    }

    /// Where a mapped file ends is a file offset, so the pages past it stay
    /// the same pages when the mapping is split or moved.
    @Test func theFileEndFollowsSplitsAndMoves() {
        var s = AddressSpace(mmapBase: Self.base)
        var m = file(0x10000, 0x14000, offset: 0x1000)
        m.fileEnd = 0x3000    // the file's pages end two pages in
        s.insert(m)
        #expect(s.mappings.first?.fileBackedEnd == 0x12000)
        s.remove(0x11000, 0x12000)
        #expect(s.mappings.map(\.fileBackedEnd) == [0x11000, 0x12000], "the tail lies wholly past the file")
        s.move(from: 0x12000, length: 0x2000, to: 0x100000)
        #expect(s.mapping(containing: 0x100000)?.fileBackedEnd == 0x100000)
        #expect(m.pageTableParts(from: 0x11000, to: 0x13000).map { "\(String($0.start, radix: 16)) \($0.protection.rawValue)" }
                == ["11000 1", "12000 0"])
        // A neighbour mapping the same file without the limit stays apart.
        s.insert(file(0xf000, 0x10000, offset: 0))
        #expect(s.mappings.map(\.start) == [0xf000, 0x10000, 0x100000])
    }

    @Test func pageUp() {
        #expect(AddressSpace.pageUp(0) == 0)
        #expect(AddressSpace.pageUp(1) == 4096)
        #expect(AddressSpace.pageUp(4096) == 4096)
        #expect(AddressSpace.pageUp(UInt64.max - 4094) == nil)
        #expect(AddressSpace.pageUp(UInt64.max - 4095) == UInt64.max - 4095)
    }
}
