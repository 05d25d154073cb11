import Glibc

/// Process ids, limits, thread-area and scheduling calls (user and group
/// ids: `CredentialsSyscalls`); per-process state such as FS base lives in
/// the emulator.
enum ProcessSyscalls {
    static func register(_ t: inout SyscallTable) {
        t.add(SYS.getpid) { c in Int64(c.process.pid) }
        t.add(SYS.getppid) { c in
            if let parent = c.process.parent { return Int64(parent.pid) }
            if c.process.adoptedByInit { return 1 }
            return try c.host { _ in hostSyscall(SYS.getppid) }
        }
        t.addOutcome(SYS.fork, .emulated, note: "a new machine with a copy of the memory") { c in
            try newProcess(c, flags: 0, exitSignal: JobControl.SIGCHLD, stack: 0, parentTID: 0, childTID: 0, tls: 0)
        }
        t.addOutcome(SYS.vfork, .emulated, note: "the child borrows the memory; the parent waits for its exec or exit") { c in
            if let pid = vforkCompleted(c) { return pid }
            return try newProcess(c, flags: CLONE_VM | CLONE_VFORK, exitSignal: JobControl.SIGCHLD, stack: 0,
                                  parentTID: 0, childTID: 0, tls: 0)
        }
        t.addOutcome(SYS.wait4, .emulated, note: "children of the recording only", wait4)
        t.addOutcome(SYS.waitid, .emulated, note: "P_ALL, P_PID, P_PGID, P_PIDFD", waitid)
        ProcessGroups.register(&t)
        t.add(SYS.getpriority, getpriority)
        t.add(SYS.setpriority, setpriority)
        t.add(SYS.uname, passthrough(.out(390)))
        t.add(SYS.sysinfo, passthrough(.out(112)))
        t.add(SYS.getrandom, passthrough(.outFilled(sizeArg: 1), .value, .value))
        t.add(SYS.arch_prctl, archPrctl)
        // Restartable sequences: glibc runs without them when the kernel says ENOSYS.
        t.add(SYS.rseq, .refused("ENOSYS on purpose: glibc then runs without restartable sequences")) { _ in throw Errno.nosys }
        t.add(SYS.prlimit64) { c in try prlimit(c, pid: c.int(0), resource: c.int(1), new: c.arg(2), old: c.arg(3)) }
        // getrlimit/setrlimit copy the struct unconditionally: NULL is EFAULT
        // (prlimit64 alone treats NULL as "not wanted").
        t.add(SYS.getrlimit) { c in
            guard c.int(0) >= 0, c.int(0) < 16 else { throw Errno.inval }
            try c.checkWritable(c.arg(1), count: 16)
            return try prlimit(c, pid: 0, resource: c.int(0), new: 0, old: c.arg(1))
        }
        t.add(SYS.setrlimit) { c in
            guard c.int(0) >= 0, c.int(0) < 16 else { throw Errno.inval }
            _ = try c.read(c.arg(1), count: 16)
            return try prlimit(c, pid: 0, resource: c.int(0), new: c.arg(1), old: 0)
        }
    }

    static let ARCH_SET_GS: Int32 = 0x1001, ARCH_SET_FS: Int32 = 0x1002
    static let ARCH_GET_FS: Int32 = 0x1003, ARCH_GET_GS: Int32 = 0x1004

    static func archPrctl(_ c: SyscallCall) throws -> Int64 {
        let machine = c.process.machine
        switch c.int(0) {
        case ARCH_SET_FS:
            guard c.arg(1) < 0x0000_8000_0000_0000 else { throw Errno.perm }
            machine.fsBase = c.arg(1)
        case ARCH_SET_GS:
            guard c.arg(1) < 0x0000_8000_0000_0000 else { throw Errno.perm }
            machine.gsBase = c.arg(1)
        case ARCH_GET_FS:
            try c.writeValue(c.arg(1), machine.fsBase)
        case ARCH_GET_GS:
            try c.writeValue(c.arg(1), machine.gsBase)
        default:
            // CET, CPUID faulting, AMX permissions, LAM: not offered.
            throw Errno.inval
        }
        return 0
    }

    static func prlimit(_ c: SyscallCall, pid: Int32, resource: Int32, new: UInt64, old: UInt64) throws -> Int64 {
        guard resource >= 0, resource < 16 else { throw Errno.inval }
        // Another process of the recording has its own limits; the ones it
        // has not set are still detrec's (pid 0 on the host).
        guard let target = try ProcessGroups.target(c, pid) else {
            return try performPassthrough(c.with(args: [UInt64(bitPattern: Int64(pid)), UInt64(resource), new, old, 0, 0]),
                                          [.value, .value, .inputOrNull(16), .outOrNull(16)])
        }
        var replacement: (soft: UInt64, hard: UInt64)?
        if new != 0 {
            let raw = try c.read(new, count: 16)
            let soft = Bytes.u64(raw, at: 0), hard = Bytes.u64(raw, at: 8)
            guard soft <= hard else { throw Errno.inval }
            replacement = (soft, hard)
        }
        if old != 0 {
            try c.checkWritable(old, count: 16)
            if let kept = target.limits[resource] {
                try c.write(old, Bytes.u64(kept.soft) + Bytes.u64(kept.hard))
            } else {
                let r = try performPassthrough(c.with(args: [0, UInt64(resource), 0, old, 0, 0]),
                                               [.value, .value, .value, .out(16)])
                guard r >= 0 else { return r }
            }
        }
        if let replacement {
            target.limits[resource] = replacement
            if resource == 7 { target.files.limit = Int32(clamping: replacement.soft) }   // RLIMIT_NOFILE
        }
        return 0
    }
}

extension SyscallCall {
    /// The same call with other argument values (for calls that delegate).
    func with(args: [UInt64]) -> SyscallCall {
        SyscallCall(number: number == SYS.prlimit64 ? number : SYS.prlimit64, args: args, rip: rip, process: process, world: world)
    }
}

/// getpriority and setpriority: the nice value of a process of the
/// recording is its own (`ProcessAttributes.nice`), so a program that
/// renices itself leaves detrec alone. PRIO_USER names the host user's
/// processes, which are the host's business.
extension ProcessSyscalls {
    static let PRIO_PROCESS: Int32 = 0, PRIO_PGRP: Int32 = 1, PRIO_USER: Int32 = 2

    /// The processes `which`/`who` name; nil when the host must answer.
    static func priorityTargets(_ c: SyscallCall) throws(Errno) -> [Process]? {
        let who = c.int(1)
        switch c.int(0) {
        case PRIO_PROCESS:
            return try ProcessGroups.target(c, who).map { $0.zombieStatus == nil ? [$0] : [] }
        case PRIO_PGRP:
            let members = ProcessGroups.members(c.process.family, who == 0 ? c.process.processGroup : who)
            return members.isEmpty && who != 0 ? nil : members
        case PRIO_USER:
            return nil
        default:
            throw .inval
        }
    }

    /// The raw syscall's answer: 20 - nice of the highest-priority target.
    static func getpriority(_ c: SyscallCall) throws -> Int64 {
        guard let targets = try priorityTargets(c) else { return try performPassthrough(c, [.value, .value]) }
        guard let nice = targets.map(\.nice).min() else { throw Errno.srch }
        return Int64(20 - nice)
    }

    static func setpriority(_ c: SyscallCall) throws -> Int64 {
        guard let targets = try priorityTargets(c) else { return try performPassthrough(c, [.value, .value, .value]) }
        guard !targets.isEmpty else { throw Errno.srch }
        let nice = min(max(c.int(2), -20), 19)
        if targets.contains(where: { nice < $0.nice }), !(try mayRaisePriority(c, to: nice)) { throw Errno.acces }
        for p in targets { p.nice = nice }
        return 0
    }

    /// can_nice(): lowering a nice value needs CAP_SYS_NICE or room under
    /// RLIMIT_NICE (the guest's own limit, else the host's, recorded).
    static func mayRaisePriority(_ c: SyscallCall, to nice: Int32) throws -> Bool {
        if hasCapability(c, Credentials.CAP_SYS_NICE) { return true }
        let limit = c.process.limits[13]?.soft
        return try c.host { _ in
            var rl = rlimit()
            let soft = limit ?? (getrlimit(__rlimit_resource_t(13), &rl) == 0 ? UInt64(rl.rlim_cur) : 0)
            return 20 - Int64(nice) <= Int64(clamping: soft) ? 1 : 0
        } == 1
    }

    /// capable(): whether the calling thread's emulated credentials hold
    /// `bit` in their effective set. The credentials are the guest's own
    /// (set*id, capset and exec change them as Linux does), not detrec's
    /// host thread's, and the same in replay.
    static func hasCapability(_ c: SyscallCall, _ bit: Int) -> Bool {
        c.process.current.credentials.capable(bit)
    }
}
