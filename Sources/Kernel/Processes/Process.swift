import Glibc
import KVMUser

/// The emulated Linux process: its memory, threads, descriptors and
/// signals, and the per-process state fork copies (`ProcessAttributes`,
/// whose fields read as the process's own: `process.uid`).
@dynamicMemberLookup
public final class Process {
    /// What fork copies as it is, in one value, so a new field cannot be
    /// left behind (`ProcessAttributes.swift`).
    public var attributes: ProcessAttributes

    public subscript<T>(dynamicMember key: WritableKeyPath<ProcessAttributes, T>) -> T {
        get { attributes[keyPath: key] }
        set { attributes[keyPath: key] = newValue }
    }

    /// The machine, memory and mappings: shared with a vfork or CLONE_VM
    /// child, replaced by execve (`MemoryContext`).
    public var mm: MemoryContext
    public var machine: UserMachine { mm.machine }
    public var memory: GuestMemory { mm.machine.memory }
    public var space: AddressSpace {
        get { mm.space }
        _modify { yield &mm.space }
        set { mm.space = newValue }
    }
    /// The descriptor table, shared with the processes clone(CLONE_FILES)
    /// made (`SharedFileTable`).
    public var fileTable = SharedFileTable()
    public var files: FileTable {
        get { fileTable.table }
        _modify { yield &fileTable.table }
        set { fileTable.table = newValue }
    }
    /// The working directory and umask, shared with the processes
    /// clone(CLONE_FS) made (`FileSystemContext`); exec keeps them.
    public var fs: FileSystemContext
    public var cwd: WorkingDirectory {
        get { fs.cwd }
        set { fs.cwd = newValue }
    }
    public var umask: UInt32 {
        get { fs.umask }
        set { fs.umask = newValue }
    }
    /// The process id the guest sees (the recorder's own, from the trace on
    /// replay); its one thread's id equals it.
    public var pid: Int32 = 0
    /// The threads, in creation order; `current` is the one on the vCPU.
    public var threads: [GuestThread]
    public var current: GuestThread
    /// ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF: next expiry (host
    /// CLOCK_MONOTONIC seconds) and interval. Recording only.
    public var timers: [(deadline: Double, interval: Double)?] = [nil, nil, nil]
    static let timerSignal: [Int32] = [14, 26, 27]   // SIGALRM, SIGVTALRM, SIGPROF

    /// POSIX timers (timer_create), by creation order. Their existence,
    /// notification and overrun counts are guest state, the same on replay;
    /// their deadlines are host time, kept while recording only.
    public var posixTimers: [PosixTimer] = []
    /// The id the next timer_create hands out (Linux counts up per process).
    public var nextPosixTimerID: Int32 = 0

    /// The timer expiries due now, as `HostWorld.outsideSignals` carries them:
    /// an interval timer's signal number, or a POSIX timer's expiry encoded
    /// by `PosixTimer.encode` (one entry per expiry, so overruns replay).
    /// Rearms periodic timers.
    public func dueTimerSignals() -> [Int32] {
        let now = Scheduler.monotonicNow()
        var due: [Int32] = []
        for i in timers.indices {
            guard let t = timers[i], t.deadline <= now else { continue }
            due.append(Process.timerSignal[i])
            if t.interval > 0 {
                var next = t.deadline + t.interval
                if next <= now { next = now + t.interval }   // overruns collapse into one signal
                timers[i] = (next, t.interval)
            } else {
                timers[i] = nil
            }
        }
        for i in posixTimers.indices {
            guard posixTimers[i].signals, let deadline = posixTimers[i].deadline, deadline <= now else { continue }
            let interval = posixTimers[i].interval
            var expiries = 1
            if interval > 0 {
                let missed = Int(min(Double(PosixTimer.maxExpiriesPerCheck - 1), ((now - deadline) / interval).rounded(.down)))
                expiries += missed
                posixTimers[i].deadline = deadline + Double(expiries) * interval
                if posixTimers[i].deadline! <= now { posixTimers[i].deadline = now + interval }
            } else {
                posixTimers[i].deadline = nil
            }
            due += Array(repeating: posixTimers[i].encoded, count: expiries)
        }
        return due
    }

    /// When the next timer expires (host CLOCK_MONOTONIC seconds), if one is
    /// armed: how long the vCPU may run before a signal is due. POSIX timers
    /// that signal count; SIGEV_NONE ones never interrupt anything.
    public func earliestTimerDeadline() -> Double? {
        (timers.compactMap { $0?.deadline } + posixTimers.compactMap { $0.signals ? $0.deadline : nil }).min()
    }

    /// The earliest deadline of a timer whose signal is in `set` (recording only).
    public func earliestTimerDeadline(signals set: UInt64) -> Double? {
        var deadlines: [Double] = []
        for i in timers.indices {
            if let t = timers[i], set & SignalState.bit(Process.timerSignal[i]) != 0 { deadlines.append(t.deadline) }
        }
        for t in posixTimers where t.signals && set & SignalState.bit(t.signal) != 0 {
            if let d = t.deadline { deadlines.append(d) }
        }
        return deadlines.min()
    }

    /// Threads parked in futex waits on this process's memory, in the
    /// order they started waiting (the memory's: CLONE_VM shares it).
    public var futexOrder: [GuestThread] {
        get { mm.futexOrder }
        _modify { yield &mm.futexOrder }
        set { mm.futexOrder = newValue }
    }
    /// Every process of the recording (fork makes more), sharing one id space.
    public var family: ProcessFamily!
    public weak var parent: Process?
    /// Its parent ended and no subreaper took it: init, outside the
    /// recording, is its parent now (getppid 1), and reaps it when it
    /// ends (`RecordingEnd.swift`). Without it, a process with no parent
    /// is the first one, whose parent is detrec's.
    public var adoptedByInit = false
    /// prctl(PR_SET_PDEATHSIG): the signal it gets when its parent ends.
    /// Not inherited: fork leaves the child's at 0.
    public var parentDeathSignal: Int32 = 0
    /// Set once it has exec'd: its parent may no longer move it to another
    /// process group (setpgid's EACCES).
    public var hasExeced = false
    /// The signal its parent gets when it ends (SIGCHLD unless clone said
    /// otherwise; 0 for none).
    public var exitSignal: Int32 = 17
    /// The thread that vforked this process, parked until this process
    /// execs or ends (`releaseVforkParent`).
    public weak var vforkParent: GuestThread?
    /// Its ended threads' and reaped children's usage (`ResourceUsage`).
    var usage = ProcessUsage()
    /// Set when the process has ended and waits to be reaped: its wait status.
    public var zombieStatus: Int32?
    /// The signal that stopped the process, while it is stopped (JobControl).
    public var stoppedBy: Int32?
    /// A stop or continue its parent's wait4 has not yet reported.
    public var jobReport: JobControl.Report?
    public var signals = SignalState()
    /// Syscalls already reported as unimplemented, reported once each.
    public var reportedUnimplemented: Set<UInt64> = []
    /// Patched rdtsc/rdtscp/cpuid instructions (PatchedInstructions).
    public var patchedSites: [UInt64: PatchedInstruction] {
        get { mm.patchedSites }
        _modify { yield &mm.patchedSites }
        set { mm.patchedSites = newValue }
    }
    /// What prctl set (`ProcessControl`).
    public var control = ProcessControl()
    /// Tracees (not its children) that ended, for its wait4 to report
    /// as their tracer (`Ptrace.traceeEnded`): thread id and wait status.
    public var traceeEnds: [(tid: Int32, status: Int32)] = []
    /// A fault that a syscall handler raised (a bad rt_sigreturn frame):
    /// it ends the process once the syscall returns.
    public var pendingFault: FatalSignal?
    /// When it was made, on the host's CLOCK_BOOTTIME in nanoseconds
    /// (/proc/<pid>/stat's starttime; read while recording only, as every
    /// generated /proc file). Not an attribute: a fork child starts anew.
    public let startedAt: Int64 = Process.bootNanoseconds()

    static func bootNanoseconds() -> Int64 {
        var t = timespec()
        guard clock_gettime(CLOCK_BOOTTIME, &t) == 0 else { return 0 }
        return Int64(t.tv_sec) &* 1_000_000_000 &+ Int64(t.tv_nsec)
    }

    /// Linux's layout without address randomization.
    public static let stackTop: UInt64 = Layout.systemBase - 0x1000
    public static let stackSize: UInt64 = 8 << 20
    public static let mmapBase: UInt64 = stackTop - (128 << 20)
    public static let pieBase: UInt64 = 0x5555_5555_4000

    public init(machine: UserMachine, executablePath: String,
                cwd: WorkingDirectory = WorkingDirectory(file: OpenFile(hostFD: nil, path: "/"), path: "/"),
                inherited: InheritedState = InheritedState()) {
        let thread = GuestThread(tid: 0)
        mm = MemoryContext(machine: machine, space: AddressSpace(mmapBase: Process.mmapBase), loaded: thread)
        attributes = ProcessAttributes(executablePath: executablePath, inherited: inherited)
        fs = FileSystemContext(cwd: cwd, umask: inherited.umask)
        current = thread
        threads = [thread]
        family = ProcessFamily(root: self)
        // RLIMIT_NOFILE as detrec got it (the trace header keeps it for replay).
        control.suidDumpable = inherited.suidDumpable
        if let nofile = inherited.openFiles {
            attributes.limits[7] = nofile
            files.limit = Int32(clamping: nofile.soft)
        }
    }

    /// A process on memory it shares (vfork, CLONE_VM) or has just copied
    /// (fork), with `thread` as its one thread, not yet on the vCPU; `fs`
    /// is its parent's (CLONE_FS) or a copy of it.
    init(sharing mm: MemoryContext, thread: GuestThread, from parent: Process, fs: FileSystemContext) {
        self.mm = mm
        attributes = parent.attributes
        self.fs = fs
        current = thread
        threads = [thread]
        family = parent.family
    }

    /// Maps fresh pages and records the mapping (pages beyond a mapped
    /// file's end stay non-present: `BeyondFileEnd.swift`).
    public func map(_ m: Mapping) throws(Errno) {
        try mapPages(of: m, from: m.start, to: m.end)
        space.insert(m)
    }

    public func unmap(_ start: UInt64, _ end: UInt64) {
        SharedMemory.unmapped(mm, start, end)
        memory.unmap(start, pages: Int((end - start) / 4096))
        space.remove(start, end)
        // The pages are gone, and with them their patches and phases.
        patchedSites = patchedSites.filter { $0.key < start || $0.key >= end }
        space.codePages = space.codePages.filter { $0 < start || $0 >= end }
    }
}

/// Signal dispositions, the mask and the pending set, as the guest sees them.
public struct SignalState {
    /// The kernel's struct sigaction (handler, flags, restorer, mask): 32 bytes.
    public var actions: [Int32: [UInt8]] = [:]
    /// The mask of the thread on the vCPU (`GuestThread.signalMask` keeps
    /// the others').
    public var mask: UInt64 = 0
    /// Process-directed signals generated but not delivered; each thread
    /// has its own set too (`GuestThread.pending`).
    public var shared = PendingSignals()

    public func action(_ signal: Int32) -> SignalAction {
        SignalAction(actions[signal] ?? [UInt8](repeating: 0, count: 32))
    }

    public static func bit(_ signal: Int32) -> UInt64 { UInt64(1) << UInt64(signal - 1) }
    public var altStack: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0] // SS_DISABLE
}

/// The processes of one recording. Pids and tids come from one counter
/// after the first process's pid, so they are the same in record and replay.
public final class ProcessFamily {
    public var processes: [Process]
    private var created: Int32 = 0

    /// The files and memory objects MAP_SHARED mappings show, by what
    /// names them (`SharedMemory`).
    var sharedObjects: [SharedObject.Key: SharedObject] = [:]
    /// The guest processes' POSIX record locks (recording only).
    let recordLocks = RecordLocks()
    /// System V IPC objects (`IPCNamespace`), made on first use.
    var ipcState: IPCNamespace?
    /// The process group the recording started in (detrec's own).
    public let inheritedGroup: Int32
    /// The session the recording started in (detrec's own), whose
    /// controlling terminal is the host's.
    public let inheritedSession: Int32
    /// The terminal's foreground group as TIOCSPGRP set it among the
    /// recording's groups (nil: the host's, detrec's own group).
    public var terminalForeground: Int32?
    /// The controlling terminals of the sessions the recording made.
    var sessionTerminals = SessionTerminals()
    /// Charges CPU time to the thread on the vCPU (recording only).
    let accounting = UsageAccounting()
    /// How many open files had O_ASYNC set (`AsyncNotification` looks only then).
    var asyncCount = 0

    init(root: Process) {
        processes = [root]
        self.root = root
        inheritedGroup = root.processGroup
        inheritedSession = root.session
    }

    /// The first process, kept after it ends and is reaped (its parent is
    /// outside the recording): the ids count from its pid.
    public private(set) var root: Process?

    /// Whether the recording handed out `id` (a process or thread that may
    /// have ended since): such ids never name a host process.
    public func allocated(_ id: Int32) -> Bool {
        guard let base = root?.pid else { return false }
        return id == base || (id > base && id <= base &+ created)
    }

    public func allocateID() -> Int32 {
        created += 1
        return (root?.pid ?? 0) &+ created
    }

    /// Every thread of every live process, in creation order of the processes.
    public var threads: [GuestThread] { processes.filter { $0.zombieStatus == nil }.flatMap(\.threads) }

    public func find(_ tid: Int32) -> (Process, GuestThread)? {
        for p in processes where p.zombieStatus == nil {
            if let t = p.thread(tid) { return (p, t) }
        }
        return nil
    }

    public func owner(of thread: GuestThread) -> Process? {
        processes.first { p in p.threads.contains { $0 === thread } }
    }

    /// `Process.canRun` for a thread of any process of the recording.
    func canRun(_ thread: GuestThread) -> Bool { owner(of: thread)?.canRun(thread) ?? false }
}

extension Process {
    /// The signals pending for `thread` (the current one by default): its
    /// own and the process's.
    public func pendingSignals(of thread: GuestThread? = nil) -> UInt64 {
        signals.shared.set | (thread ?? current).pending.set
    }

    /// The pending signals that would end a wait `thread` is parked in:
    /// not blocked by it, and not discarded on arrival.
    public func interruptingSignals(of thread: GuestThread) -> UInt64 {
        let mask = signalMask(of: thread)
        // Most of the time nothing is pending: skip the per-signal look at dispositions.
        let unblocked = pendingSignals(of: thread) & (~mask | SignalDelivery.unblockable)
        return unblocked == 0 ? 0 : unblocked & SignalWait.deliverable(self, mask: mask)
    }

    /// Whether `thread` may take the vCPU: its process is not stopped, and
    /// it is not parked, or its wait is over, or a signal interrupts it.
    func canRun(_ thread: GuestThread) -> Bool {
        guard stoppedBy == nil else { return false }
        // A ptrace stop holds it until its tracer lets it go, or SIGKILL comes.
        if thread.trace?.stop != nil { return pendingSignals(of: thread) & SignalState.bit(9) != 0 }
        if thread.isRunnable { return true }
        guard let b = thread.blocked, b.result == nil, b.condition.interruptible, thread.signalWait == 0 else { return false }
        return interruptingSignals(of: thread) != 0
    }

    /// The signal mask of `thread`, on the vCPU or not.
    public func signalMask(of thread: GuestThread) -> UInt64 {
        thread === current ? signals.mask : thread.signalMask
    }

    /// Says something once per `key` on stderr (an unsupported request, an
    /// unimplemented syscall), naming the guest RIP.
    public func report(_ message: String, key: UInt64, rip: UInt64) {
        guard !reportedUnimplemented.contains(key) else { return }
        reportedUnimplemented.insert(key)
        var line = "detrec: \(message) (guest rip 0x\(String(rip, radix: 16)))\n"
        line.withUTF8 { _ = Glibc.write(2, $0.baseAddress, $0.count) }
    }
}
