import Testing
import KVMUser

/// MemorySnapshot: what a preempted slice is rolled back to.
@Suite(.serialized) struct MemorySnapshotTests {
    static let data: UInt64 = 0x50_0000

    // mov byte [0x500000], 0x2a; mov byte [0x501000], 0x2b; mov eax, 60; syscall
    static let program: [UInt8] = [0xc6, 0x04, 0x25, 0x00, 0x00, 0x50, 0x00, 0x2a,
                                   0xc6, 0x04, 0x25, 0x00, 0x10, 0x50, 0x00, 0x2b,
                                   0xb8, 60, 0, 0, 0, 0x0f, 0x05]

    @Test func restoreUndoesGuestAndHostWritesToWritablePages() throws {
        let m = try testMachine(running: Self.program)
        try m.memory.map(Self.data, pages: 2, protection: .rw)
        try m.memory.write(Self.data, [1, 2, 3])          // touched before the snapshot
        let snapshot = MemorySnapshot()
        m.memory.capture(into: snapshot)
        #expect(snapshot.bytes >= 4096)
        // The guest writes both pages (the second was never touched), the host a third byte.
        #expect(try m.run() == .syscall)
        try m.memory.write(Self.data + 2, [9])
        #expect(try m.memory.read(Self.data, count: 3) == [0x2a, 2, 9])
        #expect(try m.memory.read(Self.data + 0x1000, count: 1) == [0x2b])
        m.memory.restore(snapshot)
        #expect(try m.memory.read(Self.data, count: 3) == [1, 2, 3])
        #expect(try m.memory.read(Self.data + 0x1000, count: 1) == [0])
        // The guest sees the restored bytes too: run the stores again.
        m.registers.rip = 0x40_0000
        #expect(try m.run() == .syscall)
        #expect(try m.memory.read(Self.data, count: 3) == [0x2a, 2, 3])
    }

    @Test func readOnlyPagesAreNotCopied() throws {
        let m = try testMachine(running: Self.program)
        try m.memory.map(Self.data, pages: 16, protection: .read)
        try m.memory.write(Self.data, Array(repeating: 7, count: 16 * 4096), access: .kernel)
        let snapshot = MemorySnapshot()
        m.memory.capture(into: snapshot)
        // Only the test's stack page (and the system stack) are writable and touched.
        #expect(snapshot.bytes <= 8 * 4096)
    }
}
