import Glibc

/// sched_getattr and sched_setattr: the extensible form of the scheduling
/// calls (util-linux's chrt, systemd, runtimes that set SCHED_BATCH or
/// SCHED_IDLE). Policy, reset-on-fork and nice are the emulation's own, as
/// for sched_setscheduler and setpriority; the rest of struct sched_attr
/// (the fair class's slice in sched_runtime, the size quirks) is the host
/// kernel's answer for detrec's own thread, recorded.
enum SchedAttributes {
    static let sizeVer0 = 48, sizeVer1 = 56
    static let FLAG_RESET_ON_FORK: UInt64 = 0x01, FLAG_KEEP_POLICY: UInt64 = 0x08, FLAG_KEEP_PARAMS: UInt64 = 0x10
    static let FLAG_UTIL_CLAMP: UInt64 = 0x20 | 0x40
    /// SCHED_FLAG_ALL | SCHED_FLAG_SUGOV (kernel/sched/syscalls.c).
    static let knownFlags: UInt64 = 0x7f | 0x1000_0000
    static let SCHED_DEADLINE: Int32 = 6

    static func register(_ t: inout SyscallTable) {
        t.add(SYS.sched_getattr, get)
        t.add(SYS.sched_setattr, set)
    }

    static func get(_ c: SyscallCall) throws -> Int64 {
        let size = Int(c.int(2))
        guard c.arg(1) != 0, c.int(0) >= 0, size >= sizeVer0, size <= 4096, c.arg(3) == 0 else { throw Errno.inval }
        if ProcessControlSyscalls.hostProcess(c, 0) != nil {
            return try performPassthrough(c, [.value, .out(size), .value, .value])
        }
        let tid = try ProcessControlSyscalls.thread(c, 0)
        guard let owner = c.process.family.find(tid)?.0 else { throw Errno.srch }
        let policy = owner.control.policies[tid] ?? 0
        let nice = owner.nice
        try c.checkWritable(c.arg(1), count: size)
        let address = c.arg(1)
        return try c.host { effects throws(Errno) -> Int64 in
            // The host's layout for this size (how much it fills, the size
            // it reports, the slice), for a thread of the default policy.
            var out = [UInt8](repeating: 0, count: size)
            let r = out.withUnsafeMutableBytes { hostSyscall(SYS.sched_getattr, 0, Int(bitPattern: $0.baseAddress), size, 0) }
            guard r == 0 else { return r }
            out.replaceSubrange(4..<8, with: Bytes.u32(UInt32(bitPattern: policy & ~ProcessControl.SCHED_RESET_ON_FORK)))
            out.replaceSubrange(8..<16, with: Bytes.u64(policy & ProcessControl.SCHED_RESET_ON_FORK != 0 ? FLAG_RESET_ON_FORK : 0))
            out.replaceSubrange(16..<20, with: Bytes.i32(nice))
            out.replaceSubrange(20..<24, with: Bytes.u32(0))
            try effects.write(address, out)
            return 0
        }
    }

    static func set(_ c: SyscallCall) throws -> Int64 {
        guard c.arg(1) != 0, c.int(0) >= 0, c.arg(2) == 0 else { throw Errno.inval }
        let attr = try copyIn(c, c.arg(1))
        var policy = Int32(bitPattern: Bytes.u32(attr, at: 4))
        let flags = Bytes.u64(attr, at: 8)
        guard policy >= 0 else { throw Errno.inval }
        let tid = try ProcessControlSyscalls.thread(c, 0)
        guard let owner = c.process.family.find(tid)?.0 else { throw Errno.srch }
        let current = owner.control.policies[tid] ?? 0
        if flags & FLAG_KEEP_POLICY != 0 { policy = current & ~ProcessControl.SCHED_RESET_ON_FORK }
        guard [0, 1, 2, 3, 5, 6].contains(policy), flags & ~knownFlags == 0 else { throw Errno.inval }
        var nice = min(max(Int32(bitPattern: Bytes.u32(attr, at: 16)), -20), 19)
        let priority = Bytes.u32(attr, at: 20)
        if flags & FLAG_KEEP_PARAMS != 0 { nice = owner.nice }   // get_params: a fair thread's nice
        guard priority <= 99, (policy == 1 || policy == 2) == (priority != 0) else { throw Errno.inval }
        if policy == SCHED_DEADLINE, !validDeadline(attr) { throw Errno.inval }
        if flags & FLAG_UTIL_CLAMP != 0 {
            // As a kernel built without CONFIG_UCLAMP_TASK answers (the
            // host's sched_getattr reports no clamps either).
            c.process.report("sched_setattr's utilization clamps are not offered; returning EOPNOTSUPP", key: SYS.sched_setattr, rip: c.rip)
            throw Errno(EOPNOTSUPP)
        }
        if policy == 1 || policy == 2 || policy == SCHED_DEADLINE {
            c.process.report("real-time scheduling policy \(policy) is not offered: the recording's threads share one vCPU; returning EPERM", key: SYS.sched_setattr, rip: c.rip)
            throw Errno.perm
        }
        let resetOnFork = flags & FLAG_RESET_ON_FORK != 0 ? ProcessControl.SCHED_RESET_ON_FORK : 0
        if flags & FLAG_KEEP_PARAMS != 0 {
            // Policy and parameters stay; only reset-on-fork is stored.
            owner.control.policies[tid] = current & ~ProcessControl.SCHED_RESET_ON_FORK | resetOnFork
            return 0
        }
        // Only the fair policies take the nice value; leaving SCHED_IDLE
        // needs the right to run at the current one (__sched_setscheduler).
        let fair = policy == 0 || policy == 3, idle: Int32 = 5
        if fair, nice < owner.nice, !(try ProcessSyscalls.mayRaisePriority(c, to: nice)) { throw Errno.perm }
        if current & ~ProcessControl.SCHED_RESET_ON_FORK == idle, policy != idle,
           !(try ProcessSyscalls.mayRaisePriority(c, to: owner.nice)) { throw Errno.perm }
        owner.control.policies[tid] = policy | resetOnFork
        if fair { owner.nice = nice }
        return 0
    }

    /// sched_copy_attr: a size of 0 is the first version's; a larger
    /// struct is accepted when its unknown tail is zero; any other size is
    /// E2BIG with the kernel's size written back.
    static func copyIn(_ c: SyscallCall, _ address: UInt64) throws -> [UInt8] {
        var size = Int(try c.readValue(address, as: UInt32.self))
        if size == 0 { size = sizeVer0 }
        let tooBig = { () throws -> Errno in
            try c.writeValue(address, UInt32(sizeVer1))
            return Errno(E2BIG)
        }
        guard size >= sizeVer0, size <= 4096 else { throw try tooBig() }
        let bytes = try c.read(address, count: size)
        if size > sizeVer1, bytes[sizeVer1...].contains(where: { $0 != 0 }) { throw try tooBig() }
        let attr = Array(bytes.prefix(sizeVer1)) + [UInt8](repeating: 0, count: max(0, sizeVer1 - size))
        if Bytes.u64(attr, at: 8) & FLAG_UTIL_CLAMP != 0, size < sizeVer1 { throw Errno.inval }
        return attr
    }

    /// __checkparam_dl with Linux's default period bounds (100 µs to 2^22 µs).
    static func validDeadline(_ attr: [UInt8]) -> Bool {
        let runtime = Bytes.u64(attr, at: 24), deadline = Bytes.u64(attr, at: 32), period = Bytes.u64(attr, at: 40)
        guard deadline != 0, runtime >= 1 << 10, deadline & (1 << 63) == 0, period & (1 << 63) == 0 else { return false }
        guard period == 0 || period >= deadline, deadline >= runtime else { return false }
        let effective = period == 0 ? deadline : period
        return effective >= 100_000 && effective <= (1 << 22) * 1000
    }
}
