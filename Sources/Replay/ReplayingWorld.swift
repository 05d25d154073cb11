import Glibc
import Kernel
import KVMUser
import Trace

/// Replay: nothing touches the host. Every outcome comes from the trace,
/// and every step the guest takes is checked against it: a different
/// syscall, different arguments, a different result or running past the
/// end of the trace stops the replay with the event number and guest RIP.
final class ReplayingWorld: HostWorld {
    let reader: TraceReader
    var isReplaying: Bool { true }
    private var peeked: Event?
    private var current: SyscallRecord?
    private var hostCalled = false
    private var storedCache: [String: [UInt8]] = [:]
    private var rangeCache: [String: FileRange] = [:]
    /// Index of the event `peeked` holds (or the next one to read).
    private var index: Int { reader.nextEventIndex - (peeked == nil ? 0 : 1) }
    /// The index of the next event to replay (the gdb stub's `monitor when`).
    var eventIndex: Int { index }

    init(reader: TraceReader) {
        self.reader = reader
    }

    private func peek() throws -> Event? {
        if let e = peeked { return e }
        do { peeked = try reader.next() } catch { throw RunStopped("the trace is damaged: \(error)") }
        return peeked
    }

    private func consume() { peeked = nil }

    private func describe(_ entry: SyscallEntry) -> String {
        let args = entry.args.map { "0x" + String($0, radix: 16) }.joined(separator: ", ")
        return "\(SyscallNames.name(entry.number))(\(args)) at rip 0x\(String(entry.rip, radix: 16)) in thread \(entry.tid)"
    }

    private func describe(_ event: Event) -> String {
        switch event {
        case .syscall(let s):
            return describe(SyscallEntry(number: s.number, args: s.args, rip: s.rip, tid: s.tid))
        case .exit(_, let status): return "exit_group(\(status))"
        case .fatalSignal(_, let signal, _, let rip, let address):
            return "death by \(Signals.name(signal)) at rip 0x\(String(rip, radix: 16)) address 0x\(String(address, radix: 16))"
        case .processStart: return "a process start"
        case .dataCheck(let tid, let length, _):
            return "a check of \(length) bytes written by thread \(tid)"
        case .signal(let tid, let signal, _):
            return "\(Signals.name(signal)) from a timer for thread \(tid)"
        case .blocked(let tid, let number, let rip):
            return "thread \(tid) waiting in \(SyscallNames.name(number)) at rip 0x\(String(rip, radix: 16))"
        case .preempt(let tid, let rip, let hits, _):
            return "thread \(tid) preempted at rip 0x\(String(rip, radix: 16)) (hit \(hits))"
        }
    }

    private func diverged(_ what: String) -> RunStopped {
        RunStopped("replay diverged at event \(index): \(what)")
    }

    /// The recording has no more events where the replay wants one.
    private func ranOut(_ what: String) -> RunStopped {
        switch reader.ending {
        case .truncated(let after, _)?:
            return RunStopped("the trace ends after event \(after - 1): the recording was interrupted there; replay stopped at \(what)")
        default:
            return RunStopped("replay ran past the end of the trace (event \(index)) at \(what)")
        }
    }

    func startupRandom() throws -> [UInt8] {
        guard let e = try peek() else { throw ranOut("the start") }
        guard case .processStart(_, let random) = e, random.count == 16 else {
            throw diverged("the recording does not start with a process start but with \(describe(e))")
        }
        consume()
        return random
    }

    func enterSyscall(_ entry: SyscallEntry) throws -> Termination? {
        guard let e = try peek() else { throw ranOut(describe(entry)) }
        switch e {
        case .syscall(let s):
            guard s.number == entry.number, s.args == entry.args, s.rip == entry.rip, s.tid == entry.tid else {
                throw diverged("the program made \(describe(entry)); the recording has \(describe(e))")
            }
            current = s
            hostCalled = false
            carriersTaken = 0
            return nil
        case .exit(let tid, let status):
            let number = SyscallNumber.dispatched(entry.number)
            guard number == SYS.exit_group || number == SYS.exit, tid == entry.tid,
                  Int32(truncatingIfNeeded: entry.args[0]) & 0xff == status else {
                throw diverged("the program made \(describe(entry)); the recording has \(describe(e))")
            }
            return nil
        case .blocked(let tid, let number, let rip):
            guard tid == entry.tid, number == entry.number, rip == entry.rip else {
                throw diverged("the program made \(describe(entry)); the recording has \(describe(e))")
            }
            expectBlock = true
            return nil
        case .fatalSignal(let tid, let signal, let code, _, _) where code == Signals.fromOutside && tid == entry.tid:
            // The recording was killed from outside before this syscall ran.
            consume()
            return .killed(signal: signal)
        default:
            throw diverged("the program made \(describe(entry)); the recording has \(describe(e))")
        }
    }

    /// The syscalls that write guest memory only through /proc/self/mem.
    static let writesThroughProcMem: Set<UInt64> = [SYS.write, SYS.pwrite64, SYS.writev, SYS.pwritev, SYS.pwritev2]

    func host(memory: GuestMemory, sharedFiles: [Range<UInt64>], _ body: (inout HostEffects) throws(Errno) -> Int64) throws -> HostOutcome {
        guard let s = current, !hostCalled else { throw diverged("a host call outside a recorded syscall, or a second one in the same syscall") }
        hostCalled = true
        var fills: [HostOutcome.FileFill] = []
        var carried: [[UInt8]] = []
        var written: [Range<UInt64>] = []
        for w in s.writes {
            switch w {
            case .bytes(0, let data):
                carried.append(data)    // for the kernel, not guest memory (HostEffects.carry)
            case .bytes(let address, let data):
                // Recorded with the guest's rights (HostEffects.write): applied
                // with them, except by the write family, whose only writes
                // into guest memory go through /proc/self/mem with a
                // debugger's rights over the guest's own pages (writeForced).
                let range = HostOutcome.range(address, UInt64(data.count))
                let intoSharedFile = sharedFiles.contains { $0.lowerBound <= range.lowerBound && range.upperBound <= $0.upperBound }
                let rights: GuestAccess = intoSharedFile || ReplayingWorld.writesThroughProcMem.contains(SyscallNumber.dispatched(s.number)) ? .kernel : .user
                written.append(range)
                do { try memory.write(address, data, access: rights) } catch {
                    throw diverged("the recorded write of \(data.count) bytes at 0x\(String(address, radix: 16)) does not fit the replayed memory")
                }
            case .stored(0, 0, _, 0):
                continue    // a file for the kernel (execve): loadFile reads it
            case .stored(let address, let length, let sha, let offset):
                let content = try stored(sha)
                guard offset <= UInt64(content.count), length <= UInt64(content.count) - offset else {
                    throw RunStopped("the trace is damaged: a mapped range lies outside its stored file \(sha)")
                }
                // A file fill may write a read-only mapping (HostEffects.fill),
                // but only one this syscall made, never detrec's own pages.
                guard ReplayingWorld.mayFill(address: address, length: length, in: s) else {
                    throw diverged("the recorded file contents at 0x\(String(address, radix: 16)) (\(length) bytes) are not a mapping the program made")
                }
                do { try memory.fill(address, with: content[Int(offset)..<Int(offset + length)]) } catch {
                    throw diverged("the recorded mapping at 0x\(String(address, radix: 16)) does not fit the replayed memory")
                }
                // Empty ones carry execve's files (`loadFile`); recording logs no empty fill.
                if length > 0 {
                    fills.append(HostOutcome.FileFill(address: address, length: length, sha256: sha, offset: offset, content: content))
                    written.append(HostOutcome.range(address, length))
                }
            case .storedRange(let address, let length, let sha, let offset):
                let range = try storedRange(sha)
                guard range.covers(offset: offset, length: length) else {
                    throw RunStopped("the trace is damaged: a mapped range lies outside its stored range \(sha)")
                }
                guard ReplayingWorld.mayFill(address: address, length: length, in: s) else {
                    throw diverged("the recorded file contents at 0x\(String(address, radix: 16)) (\(length) bytes) are not a mapping the program made")
                }
                do { try range.fill(memory, at: address, offset: offset, length: length) } catch {
                    throw diverged("the recorded mapping at 0x\(String(address, radix: 16)) does not fit the replayed memory")
                }
                fills.append(HostOutcome.FileFill(address: address, length: length, sha256: sha, offset: offset, content: range.wholeFile))
                written.append(HostOutcome.range(address, length))
            }
        }
        return HostOutcome(result: s.result, fileFills: fills, carried: carried, written: written)
    }

    /// Where a recorded file fill may land: only from the one syscall that
    /// fills mappings (mmap), at the start of the mapping it returned and
    /// within its length (HostEffects.fill), in user space and never in
    /// detrec's system area.
    static func mayFill(address: UInt64, length: UInt64, in s: SyscallRecord) -> Bool {
        let (end, overflow) = address.addingReportingOverflow(length)
        guard !overflow, end <= Layout.systemBase || address >= Layout.systemEnd, end <= GuestMemory.userLimit else { return false }
        /// Whether the fill lies in [base, base + size rounded up to pages).
        func within(_ base: UInt64, _ size: UInt64) -> Bool {
            guard let pages = AddressSpace.pageUp(size) else { return false }
            let (top, o) = base.addingReportingOverflow(pages)
            return !o && address >= base && end <= top
        }
        switch SyscallNumber.dispatched(s.number) {
        // The mapping is the length rounded up to pages (MemorySyscalls.mmap).
        case SYS.mmap: return address == UInt64(bitPattern: s.result) && within(address, s.args[1])
        // MADV_DONTNEED reads a file mapping again (MemoryAdvice.discard).
        case SYS.madvise: return within(s.args[0], s.args[1])
        // A file mapping grown by mremap maps more of the file (Remap).
        case SYS.mremap: return s.result >= 0 && within(UInt64(bitPattern: s.result), s.args[2])
        default: return false
        }
    }

    private func stored(_ sha: String) throws -> [UInt8] {
        if let c = storedCache[sha] { return c }
        do {
            let c = try reader.storedFile(sha256: sha)
            storedCache[sha] = c
            return c
        } catch {
            throw RunStopped("the trace is damaged: \(error)")
        }
    }

    /// A file mapping's stored range (`StoredRange`), decoded once.
    private func storedRange(_ sha: String) throws -> FileRange {
        if let r = rangeCache[sha] { return r }
        do {
            let r = try StoredRange.decode(try reader.storedFile(sha256: sha))
            let range = FileRange(sha256: sha, base: r.base, size: r.size,
                                  extents: r.extents.map { FileRange.Extent(start: $0.start, length: $0.length) }, data: r.data)
            rangeCache[sha] = range
            return range
        } catch {
            throw RunStopped("the trace is damaged: \(error)")
        }
    }

    func exitSyscall(_ entry: SyscallEntry, result: Int64) throws {
        guard !expectBlock else { throw diverged("\(describe(entry)) completed in replay; in the recording it waited") }
        guard let s = current else { throw diverged("\(describe(entry)) finished without a recorded event") }
        guard s.result == result else {
            throw diverged("\(describe(entry)) returned \(result) in replay, \(s.result) in the recording")
        }
        current = nil
        consume()
        let computed = computedCheck
        computedCheck = nil
        if let next = try peek(), case .dataCheck(_, let length, let crc) = next {
            consume()
            guard let computed, computed.0 == length, computed.1 == crc else {
                pendingEcho = nil
                throw RunStopped("replay diverged at event \(index - 1): \(describe(entry)) wrote different data than the recording (\(computed?.0 ?? 0) bytes, CRC-32C 0x\(String(computed?.1 ?? 0, radix: 16)); recorded \(length) bytes, 0x\(String(crc, radix: 16))). Something the program read was not recorded: under PVM that can be rdtsc or rdrand, which cannot be trapped")
            }
        }
        if let (bytes, fd) = pendingEcho {
            pendingEcho = nil
            emit(bytes, to: fd)
        }
    }

    /// After the program ended: the recording must end here too, with its
    /// end marker and nothing after it (the reader reports trailing bytes
    /// or a damaged marker as damage). A recording cut off right after its
    /// last event (no end marker) is complete enough.
    func finishReplay() throws {
        guard let e = try peek() else { return }
        throw RunStopped("the trace is damaged: the program ended, but the recording goes on with event \(index), \(describe(e))")
    }

    /// The first process's end, the trace's last event. It is read here,
    /// not only dropped: when the first process ended before the last one
    /// (a child it killed dies after it), nothing has read it yet.
    func processExit(status: Int32) throws {
        let what = "the end of the first process with status \(status)"
        guard let e = try peek() else { throw ranOut(what) }
        guard case .exit(let tid, let recorded) = e, recorded == status, tid == currentThread else {
            throw diverged("the program met \(what); the recording has \(describe(e))")
        }
        consume()
    }

    func processKilled(_ f: FatalSignal) throws { try fatalSignal(f) }

    func fatalSignal(_ f: FatalSignal) throws {
        let what = "death by \(Signals.name(f.signal)) at rip 0x\(String(f.rip, radix: 16))"
        guard let e = try peek() else { throw ranOut(what) }
        guard case .fatalSignal(let tid, let signal, _, let rip, _) = e, signal == f.signal, rip == f.rip,
              tid == currentThread else {
            throw diverged("the program met \(what); the recording has \(describe(e))")
        }
        consume()
    }

    func takeHostSignal() -> Int32? { nil }

    /// Set by `detrec replay --skip-sleeps`.
    var skipSleeps = false

    /// How many of the current event's kernel files were taken (execve).
    private var carriersTaken = 0

    func loadFile(_ read: () throws(Errno) -> FileContent) throws -> FileContent {
        guard let s = current else { throw diverged("a file load outside a recorded syscall") }
        let shas = s.writes.compactMap { w -> String? in
            if case .stored(0, 0, let sha, 0) = w { return sha }
            return nil
        }
        guard carriersTaken < shas.count else {
            // A failed load: the recorded -errno (anything else is not an errno).
            if (-4095 ... -1).contains(s.result) { throw Errno(Int32(-s.result)) }
            throw diverged("the program loads more files here than the recording did")
        }
        let sha = shas[carriersTaken]
        carriersTaken += 1
        return FileContent(sha256: sha, bytes: try stored(sha))
    }

    func randomBytes(_ count: Int) throws -> [UInt8] {
        guard let s = current else { throw diverged("random bytes outside a recorded syscall") }
        for w in s.writes {
            if case .bytes(0, let data) = w, data.count == count { return data }
        }
        throw diverged("the recording has no random bytes for this syscall")
    }

    func executablePath(_ opened: () -> String?) throws -> String? {
        guard let s = current else { throw diverged("an executable path outside a recorded syscall") }
        let carried = s.writes.compactMap { w -> [UInt8]? in
            if case .bytes(0, let data) = w { return data }
            return nil
        }
        // The random bytes come first; a trace recorded before events
        // carried the path has nothing after them.
        guard carried.count >= 2, !carried[1].isEmpty else { return nil }
        return String(decoding: carried[1], as: UTF8.self)
    }

    private var computedCheck: (UInt64, UInt32)?

    func checkData(_ bytes: ArraySlice<UInt8>) throws {
        computedCheck = (UInt64(bytes.count), bytes.withUnsafeBytes { CRC32C.checksum($0) })
    }

    func pace(seconds: Double) {
        guard !skipSleeps, seconds > 0 else { return }
        let span = Nanoseconds(Int64(min(seconds, 9e9) * 1e9))
        var ts = timespec(tv_sec: Int(span.seconds), tv_nsec: Int(span.subsecondNanoseconds))
        nanosleep(&ts, nil)
    }

    func takeStall() -> Bool { false }

    func shouldBlock(_ check: () -> Bool) -> Bool { expectBlock }

    /// The recorded result says which: EINTR, or what the call returned.
    func signalEndsWait(_ stillWaits: () -> Bool) -> Bool { current?.result == -Int64(EINTR) }

    func outsideSignals(_ due: () -> [OutsideSignal]) throws -> [OutsideSignal] {
        var out: [OutsideSignal] = []
        while let e = try peek(), case .signal(let tid, let signal, _) = e {
            out.append(OutsideSignal(tid: tid, signal: signal))
            consume()
        }
        return out
    }

    var currentThread: Int32 = 0

    func pickThread(_ choose: () throws -> Int32) throws -> Int32 {
        guard let e = try peek() else { throw ranOut("a thread switch") }
        if case .processStart = e { throw diverged("a thread switch where the recording has \(describe(e))") }
        return e.tid
    }

    /// Set when the recording parked the current syscall.
    private var expectBlock = false

    func blocked(_ entry: SyscallEntry) throws {
        guard expectBlock else {
            throw diverged("\(describe(entry)) waits here in replay; in the recording it did not")
        }
        expectBlock = false
        current = nil
        consume()
    }

    var eventCount: Int { index }

    func recordedPreemption() throws -> PreemptionPoint? {
        guard let e = try peek(), case .preempt(let tid, let rip, let hits, let registers) = e else { return nil }
        return PreemptionPoint(tid: tid, rip: rip, hits: hits, registers: registers)
    }

    func preempted(_ point: PreemptionPoint) throws {
        let what = "thread \(point.tid) stopped at rip 0x\(String(point.rip, radix: 16)) (hit \(point.hits))"
        guard let e = try peek() else { throw ranOut(what) }
        guard case .preempt(let tid, let rip, let hits, let registers) = e, tid == point.tid, rip == point.rip,
              hits == point.hits else {
            throw diverged("the replay preempted \(what); the recording has \(describe(e))")
        }
        guard registers == point.registers else {
            throw diverged("\(what) with registers that differ from the recording's (digest 0x\(String(point.registers, radix: 16)), recorded 0x\(String(registers, radix: 16)))")
        }
        consume()
    }

    func interruptGuest(at deadline: Double?) {}

    /// Output waits until the syscall's data check passed: a divergent
    /// replay must not print what the recording did not.
    private var pendingEcho: ([UInt8], Int32)?

    func echo(_ bytes: [UInt8], to fd: Int32) {
        pendingEcho = (bytes, fd)
    }

    /// Set while reverse execution replays a stretch again: the program's
    /// output was shown the first time.
    var mute = false

    private func emit(_ bytes: [UInt8], to fd: Int32) {
        if mute { return }
        var done = 0
        while done < bytes.count {
            let n = bytes[done...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n <= 0 { return }
            done += n
        }
    }
}
