import Glibc
import Kernel
import KVMUser
import Trace

/// Recording: every host interaction is performed for real and logged to
/// the trace, with the guest memory it wrote.
final class RecordingWorld: HostWorld {
    let writer: TraceWriter
    var currentThread: Int32
    var isReplaying: Bool { false }
    private var writes: [GuestWrite] = []
    private var storedHashes: Set<String> = []
    private var files = FileContentCache()
    private var ranges = FileRangeCache()
    private var lastFlush = RecordingWorld.now()

    /// The syscall descriptions: calls that can wait by their nature flush
    /// the trace before their host part, so a recording killed while the
    /// guest waits loses nothing; calls that produce output flush after.
    private let table = SyscallTable.linux

    init(writer: TraceWriter) {
        self.writer = writer
        currentThread = Glibc.getpid()
    }

    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC_COARSE, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    private(set) var eventCount = 0

    private func append(_ event: Event) throws {
        do { try writer.append(event) } catch { throw RunStopped("cannot write the trace: \(error)") }
        eventCount += 1
    }

    private func flush() throws {
        do { try writer.flush() } catch { throw RunStopped("cannot write the trace: \(error)") }
        lastFlush = RecordingWorld.now()
    }

    func startupRandom() throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 16)
        let n = bytes.withUnsafeMutableBytes { hostSyscall(SYS.getrandom, Int(bitPattern: $0.baseAddress), 16) }
        guard n == 16 else { throw RunStopped("getrandom failed on the host") }
        try append(.processStart(tid: currentThread, atRandom: bytes))
        return bytes
    }

    private var current: SyscallEntry?
    private var hostCalled = false

    func enterSyscall(_ entry: SyscallEntry) throws -> Termination? {
        writes = []
        pendingCheck = nil
        current = entry
        hostCalled = false
        return nil
    }

    func host(memory: GuestMemory, sharedFiles: [Range<UInt64>], _ body: (inout HostEffects) throws(Errno) -> Int64) throws -> HostOutcome {
        // One host interaction per syscall: replay hands back one result.
        if hostCalled { throw RunStopped("internal error: \(SyscallNames.name(current?.number ?? 0)) made two host calls; its recording could not replay") }
        hostCalled = true
        if let n = current?.number, table.waitsByNature(SyscallNumber.dispatched(n)) { try flush() }
        var effects = HostEffects(memory: memory, fileRange: { [unowned self] fd, offset, length throws(Errno) in
            try self.ranges.range(of: fd, offset: offset, length: length)
        })
        let result: Int64
        do { result = try body(&effects) } catch { result = error.result }
        writes = effects.writes
        return HostOutcome(result: result, writes: writes)
    }

    func exitSyscall(_ entry: SyscallEntry, result: Int64) throws {
        var logged: [MemoryWrite] = []
        for w in writes {
            switch w {
            case .bytes(let address, let data):
                logged.append(.bytes(address: address, data: data))
            case .file(let address, let length, let content, let offset):
                if !storedHashes.contains(content.sha256) {
                    // Hashed once already, when it was read (`FileContentCache`).
                    do { try writer.storeFile(content.bytes, sha256: content.sha256) } catch {
                        throw RunStopped("cannot store a mapped file: \(error)")
                    }
                    storedHashes.insert(content.sha256)
                }
                logged.append(.stored(address: address, length: length, sha256: content.sha256, offset: offset))
            case .range(let address, let length, let range, let offset):
                if !storedHashes.contains(range.sha256) {
                    // Encoded and hashed once already, when it was read
                    // (`FileRangeCache`), which keeps no encoding: one from
                    // there whose mapping was not logged is encoded again.
                    do {
                        let bytes = range.stored.isEmpty ? try FileRangeCache.encode(range) : range.stored
                        guard range.stored.isEmpty ? SHA256.hex(bytes) == range.sha256 : true else {
                            throw RunStopped("internal error: a mapped file's range encodes differently the second time")
                        }
                        try writer.storeRange(bytes, sha256: range.sha256)
                    } catch let stop as RunStopped {
                        throw stop
                    } catch {
                        throw RunStopped("cannot store a mapped file: \(error)")
                    }
                    storedHashes.insert(range.sha256)
                }
                logged.append(.storedRange(address: address, length: length, sha256: range.sha256, offset: offset))
            }
        }
        writes = []
        try append(.syscall(SyscallRecord(tid: entry.tid, ticks: 0, rip: entry.rip, number: entry.number,
                                          args: entry.args, result: result, writes: logged)))
        if let (length, crc) = pendingCheck {
            pendingCheck = nil
            try append(.dataCheck(tid: entry.tid, length: length, crc32c: crc))
        }
        // What the user has seen the program print is in the trace at once,
        // so a recorder killed right after still replays it.
        if table.producesOutput(SyscallNumber.dispatched(entry.number)) || RecordingWorld.now() - lastFlush > 0.5 { try flush() }
    }

    func processExit(status: Int32) throws {
        try append(.exit(tid: currentThread, status: status))
        try finish()
    }

    func fatalSignal(_ f: FatalSignal) throws {
        try processKilled(f)
        try finish()
    }

    func processKilled(_ f: FatalSignal) throws {
        try append(.fatalSignal(tid: currentThread, signal: f.signal, code: f.code, rip: f.rip, address: f.address))
    }

    func finish() throws {
        do { try writer.finish() } catch { throw RunStopped("cannot finish the trace: \(error)") }
    }

    func takeHostSignal() -> Int32? { HostSignals.take() }

    func takeStall() -> Bool { Watchdog.takeStall() }

    func recordedPreemption() throws -> PreemptionPoint? { nil }

    func preempted(_ point: PreemptionPoint) throws {
        try append(.preempt(tid: point.tid, rip: point.rip, hits: point.hits, registers: point.registers))
    }

    func interruptGuest(at deadline: Double?) { Watchdog.interrupt(at: deadline) }

    func shouldBlock(_ check: () -> Bool) -> Bool { check() }

    func signalEndsWait(_ stillWaits: () -> Bool) -> Bool { stillWaits() }

    func outsideSignals(_ due: () -> [OutsideSignal]) throws -> [OutsideSignal] {
        let signals = due()
        // Above 64: a POSIX timer's expiry (docs/trace-format.md), si_code
        // SI_TIMER; below zero: a host signal for the first process. The
        // tid names the process the signal is for.
        for s in signals {
            try append(.signal(tid: s.tid, signal: s.signal, code: s.signal > 64 ? -2 : Signals.SI_KERNEL))
        }
        return signals
    }

    func pickThread(_ choose: () throws -> Int32) throws -> Int32 { try choose() }

    func blocked(_ entry: SyscallEntry) throws {
        try append(.blocked(tid: entry.tid, number: entry.number, rip: entry.rip))
        try flush()
    }

    func echo(_ bytes: [UInt8], to fd: Int32) {}

    private var pendingCheck: (UInt64, UInt32)?

    func checkData(_ bytes: ArraySlice<UInt8>) throws {
        pendingCheck = (UInt64(bytes.count), bytes.withUnsafeBytes { CRC32C.checksum($0) })
    }

    func pace(seconds: Double) {}

    // Files and random bytes for the kernel ride on the current syscall
    // event as writes at address 0 (see docs/trace-format.md, execve).
    func loadFile(_ read: () throws(Errno) -> FileContent) throws -> FileContent {
        let raw = try read()
        let content = FileContent(sha256: raw.sha256.isEmpty ? SHA256.hex(raw.bytes) : raw.sha256, bytes: raw.bytes)
        writes.append(.file(address: 0, length: 0, content: content, offset: 0))
        return content
    }

    func randomBytes(_ count: Int) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        let n = bytes.withUnsafeMutableBytes { hostSyscall(SYS.getrandom, Int(bitPattern: $0.baseAddress), count) }
        guard n == count else { throw RunStopped("getrandom failed on the host") }
        writes.append(.bytes(address: 0, data: bytes))
        return bytes
    }

    func executablePath(_ opened: () -> String?) throws -> String? {
        guard let path = opened(), !path.isEmpty else { return nil }
        writes.append(.bytes(address: 0, data: Array(path.utf8)))
        return path
    }

    /// A whole host file, read and hashed once per identity (`FileContentCache`).
    func fileContent(of fd: Int32) throws(Errno) -> FileContent { try files.content(of: fd) }
}
