import KVMUser

/// A write into guest memory made by the host part of a syscall: what a
/// recording logs and a replay puts back.
public enum GuestWrite: Equatable, Sendable {
    case bytes(address: UInt64, data: [UInt8])
    /// `length` bytes of a file's content from `offset` (file-backed mmap);
    /// the world stores the content once, by its hash.
    case file(address: UInt64, length: UInt64, content: FileContent, offset: UInt64)
    /// `length` bytes of a file from `offset` (file-backed mmap), from
    /// `range`, which covers them; the world stores the range once, by its hash.
    case range(address: UInt64, length: UInt64, range: FileRange, offset: UInt64)
}

/// A file's whole content and its SHA-256, as stored in a trace.
public struct FileContent: Equatable, Sendable {
    public var sha256: String
    public var bytes: [UInt8]
    /// The host file it was read from, when known (`HostFile.Identity`):
    /// a recording hashes the same unchanged file once.
    public var identity: HostFile.Identity?
    /// The file the host opened, as its /proc/self/fd link names it
    /// (symbolic links resolved): what /proc/PID/exe shows after an exec.
    public var openedPath: String?
    public init(sha256: String, bytes: [UInt8], identity: HostFile.Identity? = nil, openedPath: String? = nil) {
        self.sha256 = sha256
        self.bytes = bytes
        self.identity = identity
        self.openedPath = openedPath
    }

    /// The same content: where it was read from does not matter.
    public static func == (a: FileContent, b: FileContent) -> Bool { a.sha256 == b.sha256 && a.bytes == b.bytes }
}

/// How the process ended, as a shell would see it.
public enum Termination: Equatable, Sendable {
    case exited(Int32)
    case killed(signal: Int32)

    /// The status `detrec` itself exits with: the code, or 128+N.
    public var shellStatus: Int32 {
        switch self {
        case .exited(let code): return code & 0xff
        case .killed(let signal): return 128 + signal
        }
    }
}

/// A syscall as the guest made it: what replay checks against the recording.
public struct SyscallEntry: Equatable, Sendable {
    public var number: UInt64
    public var args: [UInt64]
    public var rip: UInt64
    public var tid: Int32
    public init(number: UInt64, args: [UInt64], rip: UInt64, tid: Int32 = 0) {
        self.number = number; self.args = args; self.rip = rip; self.tid = tid
    }
}

/// A signal that ends the process (a fault with no handler, or a signal
/// that reached detrec from outside while recording).
public struct FatalSignal: Equatable, Sendable {
    public var signal: Int32
    public var code: Int32
    public var rip: UInt64
    public var address: UInt64
    public init(signal: Int32, code: Int32, rip: UInt64, address: UInt64) {
        self.signal = signal; self.code = code; self.rip = rip; self.address = address
    }
}

/// Why a run stopped before the guest ended: a divergence from the
/// recording, the end of an interrupted trace, or a broken trace.
public struct RunStopped: Error, CustomStringConvertible {
    public var message: String
    /// The status detrec exits with.
    public var status: Int32
    public init(_ message: String, status: Int32 = 1) {
        self.message = message
        self.status = status
    }
    public var description: String { message }
}

/// The seam between the emulated kernel and the outside world, the one
/// place where recording and replaying differ (as swift-system keeps raw
/// syscalls behind one function). Recording performs host work and logs it;
/// replay takes every outcome from the trace and checks that the guest asks
/// for the same things in the same order.
public protocol HostWorld: AnyObject {
    var isReplaying: Bool { get }

    /// The 16 bytes of AT_RANDOM.
    func startupRandom() throws -> [UInt8]

    /// A syscall is about to be handled. Replay checks it against the next
    /// recorded event; it returns a termination when the recording ended
    /// here instead (the process was killed before making this call).
    func enterSyscall(_ entry: SyscallEntry) throws -> Termination?

    /// The host part of the current syscall: recording runs `body` and logs
    /// the guest memory it wrote; replay applies the recorded writes and
    /// returns the recorded result without running `body`. Either way the
    /// outcome says what was filled from files, which the handler may need
    /// (where a mapped file ends).
    /// `sharedFiles`: the process's MAP_SHARED file views, which the host
    /// work may write whatever their protection (a file changed under a
    /// read-only mapping, `SharedMemory.refresh`); replay writes them so.
    func host(memory: GuestMemory, sharedFiles: [Range<UInt64>], _ body: (inout HostEffects) throws(Errno) -> Int64) throws -> HostOutcome

    /// The syscall returns `result` to the guest. Replay checks it matches.
    func exitSyscall(_ entry: SyscallEntry, result: Int64) throws

    /// Which thread runs next. Recording asks the scheduler (`choose`) and
    /// the choice shows in the trace as the next event's thread; replay
    /// takes the thread of the next recorded event.
    func pickThread(_ choose: () throws -> Int32) throws -> Int32

    /// The thread whose events the world is logging or checking.
    var currentThread: Int32 { get set }

    /// Whether this syscall must park its thread until a host descriptor is
    /// ready: recording asks `check` (the host's poll), replay answers from
    /// the trace (a `blocked` event here).
    func shouldBlock(_ check: () -> Bool) -> Bool

    /// Whether a signal that ended this syscall's wait makes it fail with
    /// EINTR, or it completes because its descriptors became ready too:
    /// Linux looks at readiness first (pipe_read, do_poll), so data that is
    /// there is returned and the signal follows. Recording asks
    /// `stillWaits`; replay answers from the recorded result.
    func signalEndsWait(_ stillWaits: () -> Bool) -> Bool

    /// The current thread parks in this syscall (a futex wait): recording
    /// logs it, replay checks the recording parked here too.
    func blocked(_ entry: SyscallEntry) throws

    /// exit_group: the last event.
    func processExit(status: Int32) throws

    /// The process dies of a signal. Replay checks the recording died the same way.
    func fatalSignal(_ signal: FatalSignal) throws

    /// A child process dies of a signal; the run goes on. Logged like a
    /// death (a `fatalSignal` event that is not the last): it is where
    /// the schedule ran that process, and replay checks it died the same way.
    func processKilled(_ signal: FatalSignal) throws

    /// A host signal (SIGINT, SIGTERM, ...) that arrived while the guest ran,
    /// to be delivered to it. Replay never has one.
    func takeHostSignal() -> Int32?

    /// The current thread has run a long time without leaving the vCPU
    /// (recording's watchdog); replay never reports it.
    func takeStall() -> Bool

    /// Signals from outside the guest's own syscalls, made pending after a
    /// syscall: timer expiries, and the SIGCONT that resumed a recording
    /// whose processes had all stopped. Recording asks `due` (the host
    /// clock against the guest's timers, or the host stop) and logs them
    /// as `signal` events; replay takes them from the trace.
    /// Each is for the process of thread `tid` (a host signal, below zero,
    /// is the first process's whatever the tid).
    func outsideSignals(_ due: () -> [OutsideSignal]) throws -> [OutsideSignal]

    /// A file the emulated kernel itself loads from the host (execve's
    /// program, interpreter or script interpreter): recording reads it,
    /// stores it in the trace and names it in the current event; replay
    /// takes the next one named there. A failed read throws its Errno.
    func loadFile(_ read: () throws(Errno) -> FileContent) throws -> FileContent

    /// The whole content of the regular host file open on `fd`, for
    /// `loadFile`'s reader: recording reads it (once per unchanged file);
    /// replay reads no host file and never asks.
    func fileContent(of fd: Int32) throws(Errno) -> FileContent

    /// Random bytes the kernel itself needs (a new AT_RANDOM), carried in
    /// the current event.
    func randomBytes(_ count: Int) throws -> [UInt8]

    /// The file an exec opened, as /proc/PID/exe names it: recording asks
    /// `opened` and carries it in the current event, after the random
    /// bytes; replay takes it from there, nil for a trace recorded before
    /// events carried it (and when the host could not name the file).
    func executablePath(_ opened: () -> String?) throws -> String?

    /// The guest slept this long on purpose (nanosleep): replay waits as
    /// long too, unless asked to skip sleeps, so a replay keeps the
    /// program's pacing. Recording has already slept.
    func pace(seconds: Double)

    /// The data the guest handed to the current syscall (a write): recording
    /// logs its checksum, replay checks the replayed program wrote the same.
    func checkData(_ bytes: ArraySlice<UInt8>) throws

    /// What the guest wrote to an inherited stdout/stderr: replay re-emits it.
    func echo(_ bytes: [UInt8], to fd: Int32)

    // MARK: preemption between syscalls (docs/preemption.md)

    /// Events logged (recording) or consumed (replay) so far: a new slice
    /// of guest execution starts whenever it changes.
    var eventCount: Int { get }

    /// A slice starts for the current thread. Replay answers where the
    /// recording preempted it (when the next event is a preemption);
    /// recording answers nil.
    func recordedPreemption() throws -> PreemptionPoint?

    /// The current thread was stopped at `point`: recording logs it,
    /// replay checks the recording stopped it at the same point.
    func preempted(_ point: PreemptionPoint) throws

    /// Recording: interrupt the guest (`takeStall` then answers true) if it
    /// still runs at `deadline`, host CLOCK_MONOTONIC seconds; nil leaves
    /// only the liveness watchdog. Replay ignores it.
    func interruptGuest(at deadline: Double?)
}

extension HostWorld {
    /// A host call with no shared file views in the way.
    public func host(memory: GuestMemory, _ body: (inout HostEffects) throws(Errno) -> Int64) throws -> HostOutcome {
        try host(memory: memory, sharedFiles: [], body)
    }

    /// Replay's worlds: the trace holds every file, and `loadFile` never
    /// runs its reader.
    public func fileContent(of fd: Int32) throws(Errno) -> FileContent { throw .perm }
}

/// A signal from outside the guest's syscalls (`HostWorld.outsideSignals`),
/// for the process that thread `tid` belongs to. `signal` is encoded as
/// in the trace's `signal` event (above 64: a POSIX timer's expiry; below
/// zero: a host signal for the first process).
public struct OutsideSignal: Equatable, Sendable {
    public var tid: Int32
    public var signal: Int32
    public init(tid: Int32, signal: Int32) { self.tid = tid; self.signal = signal }
}

/// Where a thread was preempted between two syscalls: the `hits`-th time
/// it reached `rip` since its previous event, with these registers.
public struct PreemptionPoint: Equatable, Sendable {
    public var tid: Int32
    public var rip: UInt64
    public var hits: UInt64
    /// FNV-1a of the general registers, RIP and RFLAGS: replay's check.
    public var registers: UInt64
    public init(tid: Int32, rip: UInt64, hits: UInt64, registers: UInt64) {
        self.tid = tid; self.rip = rip; self.hits = hits; self.registers = registers
    }
}

/// What the host part of a syscall came to, the same in record and replay:
/// its result, and the guest ranges it filled from files (recording knows
/// what it wrote, replay what the trace says was written).
public struct HostOutcome: Equatable, Sendable {
    /// A guest range filled with a file's content.
    public struct FileFill: Equatable, Sendable {
        public var address: UInt64
        public var length: UInt64
        /// Whose bytes, from where: the file's SHA-256 and the offset of
        /// the first byte filled in.
        public var sha256: String
        public var offset: UInt64
        /// The whole file (shared, not copied) when it was stored whole
        /// (`FileRange.wholeFile`): where its code lies. Otherwise empty.
        public var content: [UInt8]
        public init(address: UInt64, length: UInt64, sha256: String = "", offset: UInt64 = 0, content: [UInt8] = []) {
            self.address = address; self.length = length; self.sha256 = sha256; self.offset = offset; self.content = content
        }
    }

    public var result: Int64
    public var fileFills: [FileFill]
    /// Bytes the host work handed the kernel outside guest memory
    /// (`HostEffects.carry`), in order: what a sendfile moved to an
    /// inherited stdout, which replay must print again.
    public var carried: [[UInt8]]
    /// The guest ranges the host work wrote (bytes and file fills), in
    /// record and replay alike: what can have changed in a shared view.
    public var written: [Range<UInt64>]

    public init(result: Int64, fileFills: [FileFill] = [], carried: [[UInt8]] = [], written: [Range<UInt64>] = []) {
        self.result = result
        self.fileFills = fileFills
        self.carried = carried
        self.written = written
    }

    /// The range `[address, address + count)`, clamped at the top of the
    /// address space (guest addresses are untrusted).
    public static func range(_ address: UInt64, _ count: UInt64) -> Range<UInt64> {
        let (end, overflow) = address.addingReportingOverflow(count)
        return address..<(overflow ? UInt64.max : end)
    }

    /// The outcome of a recording's host work: `writes` are what it wrote.
    public init(result: Int64, writes: [GuestWrite]) {
        self.init(result: result, fileFills: writes.compactMap { w in
            switch w {
            case .file(let address, let length, let content, let offset):
                return FileFill(address: address, length: length, sha256: content.sha256, offset: offset, content: content.bytes)
            case .range(let address, let length, let range, let offset):
                return FileFill(address: address, length: length, sha256: range.sha256, offset: offset, content: range.wholeFile)
            case .bytes: return nil
            }
        }, carried: writes.compactMap { w in
            guard case .bytes(0, let data) = w else { return nil }
            return data
        }, written: writes.compactMap { w in
            switch w {
            case .bytes(0, _): return nil
            case .bytes(let address, let data): return HostOutcome.range(address, UInt64(data.count))
            case .file(let address, let length, _, _), .range(let address, let length, _, _):
                return length > 0 ? HostOutcome.range(address, length) : nil
            }
        })
    }

    /// How many bytes of a file were filled in at `address`: 0 when none
    /// were (a mapping that starts at or past the file's end).
    public func filled(at address: UInt64) -> UInt64 {
        fileFills.first { $0.address == address }?.length ?? 0
    }

    /// The fill at `address`, if one was made there.
    public func fill(at address: UInt64) -> FileFill? {
        fileFills.first { $0.address == address }
    }
}

/// What the host part of a syscall does to guest memory while recording:
/// every write goes through here, so that it is both made and logged.
public struct HostEffects {
    public let memory: GuestMemory
    public private(set) var writes: [GuestWrite] = []
    /// The bytes of a host file for a file-backed mapping, from the file
    /// descriptor, a file offset and a length: a range covering those of
    /// them the file has, or nil when it ends at or before the offset (the
    /// recording world reads, caches and stores it: `FileRanges`).
    let fileRange: (Int32, UInt64, UInt64) throws(Errno) -> FileRange?

    public init(memory: GuestMemory, fileRange: @escaping (Int32, UInt64, UInt64) throws(Errno) -> FileRange?) {
        self.memory = memory
        self.fileRange = fileRange
    }

    /// Writes a syscall's output into a guest buffer with the guest's rights.
    public mutating func write(_ address: UInt64, _ bytes: [UInt8]) throws(Errno) {
        guard !bytes.isEmpty else { return }
        do { try memory.write(address, bytes) } catch { throw .fault }
        writes.append(.bytes(address: address, data: bytes))
    }

    public mutating func write(_ address: UInt64, _ bytes: ArraySlice<UInt8>) throws(Errno) {
        try write(address, Array(bytes))
    }

    /// Logs bytes for the kernel that guest memory does not hold (at
    /// address 0, as execve's random bytes: docs/trace-format.md), which
    /// replay hands back in `HostOutcome.carried` instead of writing them.
    public mutating func carry(_ bytes: [UInt8]) {
        guard !bytes.isEmpty else { return }
        writes.append(.bytes(address: 0, data: bytes))
    }

    /// Writes guest memory that the program reaches with a debugger's
    /// rights (/proc/self/mem, `ProcMemory`): any mapped guest page,
    /// whatever its protection, and nothing else.
    public mutating func writeForced(_ address: UInt64, _ bytes: [UInt8]) throws(Errno) {
        guard !bytes.isEmpty else { return }
        do { try memory.write(address, bytes, access: .kernel) } catch { throw .fault }
        writes.append(.bytes(address: address, data: bytes))
    }

    /// Fills a new file-backed mapping from a host file (ignoring the
    /// page protection: the mapping may be read-only to the guest).
    /// Only the file's data is written: the holes of a sparse file read as
    /// the fresh pages' zeros.
    public mutating func fill(_ address: UInt64, fromHostFD fd: Int32, offset: UInt64, length: UInt64) throws(Errno) {
        guard length > 0, let range = try fileRange(fd, offset, length), offset >= range.base, offset < range.end else { return }
        let n = min(length, range.end - offset)
        do { try range.fill(memory, at: address, offset: offset, length: n) } catch { throw .fault }
        writes.append(.range(address: address, length: n, range: range, offset: offset))
    }
}
