import Glibc
import KVMUser

/// One syscall being handled: its decoded arguments and the process it
/// acts on. Decoding guest arguments has its home here: every handler reads
/// registers, strings and buffers through these checked accessors.
public struct SyscallCall {
    public let number: UInt64
    public let args: [UInt64]
    public let rip: UInt64
    public let process: Process
    let world: HostWorld
    /// This call parked, a signal ended its wait, and it runs again to
    /// fail with EINTR (or return what it had transferred): `park` says so.
    public var interrupted = false
    /// When this call first started, if it parked before.
    public var resumedStart: MonotonicInstant?

    public init(number: UInt64, args: [UInt64], rip: UInt64, process: Process, world: HostWorld) {
        self.number = number
        self.args = args
        self.rip = rip
        self.process = process
        self.world = world
    }

    public var memory: GuestMemory { process.memory }
    public var entry: SyscallEntry { SyscallEntry(number: number, args: args, rip: rip) }

    public func arg(_ i: Int) -> UInt64 { args[i] }

    /// An `int` argument: the kernel looks at the low 32 bits only.
    public func int(_ i: Int) -> Int32 { Int32(truncatingIfNeeded: args[i]) }

    /// A `long` / `off_t` argument.
    public func long(_ i: Int) -> Int64 { Int64(bitPattern: args[i]) }

    /// A size argument, refused (EINVAL) when it is negative as a signed value.
    public func size(_ i: Int) throws(Errno) -> Int {
        guard let n = Int(exactly: args[i]), n >= 0 else { throw .inval }
        return n
    }

    /// The byte count of a read or write (read, write, pread64, pwrite64)
    /// as vfs_read/vfs_write take it: EFAULT when the buffer would run past
    /// TASK_SIZE (access_ok), and otherwise the part of it that can be
    /// moved before the first page the guest may not access, so a buffer
    /// that ends in a hole gives a short count, and one that starts there EFAULT.
    public func transferSize(buffer: Int, size: Int, write: Bool) throws(Errno) -> Int {
        let address = args[buffer], count = args[size]
        guard count > 0 else { return 0 }
        let (end, overflow) = address.addingReportingOverflow(count)
        guard !overflow, end <= GuestMemory.userLimit else { throw .fault }
        let wanted = Int(min(count, UInt64(maxTransfer)))
        let extent = memory.accessibleExtent(address, count: wanted, write: write)
        guard extent > 0 else { throw .fault }
        return extent
    }

    /// The open file behind a descriptor argument.
    public func file(_ i: Int) throws(Errno) -> OpenFile {
        guard let f = process.files[int(i)] else { throw .badf }
        return f
    }

    /// A directory descriptor argument: nil for AT_FDCWD.
    public func directory(_ i: Int) throws(Errno) -> OpenFile? {
        let fd = int(i)
        if fd == -100 { return nil }
        guard let f = process.files[fd] else { throw .badf }
        return f
    }

    /// Longest path the kernel takes: PATH_MAX (4096) counts the NUL.
    public static let pathMax = 4095

    /// A NUL-terminated path (EFAULT on a bad pointer, ENAMETOOLONG past PATH_MAX).
    public func path(_ i: Int) throws(Errno) -> String {
        let bytes = try cString(i, limit: SyscallCall.pathMax)
        return String(decoding: bytes, as: UTF8.self)
    }

    public func cString(_ i: Int, limit: Int) throws(Errno) -> [UInt8] {
        do {
            return try memory.readCString(args[i], limit: limit)
        } catch {
            // A string that runs past the limit is ENAMETOOLONG if it is readable.
            if (try? memory.check(args[i], count: limit, write: false)) != nil { throw .nametoolong }
            throw .fault
        }
    }

    /// `count` bytes of guest memory at `address`.
    public func read(_ address: UInt64, count: Int) throws(Errno) -> [UInt8] {
        do { return try memory.read(address, count: count) } catch { throw .fault }
    }

    public func readValue<T: FixedWidthInteger>(_ address: UInt64, as type: T.Type = T.self) throws(Errno) -> T {
        do { return try memory.readValue(address, as: type) } catch { throw .fault }
    }

    /// Fails with EFAULT unless the guest may write the whole range.
    public func checkWritable(_ address: UInt64, count: Int) throws(Errno) {
        do { try memory.check(address, count: count, write: true) } catch { throw .fault }
    }

    /// Writes guest memory for a result the kernel computes itself (the same
    /// in record and replay, so it is not logged).
    public func write(_ address: UInt64, _ bytes: [UInt8]) throws(Errno) {
        do { try memory.write(address, bytes) } catch { throw .fault }
    }

    public func writeValue<T: FixedWidthInteger>(_ address: UInt64, _ value: T) throws(Errno) {
        do { try memory.writeValue(address, value) } catch { throw .fault }
    }

    /// Whether another guest thread (of any process) could take the vCPU
    /// while this one waits.
    public var othersCouldRun: Bool { process.family.threads.contains { $0 !== process.current } }

    /// Parks the thread on `condition` instead of blocking detrec in a host
    /// call, when other threads could run meanwhile and `satisfied` (asked
    /// only while recording) says the call would wait now; replay parks
    /// where the recording did. Nil: go on with the call. A call whose wait
    /// a signal ended gets its EINTR here.
    ///
    ///     if let parked = c.park(.host(wait), unless: wait.isReady) { return parked }
    public func park(_ condition: WaitCondition, unless satisfied: () -> Bool) -> SyscallOutcome? {
        if interrupted { return .result(Errno.intr.result) }
        guard othersCouldRun else { return nil }
        return world.shouldBlock({ !satisfied() }) ? .park(condition) : nil
    }

    /// Parks on a condition of guest state (no host check): wait4, or a
    /// transfer that must go on. EINTR instead when a signal ended the wait.
    public func parkUnlessInterrupted(_ condition: WaitCondition) -> SyscallOutcome {
        interrupted ? .result(Errno.intr.result) : .park(condition)
    }

    /// When a timeout of `span` that started with this call ends (the
    /// first attempt's start, for a call that parked before).
    public func deadline(after span: Nanoseconds) -> MonotonicInstant {
        (resumedStart ?? .now()) + span
    }

    /// Parks until `file` is ready for `events` (POLLIN 1, POLLOUT 4), when
    /// it is not now and other threads could run. Threads then make
    /// progress while one waits for a socket or pipe.
    /// (On replay descriptors have no host side: the trace decides.)
    public func waitUntilReady(_ file: OpenFile, events: Int16) -> SyscallOutcome? {
        let wait = HostReadiness(fd: file.hostFD ?? -1, events: events)
        // A non-blocking descriptor never waits: its call fails with EAGAIN.
        let wontWait = { file.hostFD.map { fcntl($0, F_GETFL) & O_NONBLOCK != 0 } ?? true || wait.isReady() }
        // Woken by a signal while the descriptor became ready too: Linux
        // looks at the pipe or socket first (pipe_read), so the call goes
        // on and the signal follows; EINTR only if it would still wait.
        if interrupted, !world.signalEndsWait({ !wontWait() }) { return nil }
        return park(.host(wait), unless: wontWait)
    }

    /// A syscall that makes one descriptor from a host call (socket,
    /// accept): `body` returns the new host descriptor or -errno; the guest
    /// gets the lowest free number, the same in record and replay.
    public func newDescriptor(name: String, closeOnExec: Bool,
                              _ body: (inout HostEffects) throws(Errno) -> Int64) throws -> Int64 {
        guard let fd = process.files.lowestFree() else { throw Errno.mfile }
        var opened: Int32 = -1
        let r = try host { effects throws(Errno) -> Int64 in
            let h = try body(&effects)
            guard h >= 0 else { return h }
            opened = Int32(h)
            return Int64(fd)
        }
        guard r >= 0 else { return r }
        process.files.install(OpenFile(hostFD: opened >= 0 ? opened : nil, path: name), at: fd, closeOnExec: closeOnExec)
        return Int64(fd)
    }

    /// A syscall that makes a pair of descriptors (pipe, socketpair) and
    /// writes their numbers to the guest at `arg(pairArg)`: `body` fills the
    /// two host descriptors and returns 0 or -errno.
    /// `fedByRecordingOnly`: a pipe or socketpair, whose readiness only
    /// recorded processes change (`OpenFile.fedByRecordingOnly`).
    public func newDescriptorPair(name: String, closeOnExec: Bool, at pairArg: Int, fedByRecordingOnly: Bool = false,
                                  _ body: (UnsafeMutablePointer<Int32>) -> Int64) throws -> Int64 {
        try checkWritable(arg(pairArg), count: 8)
        guard let first = process.files.lowestFree() else { throw Errno.mfile }
        var probe = process.files
        probe.install(OpenFile(hostFD: nil, path: ""), at: first, closeOnExec: false)
        guard let second = probe.lowestFree() else { throw Errno.mfile }
        var pair: [Int32] = [-1, -1]
        let r = try host { _ in pair.withUnsafeMutableBufferPointer { b in b.baseAddress.map(body) ?? Errno.fault.result } }
        guard r == 0 else { return r }
        for (fd, h) in zip([first, second], pair) {
            let file = OpenFile(hostFD: h >= 0 ? h : nil, path: name)
            if fedByRecordingOnly { file.markFedByRecordingOnly() }
            process.files.install(file, at: fd, closeOnExec: closeOnExec)
        }
        try write(arg(pairArg), Bytes.i32(first) + Bytes.i32(second))
        return 0
    }

    /// The host part of this syscall (see `HostWorld.host`). `body` must
    /// return exactly what the syscall returns to the guest: replay hands
    /// the recorded result back in its place.
    public func host(_ body: (inout HostEffects) throws(Errno) -> Int64) throws -> Int64 {
        try hostOutcome(body).result
    }

    /// `host`, for a handler that also needs to know what was filled from
    /// files (mmap: where the mapped file ends).
    /// With MAP_SHARED file mappings in the recording, the files are kept
    /// coherent around the host call (`SharedMemory`).
    /// The host part runs with the calling thread's credentials (`CredentialsOnHost`).
    public func hostOutcome(_ body: (inout HostEffects) throws(Errno) -> Int64) throws -> HostOutcome {
        let family: ProcessFamily = process.family
        let credentials = process.current.credentials
        let realIDs = CredentialsOnHost.usesRealIDs(number: number, args: args)
        guard !family.sharedObjects.isEmpty else {
            return try world.host(memory: memory) { (effects: inout HostEffects) throws(Errno) -> Int64 in
                try CredentialsOnHost.with(credentials, realIDs: realIDs) { () throws(Errno) -> Int64 in try body(&effects) }
            }
        }
        let mm = process.mm
        let (number, args, p) = (self.number, self.args, process)
        SharedMemory.push(mm, filesOnly: true)
        let views = mm.sharedViews.filter { $0.object.file != nil }.map { $0.start..<$0.end }
        let outcome = try world.host(memory: memory, sharedFiles: views) { (effects: inout HostEffects) throws(Errno) -> Int64 in
            SharedMemory.writeBack(family)
            let result = try CredentialsOnHost.with(credentials, realIDs: realIDs) { () throws(Errno) -> Int64 in try body(&effects) }
            SharedFileChanges.note(number: number, args: args, process: p)
            SharedMemory.refresh(mm, &effects)
            return result
        }
        // Since the push above only the host work wrote guest memory.
        for r in outcome.written {
            SharedMemory.push(mm, from: r.lowerBound & ~4095, to: r.upperBound, filesOnly: true, hostWrites: true)
        }
        return outcome
    }
}

/// Little-endian packing for the kernel structs detrec builds itself.
public enum Bytes {
    public static func u64(_ v: UInt64) -> [UInt8] { withUnsafeBytes(of: v.littleEndian, Array.init) }
    public static func u32(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v.littleEndian, Array.init) }
    public static func i32(_ v: Int32) -> [UInt8] { withUnsafeBytes(of: v.littleEndian, Array.init) }

    public static func u64(_ b: [UInt8], at i: Int) -> UInt64 {
        var v: UInt64 = 0
        for k in 0..<8 where i + k < b.count { v |= UInt64(b[i + k]) << (8 * UInt64(k)) }
        return v
    }
    public static func u32(_ b: [UInt8], at i: Int) -> UInt32 {
        var v: UInt32 = 0
        for k in 0..<4 where i + k < b.count { v |= UInt32(b[i + k]) << (8 * UInt32(k)) }
        return v
    }
}
