import Glibc

/// Identity, limits, thread-area and scheduling calls. Ids come from the
/// host while recording (the guest is detrec's process) and from the trace
/// on replay; per-process state such as FS base lives in the emulator.
enum ProcessSyscalls {
    static func register(_ t: inout SyscallTable) {
        t.add(SYS.getpid) { c in Int64(c.process.pid) }
        t.add(SYS.getppid) { c in
            if let parent = c.process.parent { return Int64(parent.pid) }
            return try c.host { _ in hostSyscall(SYS.getppid) }
        }
        t.add(SYS.fork) { c in try fork(c, flags: 17, stack: 0, parentTID: 0, childTID: 0, tls: 0) }
        t.addOutcome(SYS.wait4, .emulated, note: "children of the recording only", wait4)
        t.addOutcome(SYS.waitid, .emulated, note: "P_ALL, P_PID, P_PGID; no P_PIDFD", waitid)
        for n in [SYS.getuid, SYS.geteuid, SYS.getgid, SYS.getegid,
                  SYS.getpgrp, SYS.setsid] {
            t.add(n, passthrough())
        }
        t.add(SYS.getpgid, passthrough(.value))
        t.add(SYS.getsid, passthrough(.value))
        t.add(SYS.getresuid, passthrough(.out(4), .out(4), .out(4)))
        t.add(SYS.getresgid, passthrough(.out(4), .out(4), .out(4)))
        t.add(SYS.getgroups, passthrough(.value, .outFilled(sizeArg: 0)))
        t.add(SYS.uname, passthrough(.out(390)))
        t.add(SYS.sysinfo, passthrough(.out(112)))
        t.add(SYS.getrandom, passthrough(.outFilled(sizeArg: 1), .value, .value))
        t.add(SYS.arch_prctl, archPrctl)
        // Restartable sequences: glibc runs without them when the kernel says ENOSYS.
        t.add(SYS.rseq, .refused("ENOSYS on purpose: glibc then runs without restartable sequences")) { _ in throw Errno.nosys }
        t.add(SYS.prlimit64) { c in try prlimit(c, pid: c.int(0), resource: c.int(1), new: c.arg(2), old: c.arg(3)) }
        t.add(SYS.getrlimit) { c in try prlimit(c, pid: 0, resource: c.int(0), new: 0, old: c.arg(1)) }
        t.add(SYS.setrlimit) { c in try prlimit(c, pid: 0, resource: c.int(0), new: c.arg(1), old: 0) }
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

    /// Limits the guest reads come from the host; limits it sets are kept
    /// per guest (detrec's own limits must not change under it).
    static func prlimit(_ c: SyscallCall, pid: Int32, resource: Int32, new: UInt64, old: UInt64) throws -> Int64 {
        guard resource >= 0, resource < 16 else { throw Errno.inval }
        var replacement: (soft: UInt64, hard: UInt64)?
        if new != 0 {
            let raw = try c.read(new, count: 16)
            let soft = Bytes.u64(raw, at: 0), hard = Bytes.u64(raw, at: 8)
            guard soft <= hard else { throw Errno.inval }
            replacement = (soft, hard)
        }
        if old != 0 {
            try c.checkWritable(old, count: 16)
            if let kept = c.process.limits[resource] {
                try c.write(old, Bytes.u64(kept.soft) + Bytes.u64(kept.hard))
            } else {
                let r = try performPassthrough(c.with(args: [UInt64(bitPattern: Int64(pid)), UInt64(resource), 0, old, 0, 0]),
                                               [.value, .value, .value, .out(16)])
                guard r >= 0 else { return r }
            }
        }
        if let replacement {
            c.process.limits[resource] = replacement
            if resource == 7 { c.process.files.limit = Int32(clamping: replacement.soft) }   // RLIMIT_NOFILE
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
