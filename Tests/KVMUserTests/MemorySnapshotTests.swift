import Testing
@testable import KVMUser

/// MemorySnapshot: what a preempted slice is rolled back to, taken with
/// KVM's dirty page log and with the full-copy fallback.
@Suite(.serialized) struct MemorySnapshotTests {
    static let data: UInt64 = 0x50_0000

    // mov byte [0x500000], 0x2a; mov byte [0x501000], 0x2b; mov eax, 60; syscall
    static let program: [UInt8] = [0xc6, 0x04, 0x25, 0x00, 0x00, 0x50, 0x00, 0x2a,
                                   0xc6, 0x04, 0x25, 0x00, 0x10, 0x50, 0x00, 0x2b,
                                   0xb8, 60, 0, 0, 0, 0x0f, 0x05]

    static let methods = [false, true]   // full copy?

    func machine(fullCopy: Bool) throws -> UserMachine {
        let m = try testMachine(running: Self.program)
        if fullCopy { m.memory.useFullCopyCheckpoints(reason: "test") }
        return m
    }

    @Test(arguments: methods) func restoreUndoesGuestAndHostWritesToWritablePages(fullCopy: Bool) throws {
        let m = try machine(fullCopy: fullCopy)
        try m.memory.map(Self.data, pages: 2, protection: .rw)
        try m.memory.write(Self.data, [1, 2, 3])          // touched before the snapshot
        let snapshot = MemorySnapshot()
        m.memory.capture(into: snapshot)
        #expect(snapshot.bytes >= 4096)
        #expect(snapshot.isIncremental == !(fullCopy || UserMachine.fullCopyRequested))
        // The guest writes both pages (the second was never touched), the host a third byte.
        #expect(try m.run() == .syscall)
        try m.memory.write(Self.data + 2, [9])
        #expect(try m.memory.read(Self.data, count: 3) == [0x2a, 2, 9])
        #expect(try m.memory.read(Self.data + 0x1000, count: 1) == [0x2b])
        try m.memory.restore(snapshot)
        #expect(try m.memory.read(Self.data, count: 3) == [1, 2, 3])
        #expect(try m.memory.read(Self.data + 0x1000, count: 1) == [0])
        // The guest sees the restored bytes too: run the stores again.
        m.registers.rip = 0x40_0000
        #expect(try m.run() == .syscall)
        #expect(try m.memory.read(Self.data, count: 3) == [0x2a, 2, 3])
        // And a second rollback to the same checkpoint undoes them again.
        try m.memory.restore(snapshot)
        #expect(try m.memory.read(Self.data, count: 3) == [1, 2, 3])
        #expect(try m.memory.read(Self.data + 0x1000, count: 1) == [0])
    }

    @Test func fullCopyLeavesReadOnlyPagesOut() throws {
        let m = try machine(fullCopy: true)
        try m.memory.map(Self.data, pages: 16, protection: .read)
        try m.memory.write(Self.data, Array(repeating: 7, count: 16 * 4096), access: .kernel)
        let snapshot = MemorySnapshot()
        m.memory.capture(into: snapshot)
        // Only the test's stack page (and the system stack) are writable and touched.
        #expect(snapshot.bytes <= 8 * 4096)
    }

    /// (Off with DETREC_CHECKPOINTS=full-copy, the setting for a host without the log.)
    @Test(.enabled(if: !UserMachine.fullCopyRequested)) func dirtyLogCheckpointsCopyOnlyWhatChangedSince() throws {
        let m = try machine(fullCopy: false)
        try #require(m.memory.checkpointMethod == .dirtyLog)
        try m.memory.map(Self.data, pages: 64, protection: .rw)
        try m.memory.write(Self.data + 0x2000, Array(repeating: 5, count: 62 * 4096))
        let snapshot = MemorySnapshot()
        m.memory.capture(into: snapshot)
        #expect(snapshot.bytes >= 62 * 4096)                  // the first one copies all written so far
        #expect(try m.run() == .syscall)                      // the guest writes 2 pages
        m.memory.capture(into: snapshot)
        #expect(snapshot.bytes >= 2 * 4096 && snapshot.bytes <= 6 * 4096)  // those, its stack, detrec's
        m.memory.capture(into: snapshot)
        #expect(snapshot.bytes == 0)
        try m.memory.write(Self.data + 0x3000, [1])           // a host write KVM does not see
        m.memory.capture(into: snapshot)
        #expect(snapshot.bytes == 4096)
    }

    @Test func changesAndMatchesFollowTheSliceAndIgnorePatches() throws {
        for fullCopy in Self.methods {
            let m = try machine(fullCopy: fullCopy)
            try m.memory.map(Self.data, pages: 2, protection: .rw)
            // (A full copy compares only pages backed at the checkpoint.)
            try m.memory.write(Self.data, [0])
            try m.memory.write(Self.data + 0x1000, [0])
            let snapshot = MemorySnapshot()
            m.memory.capture(into: snapshot)
            #expect(try m.run() == .syscall)
            let changed = try m.memory.changes(since: snapshot)
            #expect(Set(changed.values.map { $0.first }) == [0x2a, 0x2b])
            #expect(try m.memory.matches(snapshot, changes: changed))
            // A patched byte in a page of the slice is not a change.
            try m.memory.insertPatch(Self.data + 7)
            #expect(try m.memory.matches(snapshot, changes: changed))
            m.memory.removePatch(Self.data + 7)
            try m.memory.write(Self.data + 8, [1])
            #expect(try !m.memory.matches(snapshot, changes: changed))
            try m.memory.restore(snapshot)
            #expect(try m.memory.changes(since: snapshot).isEmpty)
        }
    }

    @Test func unmappedAndRemappedFramesComeBackAtRollback() throws {
        // munmap gives a frame back (the host zeroes it), mmap hands it out again.
        let m = try machine(fullCopy: false)
        try m.memory.map(Self.data, pages: 2, protection: .rw)
        try m.memory.map(0x70_0000, pages: 1, protection: .rw)
        try m.memory.write(0x70_0000, [4, 4])
        m.memory.unmap(0x70_0000, pages: 1)
        try m.memory.map(0x70_0000, pages: 1, protection: .rw)
        let snapshot = MemorySnapshot()
        m.memory.capture(into: snapshot)
        #expect(try m.memory.read(0x70_0000, count: 2) == [0, 0])
        try m.memory.write(0x70_0000, [6])
        try m.memory.restore(snapshot)
        #expect(try m.memory.read(0x70_0000, count: 2) == [0, 0])
    }

    @Test(.enabled(if: !UserMachine.fullCopyRequested)) func anOlderSnapshotIsRefused() throws {
        let m = try machine(fullCopy: false)
        try #require(m.memory.checkpointMethod == .dirtyLog)
        let first = MemorySnapshot(), second = MemorySnapshot()
        m.memory.capture(into: first)
        m.memory.capture(into: second)
        #expect(throws: StaleSnapshot.self) { try m.memory.restore(first) }
        try m.memory.restore(second)
    }

    /// The guard for CI: if KVM's dirty log ever stops seeing the guest's
    /// writes on this host, rollbacks would silently restore stale memory.
    /// This fails loudly instead (set DETREC_CHECKPOINTS=full-copy on a host
    /// without the log).
    @Test func theDirtyLogSeesEveryGuestWriteOnThisHost() throws {
        let check = try CheckpointProbe.checkDirtyLog(device: try KVMDevice())
        if UserMachine.fullCopyRequested { return }
        #expect(check.method == .dirtyLog)
        #expect(check.rounds.map(\.written) == [1000, 10, 200])
        #expect(check.rounds.map(\.logged) == [1000, 10, 200], "\(check.summary)")
        #expect(check.works, "\(check.summary)")
    }

    /// A large checkpoint protects its pages instead of copying them; the
    /// guest's writes (through KVM) and detrec's are copied before they
    /// land, pages still pending stay right across later checkpoints, and
    /// rollbacks, `changes` and `matches` see the checkpoint's bytes.
    @Test(.enabled(if: !UserMachine.fullCopyRequested)) func largeCheckpointsCopyPagesBeforeTheirNextWrite() throws {
        let m = try machine(fullCopy: false)
        try #require(m.memory.checkpointMethod == .dirtyLog)
        let pages = 2 * MemoryMirror.lazyThreshold
        try m.memory.map(Self.data, pages: pages, protection: .rw)
        for page in 0..<pages { try m.memory.write(Self.data + UInt64(page) * 4096, [UInt8(truncatingIfNeeded: page | 1)]) }
        let snapshot = MemorySnapshot()
        m.memory.capture(into: snapshot)
        guard m.memory.largeCheckpoints.hasPrefix("copy before write") else { return }  // no userfaultfd here
        #expect(snapshot.protectedPages >= pages)
        #expect(snapshot.bytes < 16 * 4096)
        #expect(try m.run() == .syscall)                     // the guest writes pages 0 and 1
        try m.memory.write(Self.data + 500 * 4096 + 9, [7])  // detrec writes page 500
        #expect(m.memory.copyBeforeWriteCounts.faults >= 2)
        let changed = try m.memory.changes(since: snapshot)
        #expect(changed.count >= 3)
        #expect(try m.memory.matches(snapshot, changes: changed))
        try m.memory.restore(snapshot)
        #expect(try m.memory.read(Self.data, count: 1) == [1])
        #expect(try m.memory.read(Self.data + 0x1000, count: 1) == [1])
        #expect(try m.memory.read(Self.data + 500 * 4096, count: 10) == [UInt8(truncatingIfNeeded: 500 | 1)] + Array(repeating: 0, count: 9))
        #expect(try m.memory.changes(since: snapshot).isEmpty)
        // A small checkpoint copies at once; page 1500, still pending from
        // the first one, is written only now and must come back too.
        try m.memory.write(Self.data + 3 * 4096, [3])
        m.memory.capture(into: snapshot)
        #expect(snapshot.protectedPages == 0)
        try m.memory.write(Self.data + 1500 * 4096, [9, 9])
        try m.memory.write(Self.data + 3 * 4096, [4])
        try m.memory.restore(snapshot)
        #expect(try m.memory.read(Self.data + 1500 * 4096, count: 2) == [UInt8(truncatingIfNeeded: 1500 | 1), 0])
        #expect(try m.memory.read(Self.data + 3 * 4096, count: 1) == [3])
        // The same with the mirror copied at once.
        let eager = try machine(fullCopy: false)
        eager.memory.useEagerMirror(reason: "test")
        try eager.memory.map(Self.data, pages: pages, protection: .rw)
        try eager.memory.write(Self.data, Array(repeating: 5, count: pages * 4096))
        eager.memory.capture(into: snapshot)
        #expect(snapshot.protectedPages == 0 && snapshot.bytes >= pages * 4096)
        try eager.memory.write(Self.data + 1500 * 4096, [9])
        try eager.memory.restore(snapshot)
        #expect(try eager.memory.read(Self.data + 1500 * 4096, count: 1) == [5])
    }

    /// The guard for CI: where userfaultfd write protection is offered, a
    /// rollback after a large checkpoint brings back what KVM's and
    /// detrec's writes changed.
    @Test(.enabled(if: !UserMachine.fullCopyRequested)) func copyBeforeWriteSeesTheGuestsWritesOnThisHost() throws {
        let check = try CheckpointProbe.checkCopyBeforeWrite(device: try KVMDevice())
        guard check.scheme.hasPrefix("copy before write") else { return }
        #expect(check.protected >= 2 * MemoryMirror.lazyThreshold, "\(check.summary)")
        #expect(check.faults >= 4, "\(check.summary)")   // 40 pages in order: 3 clusters; a host write: 1
        #expect(check.wrong == 0, "\(check.summary)")
        #expect(check.works)
    }
}
