import Glibc

/// Checkpoints measured and checked on this host with detrec's own
/// machinery (docs/preemption.md): whether KVM's dirty page log really sees
/// the guest's writes (`detrec doctor`, and a test that fails loudly if it
/// ever stops), and what a checkpoint and a rollback cost against the
/// number of pages written (`detrec bench-checkpoint`).
///
/// The guest is hand-assembled: it stores the byte in dl into rsi pages,
/// one every 4096 bytes from rdi, then makes a syscall (eax = 39).
public enum CheckpointProbe {
    static let codeAddress: UInt64 = 0x40_0000
    static let stackTop: UInt64 = 0x60_0000
    static let heap: UInt64 = 0x1000_0000

    ///     loop: mov [rdi], dl
    ///           add rdi, 4096
    ///           dec rsi
    ///           jnz loop
    ///           mov eax, 39
    ///           syscall
    static let program: [UInt8] = [0x88, 0x17,
                                   0x48, 0x81, 0xc7, 0x00, 0x10, 0x00, 0x00,
                                   0x48, 0xff, 0xce,
                                   0x75, 0xf2,
                                   0xb8, 39, 0, 0, 0,
                                   0x0f, 0x05,
                                   0xeb, 0xfe]

    /// A machine with `heapPages` writable pages at `heap`.
    static func machine(device: KVMDevice, heapPages: Int, fullCopy: Bool, eager: Bool = false) throws(ExitProbe.Failure) -> UserMachine {
        let m: UserMachine
        do throws(KVMError) {
            m = try UserMachine(device: device, cpuid: try CPUIDTable.forRecording(device: device),
                                memorySize: UInt64(heapPages + 256) * 4096)
        } catch { throw .kvm(error) }
        if fullCopy { m.memory.useFullCopyCheckpoints(reason: "requested") }
        if eager { m.memory.useEagerMirror(reason: "requested") }
        do throws(GuestMemoryFault) {
            try m.memory.map(codeAddress, pages: 1, protection: .rx)
            try m.memory.write(codeAddress, program, access: .kernel)
            try m.memory.map(stackTop - 0x1000, pages: 1, protection: .rw)
            try m.memory.map(heap, pages: max(heapPages, 1), protection: .rw)
        } catch { throw .memory(error) }
        m.start(entry: codeAddress, stack: stackTop)
        return m
    }

    /// Runs the guest once: it writes `value` to `pages` pages from `first`.
    static func write(_ m: UserMachine, pages: Int, from first: Int = 0, value: UInt8) throws(ExitProbe.Failure) {
        guard pages > 0 else { return }
        m.registers.rip = codeAddress
        m.registers.rdi = heap + UInt64(first) * 4096
        m.registers.rsi = UInt64(pages)
        m.registers.rdx = UInt64(value)
        while true {
            let exit: Exit
            do throws(KVMError) { exit = try m.run() } catch { throw .kvm(error) }
            if exit == .interrupted { continue }
            guard exit == .syscall, m.registers.rax == 39 else {
                throw .unexpected("checkpoint probe: the guest stopped with \(exit) at rip 0x\(String(m.registers.rip, radix: 16))")
            }
            return
        }
    }

    // MARK: the dirty log works

    /// One round of the check: the guest wrote `written` pages of the heap,
    /// and the log named `logged` of them, plus `others` pages elsewhere
    /// (its stack, detrec's exception stack).
    public struct Round: Sendable, Equatable {
        public var written: Int
        public var logged: Int
        public var others: Int
    }

    public struct DirtyLogCheck: Sendable, Equatable {
        public var method: CheckpointMethod
        public var rounds: [Round]
        /// Every page written was logged, and few others.
        public var works: Bool {
            method == .dirtyLog && !rounds.isEmpty && rounds.allSatisfy { $0.logged == $0.written && $0.others <= 4 }
        }
        public var summary: String {
            guard method == .dirtyLog else { return "\(method)" }
            let r = rounds.map { "wrote \($0.written), logged \($0.logged) (+\($0.others) others)" }.joined(separator: "; ")
            return works ? "KVM dirty page log, checked: \(r)" : "KVM dirty page log MISSES guest writes here: \(r)"
        }
    }

    /// Writes fresh pages, then some of the same pages again (the log
    /// must re-arm once read), then pages on both sides of a memslot
    /// boundary, and compares what the log names with what was written.
    public static func checkDirtyLog(device: KVMDevice) throws(ExitProbe.Failure) -> DirtyLogCheck {
        let slotPages = Int(UserMachine.dirtyLogSlotSize / 4096)
        let m = try machine(device: device, heapPages: slotPages + 128, fullCopy: false)
        let memory = m.memory
        guard memory.checkpointMethod == .dirtyLog, let log = memory.dirty else {
            return DirtyLogCheck(method: memory.checkpointMethod, rounds: [])
        }
        guard let heapFrame = memory.frame(of: heap) else { throw .unexpected("checkpoint probe: no heap frame") }
        let heapPage = Int((heapFrame - memory.data.guestBase) / 4096)
        _ = log.harvest(below: memory.highestFrame)
        log.clear()
        var rounds: [Round] = []
        for (first, count, value) in [(0, 1000, UInt8(1)), (0, 10, 2), (slotPages - 100, 200, 3)] {
            try write(m, pages: count, from: first, value: value)
            guard log.harvest(below: memory.highestFrame) else {
                return DirtyLogCheck(method: .fullCopy(reason: log.failure ?? "dirty log failed"), rounds: rounds)
            }
            // Heap frames are handed out in order, so page i of the heap is frame heapPage + i.
            let range = (heapPage + first)..<(heapPage + first + count)
            let logged = log.pages.filter { range.contains(Int($0)) }.count
            rounds.append(Round(written: count, logged: logged, others: log.pages.count - logged))
            log.clear()
        }
        return DirtyLogCheck(method: .dirtyLog, rounds: rounds)
    }

    // MARK: copy before write works

    /// A checkpoint with at least this many changed pages protects them
    /// instead of copying them, where the host can.
    public static let largeCheckpointPages = MemoryMirror.lazyThreshold

    public struct CopyBeforeWriteCheck: Sendable, Equatable {
        /// How large checkpoints are taken here (`GuestMemory.largeCheckpoints`).
        public var scheme: String
        /// Pages the checkpoint protected instead of copying.
        public var protected: Int
        /// Write faults handled after it, and the pages they copied.
        public var faults: Int
        public var copied: Int
        /// Pages that held the wrong byte after the rollback.
        public var wrong: Int
        public var works: Bool { protected > 0 && faults > 0 && wrong == 0 }
        public var summary: String {
            guard protected > 0 else { return scheme }
            let r = "protected \(protected) pages, \(faults) write faults copied \(copied), \(wrong) wrong after rollback"
            return works ? "\(scheme), checked: \(r)" : "\(scheme) FAILS here: \(r)"
        }
    }

    /// The guest fills 2048 pages, a checkpoint protects them, the guest
    /// rewrites 40 of them (KVM's fault path) and detrec one (a host
    /// write), and a rollback must bring back every old byte.
    public static func checkCopyBeforeWrite(device: KVMDevice) throws(ExitProbe.Failure) -> CopyBeforeWriteCheck {
        let pages = 2 * MemoryMirror.lazyThreshold
        let m = try machine(device: device, heapPages: pages, fullCopy: false)
        try write(m, pages: pages, value: 1)
        let snapshot = MemorySnapshot()
        m.memory.capture(into: snapshot)
        var check = CopyBeforeWriteCheck(scheme: m.memory.largeCheckpoints, protected: snapshot.protectedPages,
                                         faults: 0, copied: 0, wrong: 0)
        guard check.protected > 0 else { return check }
        try write(m, pages: 40, from: 100, value: 2)
        do throws(GuestMemoryFault) { try m.memory.write(heap + 1000 * 4096 + 5, [3], access: .kernel) } catch { throw .memory(error) }
        (check.faults, check.copied) = m.memory.copyBeforeWriteCounts
        do { try m.memory.restore(snapshot) } catch { throw .unexpected("checkpoint probe: \(error)") }
        for page in [0, 99, 100, 120, 139, 140, 999, 1000, 1001, pages - 1] {
            let bytes: [UInt8]
            do throws(GuestMemoryFault) { bytes = try m.memory.read(heap + UInt64(page) * 4096, count: 8) } catch { throw .memory(error) }
            if bytes != [1, 0, 0, 0, 0, 0, 0, 0] { check.wrong += 1 }
        }
        return check
    }

    // MARK: costs

    /// Median µs of a checkpoint and of a rollback after the guest wrote
    /// `pages` pages, with `heapPages` pages written once before.
    public struct Cost: Sendable {
        public var method: String
        public var heapPages: Int
        public var pages: Int
        public var checkpointMicros: Double
        public var rollbackMicros: Double
        /// The guest's run that wrote the pages (KVM's first-write faults
        /// on logged pages, and copy-before-write faults, are paid here).
        public var writeMicros: Double
        /// The guest's run that wrote them again after the checkpoint
        /// (where a checkpoint protected them, their copies are paid here).
        public var rewriteMicros: Double
        /// The first checkpoint, after the heap was written (once per process).
        public var firstCheckpointMicros: Double
    }

    public static func measure(device: KVMDevice, heapPages: Int, pages: [Int], repeats: Int,
                               fullCopy: Bool, eager: Bool = false) throws(ExitProbe.Failure) -> [Cost] {
        let m = try machine(device: device, heapPages: max(heapPages, pages.max() ?? 1), fullCopy: fullCopy, eager: eager)
        try write(m, pages: heapPages, value: 1)
        let snapshot = MemorySnapshot()
        let t0 = ExitProbe.now()
        m.memory.capture(into: snapshot)
        let first = (ExitProbe.now() - t0) * 1e6
        let method = fullCopy ? "full copy"
            : m.memory.checkpointMethod != .dirtyLog ? "full copy (no log)"
            : snapshot.protectedPages > 0 ? "dirty log, copy before write" : "dirty log, copied at once"
        var out: [Cost] = []
        for k in pages {
            var cp: [Double] = [], rb: [Double] = [], wr: [Double] = [], rw: [Double] = []
            for r in 0..<repeats {
                let value = UInt8(truncatingIfNeeded: 2 + 2 * r)
                var t = ExitProbe.now()
                try write(m, pages: k, value: value)
                wr.append(ExitProbe.now() - t)
                t = ExitProbe.now()
                m.memory.capture(into: snapshot)
                cp.append(ExitProbe.now() - t)
                t = ExitProbe.now()
                try write(m, pages: k, value: value &+ 1)
                rw.append(ExitProbe.now() - t)
                t = ExitProbe.now()
                do { try m.memory.restore(snapshot) } catch { throw .unexpected("checkpoint probe: \(error)") }
                rb.append(ExitProbe.now() - t)
                if k > 0 {
                    let back: UInt8
                    do throws(GuestMemoryFault) { back = try m.memory.readValue(heap + UInt64(k - 1) * 4096) } catch { throw .memory(error) }
                    guard back == value else { throw .unexpected("checkpoint probe: rollback left \(back), not \(value)") }
                }
            }
            func median(_ v: [Double]) -> Double { let s = v.sorted(); return s.isEmpty ? 0 : s[s.count / 2] * 1e6 }
            out.append(Cost(method: method, heapPages: heapPages, pages: k,
                            checkpointMicros: median(cp), rollbackMicros: median(rb), writeMicros: median(wr),
                            rewriteMicros: median(rw), firstCheckpointMicros: first))
        }
        return out
    }
}
