import Glibc

/// What prctl keeps about a process and its threads, as Linux keeps it:
/// emulated alike in record and replay (none of it comes from the host).
public struct ProcessControl {
    /// Thread names (comm) set by PR_SET_NAME, by tid; a thread without
    /// one is named after the program, as exec names it.
    public var names: [Int32: [UInt8]] = [:]
    /// PR_SET_PDEATHSIG: the signal this process gets when its parent ends.
    public var parentDeathSignal: Int32 = 0
    /// SUID_DUMP_USER (1) until PR_SET_DUMPABLE; exec sets it again.
    public var dumpable: Int32 = 1
    public var noNewPrivileges = false
    /// fs.suid_dumpable as the recording started (the header keeps it):
    /// what a change of credentials leaves `dumpable` at.
    public var suidDumpable: Int32 = 0
    public var childSubreaper = false
    public var transparentHugePagesDisabled = false
    /// PR_SET_TIMERSLACK, in nanoseconds (Linux's default 50 µs).
    public var timerSlack: UInt64 = ProcessControl.defaultTimerSlack
    public static let defaultTimerSlack: UInt64 = 50_000
    /// Scheduling policies set by sched_setscheduler, by tid (SCHED_OTHER
    /// when absent), with SCHED_RESET_ON_FORK.
    public var policies: [Int32: Int32] = [:]
    /// membarrier registrations of the process (its mm's).
    public var membarrierRegistrations: Int32 = 0
    /// personality(2): PER_LINUX and the flags detrec honours.
    public var persona: UInt32 = 0

    public init() {}

    /// A thread made by clone takes its creator's name.
    public mutating func threadCreated(_ tid: Int32, by creator: Int32) {
        if let name = names[creator] { names[tid] = name }
        if let policy = policies[creator] { policies[tid] = policy & ProcessControl.SCHED_RESET_ON_FORK != 0 ? 0 : policy }
    }
    static let SCHED_RESET_ON_FORK: Int32 = 0x4000_0000

    /// The child of fork: the calling thread's name and the inherited
    /// settings; no parent-death signal and not a subreaper (Linux's copy_process).
    public func forked(by creator: Int32, child tid: Int32) -> ProcessControl {
        var c = self
        c.names = names[creator].map { [tid: $0] } ?? [:]
        c.policies = policies[creator].map { [tid: $0 & ProcessControl.SCHED_RESET_ON_FORK != 0 ? 0 : $0] } ?? [:]
        c.membarrierRegistrations = 0
        c.parentDeathSignal = 0
        c.childSubreaper = false
        return c
    }

    /// execve: the thread is named after the new program, the process is
    /// dumpable again (ExecSyscalls: unless its ids differ).
    public mutating func executed() {
        names = [:]
        membarrierRegistrations = 0
        dumpable = 1
    }
}

extension Process {
    /// Thread `tid`'s name (comm, at most 15 bytes), as PR_GET_NAME and
    /// /proc/<pid>/task/<tid>/comm give it: PR_SET_NAME's or a comm
    /// write's, else the name exec gave (the last part of the path it was
    /// executed by).
    public func threadName(_ tid: Int32) -> [UInt8] {
        if let name = control.names[tid] { return name }
        let program = self.commandName.isEmpty ? String(self.executablePath.split(separator: "/").last ?? "") : self.commandName
        return Array(Array(program.utf8).prefix(15))
    }
}

/// prctl, capget, capset, getcpu, sched_getaffinity and sched_setaffinity,
/// and pkey_alloc/pkey_free: the calls runtimes make at start-up to learn
/// about and set up the process, answered as Linux would on a machine with
/// one CPU (the recorded program runs on one vCPU) and without memory
/// protection keys (detrec hides PKU in CPUID).
enum ProcessControlSyscalls {
    static func register(_ t: inout SyscallTable) {
        t.add(SYS.prctl, prctl)
        t.add(SYS.getcpu) { c in
            // CPU 0 of node 0; the third argument is unused since 2.6.24.
            if c.arg(0) != 0 { try c.writeValue(c.arg(0), UInt32(0)) }
            if c.arg(1) != 0 { try c.writeValue(c.arg(1), UInt32(0)) }
            return 0
        }
        t.add(SYS.sched_getaffinity, getaffinity)
        t.add(SYS.sched_setaffinity, setaffinity)
        t.add(SYS.pkey_alloc) { c in
            guard c.arg(0) == 0, c.arg(1) & ~3 == 0 else { throw Errno.inval }
            // Without PKU only key 0 exists, and it is taken (mm_pkey_alloc).
            throw Errno(ENOSPC)
        }
        t.add(SYS.pkey_free) { _ in throw Errno.inval }
        t.add(SYS.membarrier, membarrier)
        t.add(SYS.personality, personality)
        t.add(SYS.sched_getscheduler) { c in
            if let host = hostProcess(c, 0) { return try c.host { _ in hostSyscall(SYS.sched_getscheduler, Int(host)) } }
            let tid = try thread(c, 0)
            return Int64(c.process.control.policies[tid] ?? 0)
        }
        t.add(SYS.sched_setscheduler) { c in
            let tid = try thread(c, 0)
            let policy = c.int(1)
            guard policy >= 0 else { throw Errno.inval }
            let priority: Int32 = try c.readValue(c.arg(2))
            try setPolicy(c, tid: tid, policy: policy, priority: priority)
            return 0
        }
        t.add(SYS.sched_getparam) { c in
            guard c.arg(1) != 0 else { throw Errno.inval }
            if hostProcess(c, 0) != nil { return try performPassthrough(c, [.value, .out(4)]) }
            _ = try thread(c, 0)
            try c.writeValue(c.arg(1), Int32(0))
            return 0
        }
        t.add(SYS.sched_setparam) { c in
            let priority: Int32 = try c.readValue(c.arg(1))
            let tid = try thread(c, 0)
            let policy = c.process.control.policies[tid] ?? 0
            try setPolicy(c, tid: tid, policy: policy, priority: priority)
            return 0
        }
        t.add(SYS.sched_get_priority_max) { c in
            switch c.int(0) { case 1, 2: return 99; case 0, 3, 5, 6: return 0; default: throw Errno.inval }
        }
        t.add(SYS.sched_get_priority_min) { c in
            switch c.int(0) { case 1, 2: return 1; case 0, 3, 5, 6: return 0; default: throw Errno.inval }
        }
        t.add(SYS.sched_rr_get_interval) { c in
            _ = try thread(c, 0)
            // The host's time slice for a SCHED_OTHER thread.
            return try performPassthrough(SyscallCall(number: c.number, args: [0] + c.args.dropFirst(), rip: c.rip,
                                                      process: c.process, world: c.world), [.value, .out(16)])
        }
    }

    /// The thread a scheduling call names: the caller for 0, or a thread of
    /// the recording (others are ESRCH, a negative id EINVAL).
    static func thread(_ c: SyscallCall, _ i: Int) throws(Errno) -> Int32 {
        let pid = c.int(i)
        guard pid >= 0 else { throw .inval }
        if pid == 0 { return c.process.current.tid }
        guard c.process.family.find(pid) != nil else { throw .srch }
        return pid
    }

    /// A pid the recording never handed out that is not one of detrec's own
    /// threads: a process outside the recording (its parent, which getppid
    /// names), whose policy the host tells, as Linux would.
    static func hostProcess(_ c: SyscallCall, _ i: Int) -> Int32? {
        let pid = c.int(i), family: ProcessFamily = c.process.family
        guard pid > 0, family.find(pid) == nil, !family.allocated(pid), !GuestPath.detrecThreads().contains(pid) else { return nil }
        return pid
    }

    /// The thread an affinity call names: find_process_by_pid finds no
    /// negative pid (ESRCH, where the scheduling calls say EINVAL).
    static func affinityThread(_ c: SyscallCall, _ i: Int) throws(Errno) -> Int32 {
        guard c.int(i) >= 0 else { throw .srch }
        return try thread(c, i)
    }

    /// SCHED_OTHER, SCHED_BATCH and SCHED_IDLE (priority 0) are kept; the
    /// real-time policies are refused as for an unprivileged process
    /// (EPERM, reported): every thread of a recording shares one vCPU
    /// under detrec's scheduler, which could not honour them.
    static func setPolicy(_ c: SyscallCall, tid: Int32, policy: Int32, priority: Int32) throws(Errno) {
        let base = policy & ~ProcessControl.SCHED_RESET_ON_FORK
        switch base {
        case 0, 3, 5:
            guard priority == 0 else { throw .inval }
        case 1, 2:
            guard (1...99).contains(priority) else { throw .inval }
            c.process.report("real-time scheduling policy \(base) is not offered: the recording's threads share one vCPU; returning EPERM", key: SYS.sched_setscheduler, rip: c.rip)
            throw .perm
        default:
            throw .inval
        }
        // The policy lives with the thread's process.
        guard let owner = c.process.family.find(tid)?.0 else { throw .srch }
        owner.control.policies[tid] = policy
    }

    static let MEMBARRIER_CMD_QUERY: Int32 = 0, MEMBARRIER_CMD_GET_REGISTRATIONS: Int32 = 512
    /// Every command up to GET_REGISTRATIONS.
    static let membarrierCommands: Int32 = 0x3ff

    /// membarrier: one vCPU runs one thread at a time, switching only at
    /// exits to detrec (serializing), so every barrier holds already; what
    /// remains is Linux's bookkeeping: registration before a private
    /// expedited barrier (EPERM otherwise), flags EINVAL.
    static func membarrier(_ c: SyscallCall) throws -> Int64 {
        let cmd = c.int(0), flags = c.int(1)
        let p = c.process
        guard flags == 0 || (cmd == 128 && flags == 1) else { throw Errno.inval }
        switch cmd {
        case MEMBARRIER_CMD_QUERY: return Int64(membarrierCommands)
        case MEMBARRIER_CMD_GET_REGISTRATIONS: return Int64(p.control.membarrierRegistrations)
        case 1, 2: return 0                                   // GLOBAL, GLOBAL_EXPEDITED
        case 4, 16, 64, 256:                                  // REGISTER_*
            p.control.membarrierRegistrations |= cmd
            return 0
        case 8, 32, 128:                                      // PRIVATE_EXPEDITED{,_SYNC_CORE,_RSEQ}
            guard p.control.membarrierRegistrations & (cmd * 2) != 0 else { throw Errno.perm }
            return 0
        default:
            throw Errno.inval
        }
    }

    static let ADDR_NO_RANDOMIZE: UInt32 = 0x0040000

    /// personality: the query (0xffffffff) and PER_LINUX, with
    /// ADDR_NO_RANDOMIZE (detrec's layout is never randomized). Others
    /// would change how mappings, uname or timeouts behave, which detrec
    /// does not emulate: EINVAL, reported.
    static func personality(_ c: SyscallCall) throws -> Int64 {
        let wanted = UInt32(truncatingIfNeeded: c.arg(0))
        let p = c.process
        let old = Int64(p.control.persona)
        guard wanted != 0xffff_ffff else { return old }
        guard wanted & ~ADDR_NO_RANDOMIZE == 0 else {
            p.report("personality 0x\(String(wanted, radix: 16)) is not supported (only PER_LINUX and ADDR_NO_RANDOMIZE); returning EINVAL", key: SYS.personality, rip: c.rip)
            throw Errno.inval
        }
        p.control.persona = wanted
        return old
    }

    // prctl options (include/uapi/linux/prctl.h).
    static let PR_SET_PDEATHSIG: Int32 = 1, PR_GET_PDEATHSIG: Int32 = 2
    static let PR_GET_DUMPABLE: Int32 = 3, PR_SET_DUMPABLE: Int32 = 4
    static let PR_GET_KEEPCAPS: Int32 = 7, PR_SET_KEEPCAPS: Int32 = 8
    static let PR_GET_TIMING: Int32 = 13, PR_SET_TIMING: Int32 = 14
    static let PR_SET_NAME: Int32 = 15, PR_GET_NAME: Int32 = 16
    static let PR_GET_SECCOMP: Int32 = 21, PR_SET_SECCOMP: Int32 = 22
    static let PR_CAPBSET_READ: Int32 = 23, PR_CAPBSET_DROP: Int32 = 24
    static let PR_GET_TSC: Int32 = 25, PR_SET_TSC: Int32 = 26
    static let PR_GET_SECUREBITS: Int32 = 27, PR_SET_SECUREBITS: Int32 = 28
    static let PR_SET_TIMERSLACK: Int32 = 29, PR_GET_TIMERSLACK: Int32 = 30
    static let PR_MCE_KILL_GET: Int32 = 34
    static let PR_SET_CHILD_SUBREAPER: Int32 = 36, PR_GET_CHILD_SUBREAPER: Int32 = 37
    static let PR_SET_NO_NEW_PRIVS: Int32 = 38, PR_GET_NO_NEW_PRIVS: Int32 = 39
    static let PR_GET_TID_ADDRESS: Int32 = 40
    static let PR_SET_THP_DISABLE: Int32 = 41, PR_GET_THP_DISABLE: Int32 = 42
    static let PR_CAP_AMBIENT: Int32 = 47
    static let PR_GET_SPECULATION_CTRL: Int32 = 52
    static let PR_GET_MDWE: Int32 = 66
    static let PR_SET_PTRACER: Int32 = 0x5961_6d61
    static let PR_SET_VMA: Int32 = 0x5356_4d41, PR_GET_AUXV: Int32 = 0x4155_5856
    /// Options that do not exist on x86-64 (unaligned access, FP emulation
    /// and exceptions, endianness, FP mode, SVE, SME, tagged addresses):
    /// EINVAL there too.
    static let notOnX86: Set<Int32> = [5, 6, 9, 10, 11, 12, 19, 20, 45, 46, 50, 51, 63, 64, 55, 56]
    /// CAP_LAST_CAP of the kernels detrec records on.
    static let lastCapability: UInt64 = 40

    static func prctl(_ c: SyscallCall) throws -> Int64 {
        let p = c.process
        let option = c.int(0)
        func raw(_ i: Int) -> Int { Int(bitPattern: UInt(c.arg(i))) }
        func unusedZero(from i: Int) throws(Errno) {
            for k in i...4 where c.arg(k) != 0 { throw .inval }
        }
        switch option {
        case PR_SET_PDEATHSIG:
            guard c.arg(1) <= 64 else { throw Errno.inval }
            p.control.parentDeathSignal = Int32(c.arg(1))
        case PR_GET_PDEATHSIG:
            try c.writeValue(c.arg(1), p.control.parentDeathSignal)
        case PR_GET_DUMPABLE:
            return Int64(p.control.dumpable)
        case PR_SET_DUMPABLE:
            guard c.arg(1) <= 1 else { throw Errno.inval }
            p.control.dumpable = Int32(c.arg(1))
        case PR_GET_KEEPCAPS, PR_SET_KEEPCAPS, PR_CAPBSET_READ, PR_CAPBSET_DROP, PR_GET_SECUREBITS, PR_SET_SECUREBITS, PR_CAP_AMBIENT:
            return try CredentialsSyscalls.prctl(c, option) ?? 0
        case PR_GET_TIMING:
            return 0    // PR_TIMING_STATISTICAL
        case PR_SET_TIMING:
            guard c.arg(1) == 0 else { throw Errno.inval }
        case PR_SET_NAME:
            let bytes = try c.cStringPrefix(1, limit: 15)
            p.control.names[p.current.tid] = bytes
        case PR_GET_NAME:
            let name = p.threadName(p.current.tid)
            try c.write(c.arg(1), name + [UInt8](repeating: 0, count: max(0, 16 - name.count)))
        case PR_GET_SECCOMP:
            return SeccompSyscalls.getMode(c)
        case PR_SET_SECCOMP:
            return try SeccompSyscalls.setMode(c)
        case PR_GET_TSC:
            try c.writeValue(c.arg(1), Int32(1))   // PR_TSC_ENABLE: detrec serves rdtsc
        case PR_SET_TIMERSLACK:
            p.control.timerSlack = c.arg(1) == 0 ? ProcessControl.defaultTimerSlack : c.arg(1)
        case PR_GET_TIMERSLACK:
            return Int64(clamping: p.control.timerSlack)
        case PR_MCE_KILL_GET:
            try unusedZero(from: 1)
            return 2    // PR_MCE_KILL_DEFAULT
        case PR_SET_CHILD_SUBREAPER:
            p.control.childSubreaper = c.arg(1) != 0
        case PR_GET_CHILD_SUBREAPER:
            try c.writeValue(c.arg(1), Int32(p.control.childSubreaper ? 1 : 0))
        case PR_SET_NO_NEW_PRIVS:
            // Also true of every exec detrec performs: it never honours set-id bits.
            guard c.arg(1) == 1 else { throw Errno.inval }
            try unusedZero(from: 2)
            p.control.noNewPrivileges = true
        case PR_GET_NO_NEW_PRIVS:
            try unusedZero(from: 1)
            return p.control.noNewPrivileges ? 1 : 0
        case PR_GET_TID_ADDRESS:
            try c.writeValue(c.arg(1), p.current.clearChildTID)
        case PR_SET_THP_DISABLE:
            try unusedZero(from: 2)
            p.control.transparentHugePagesDisabled = c.arg(1) != 0
        case PR_GET_THP_DISABLE:
            try unusedZero(from: 1)
            return p.control.transparentHugePagesDisabled ? 1 : 0
        case PR_GET_SPECULATION_CTRL:
            try unusedZero(from: 2)
            return try c.host { _ in hostSyscall(SYS.prctl, Int(PR_GET_SPECULATION_CTRL), raw(1)) }
        case PR_GET_MDWE:
            try unusedZero(from: 1)
            return 0    // no memory-deny-write-execute
        case PR_GET_AUXV:
            try unusedZero(from: 3)
            // Linux's saved_auxv: AT_VECTOR_SIZE (2 × 28 words on 6.x x86-64), zero-padded.
            let size = 448
            var saved = Array(p.auxv.prefix(size))
            saved += [UInt8](repeating: 0, count: size - saved.count)
            let take = min(size, Int(clamping: c.arg(2)))
            if take > 0 { try c.write(c.arg(1), Array(saved.prefix(take))) }
            return Int64(size)
        case PR_SET_PTRACER:
            // Yama's (LeakSanitizer's tracer asks for it): the emulated
            // kernel has no Yama, so ptrace attach knows no ptracer
            // exceptions and the option does not exist.
            throw Errno.inval
        case PR_SET_VMA:
            // As a kernel without CONFIG_ANON_VMA_NAME: mapping names are not kept.
            p.report("prctl(PR_SET_VMA) names no mappings here; returning EINVAL as a kernel without CONFIG_ANON_VMA_NAME", key: 0x2_0000_0000 | UInt64(UInt32(bitPattern: option)), rip: c.rip)
            throw Errno.inval
        case let o where notOnX86.contains(o):
            throw Errno.inval
        default:
            let reason: String
            switch option {
            case PR_SET_TSC: reason = "making rdtsc fault is not supported"
            default: reason = "this option is not supported"
            }
            p.report("prctl option \(option): \(reason); returning EINVAL", key: 0x2_0000_0000 | UInt64(UInt32(bitPattern: option)), rip: c.rip)
            throw Errno.inval
        }
        return 0
    }

    /// One CPU: the mask has bit 0 and is 8 bytes long (cpumask_size()).
    static func getaffinity(_ c: SyscallCall) throws -> Int64 {
        let length = c.arg(1)
        guard length > 0, length & 7 == 0 else { throw Errno.inval }
        _ = try affinityThread(c, 0)
        try c.write(c.arg(2), Bytes.u64(1))
        return 8
    }

    /// A mask must include CPU 0, the only one there is.
    static func setaffinity(_ c: SyscallCall) throws -> Int64 {
        let length = min(Int(clamping: c.arg(1)), 8)
        let bytes = try c.read(c.arg(2), count: length)
        _ = try affinityThread(c, 0)
        guard let first = bytes.first, first & 1 != 0 else { throw Errno.inval }
        return 0
    }

    /// A child process of `p` ended or `p` itself ended: its children go
    /// to the nearest live subreaper among its ancestors, or to init
    /// outside the recording (`RecordingEnd.swift`), and each that asked
    /// for it gets its parent-death signal.
    static func orphaned(by p: Process) {
        var reaper = p.parent
        while let r = reaper, !r.control.childSubreaper || r.zombieStatus != nil { reaper = r.parent }
        for child in p.family.processes where child.parent === p {
            child.parent = reaper
            child.adoptedByInit = reaper == nil
            let signal = child.control.parentDeathSignal
            if signal != 0, child.zombieStatus == nil {
                SignalDelivery.generate(child, signal: signal, info: SignalDelivery.siginfo(signal: signal, code: Signals.SI_USER))
            }
            // A zombie that changes parent: the subreaper hears of it
            // (reparent_leader's do_notify_parent); init reaps it.
            if let status = child.zombieStatus, reaper != nil {
                let (code, childStatus) = ProcessSyscalls.childEnd(status)
                JobControl.notifyParent(child, code: code, status: childStatus)
            }
        }
        p.family.processes.removeAll { $0.adoptedByInit && $0.zombieStatus != nil }
    }
}

extension SyscallCall {
    /// Up to `limit` bytes of a NUL-terminated string, cut there (as
    /// strncpy_from_user: EFAULT when a byte before the end is unreadable).
    func cStringPrefix(_ i: Int, limit: Int) throws(Errno) -> [UInt8] {
        var out: [UInt8] = []
        while out.count < limit {
            guard let byte = try? memory.read(args[i] &+ UInt64(out.count), count: 1).first else { throw .fault }
            if byte == 0 { break }
            out.append(byte)
        }
        return out
    }
}
