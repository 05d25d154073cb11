import Glibc
import KVMUser

/// Threads: clone with the flags pthread_create uses, clone3, thread ids,
/// the CHILD_CLEARTID word and the robust list. Thread ids are the pid plus
/// a creation index, the same in record and replay.
enum ThreadSyscalls {
    static func register(_ t: inout SyscallTable) {
        t.addOutcome(SYS.clone, .emulated, note: "threads, fork, vfork and CLONE_VM processes; CLONE_FS/FILES shared between processes; CLONE_PIDFD for processes; namespaces, CLONE_SIGHAND between processes and thread pidfds refused") { c in
            try clone(c, flags: c.arg(0), stack: c.arg(1), parentTID: c.arg(2), childTID: c.arg(3), tls: c.arg(4))
        }
        t.addOutcome(SYS.clone3, .emulated, note: "as clone; CLONE_CLEAR_SIGHAND; set_tid and CLONE_INTO_CGROUP refused", clone3)
        t.add(SYS.gettid) { c in Int64(c.process.current.tid) }
        t.add(SYS.set_tid_address) { c in
            c.process.current.clearChildTID = c.arg(0)
            return Int64(c.process.current.tid)
        }
        t.add(SYS.set_robust_list) { c in
            guard c.arg(1) == 24 else { throw Errno.inval }
            c.process.current.robustList = (c.arg(0), c.arg(1))
            return 0
        }
        t.add(SYS.get_robust_list) { c in
            let list = c.process.current.robustList
            try c.checkWritable(c.arg(1), count: 8)
            try c.checkWritable(c.arg(2), count: 8)
            try c.writeValue(c.arg(1), list.head)
            try c.writeValue(c.arg(2), list.length)
            return 0
        }
        t.addOutcome(SYS.sched_yield, .emulated) { _ in .yield }
        t.addOutcome(SYS.exit, .emulated, note: "the last thread's exit ends the process") { c in
            .exit(status: c.int(0) & 0xff, wholeProcess: false)
        }
        t.addOutcome(SYS.exit_group, .emulated) { c in .exit(status: c.int(0) & 0xff, wholeProcess: true) }
    }

    static let CLONE_VM: UInt64 = 0x100, CLONE_SIGHAND: UInt64 = 0x800, CLONE_THREAD: UInt64 = 0x10000
    static let CLONE_SETTLS: UInt64 = 0x80000
    static let CLONE_PARENT_SETTID: UInt64 = 0x100000, CLONE_CHILD_CLEARTID: UInt64 = 0x200000
    static let CLONE_CHILD_SETTID: UInt64 = 0x1000000

    /// struct clone_args as of Linux 5.7 (CLONE_ARGS_SIZE_VER2): 88 bytes.
    static func clone3(_ c: SyscallCall) throws -> SyscallOutcome {
        if let pid = ProcessSyscalls.vforkCompleted(c) { return pid }
        let size = c.arg(1)
        guard size >= 64 else { throw Errno.inval }
        guard size <= 4096 else { throw Errno(E2BIG) }
        let a = try c.read(c.arg(0), count: Int(size))
        // A larger struct from a newer libc: what this kernel does not know must be zero.
        if size > 88, a[88...].contains(where: { $0 != 0 }) { throw Errno(E2BIG) }
        func field(_ at: Int) -> UInt64 { at + 8 <= a.count ? Bytes.u64(a, at: at) : 0 }
        let flags = field(0), exitSignal = field(32), stack = field(40), stackSize = field(48)
        guard flags & ProcessSyscalls.CSIGNAL == 0, exitSignal <= 64 else { throw Errno.inval }
        if field(64) != 0 || field(72) != 0 {
            c.process.report("clone3 with set_tid (choosing the child's pid) is not supported; returning EPERM", key: 0x6_0000_0001, rip: c.rip)
            throw Errno.perm
        }
        if stack != 0 && stackSize == 0 || stack == 0 && stackSize != 0 { throw Errno.inval }
        return try clone(c, flags: flags | exitSignal, stack: stack == 0 ? 0 : stack &+ stackSize,
                         parentTID: field(24), childTID: field(16), tls: field(56), pidfd: field(8))
    }

    /// clone and clone3: a thread (CLONE_THREAD, with the flags
    /// pthread_create passes), or a new process (`ProcessSyscalls.newProcess`),
    /// with Linux's checks of which flags go together.
    /// `pidfd`: where CLONE_PIDFD stores the new pidfd (clone3's field; clone's parent_tid).
    static func clone(_ c: SyscallCall, flags rawFlags: UInt64, stack: UInt64, parentTID: UInt64, childTID: UInt64, tls: UInt64,
                      pidfd: UInt64? = nil) throws -> SyscallOutcome {
        if let pid = ProcessSyscalls.vforkCompleted(c) { return pid }
        let flags = rawFlags & ~ProcessSyscalls.CSIGNAL
        guard flags & CLONE_THREAD == 0 || flags & CLONE_SIGHAND != 0,
              flags & CLONE_SIGHAND == 0 || flags & CLONE_VM != 0,
              flags & CLONE_SIGHAND == 0 || flags & ProcessSyscalls.CLONE_CLEAR_SIGHAND == 0 else { throw Errno.inval }
        if flags & CLONE_THREAD == 0 {
            let pidfdAddress = pidfd ?? parentTID
            // They would share the one pointer (kernel_clone).
            if flags & ProcessSyscalls.CLONE_PIDFD != 0, flags & CLONE_PARENT_SETTID != 0, pidfdAddress == parentTID { throw Errno.inval }
            return try ProcessSyscalls.newProcess(c, flags: flags, exitSignal: Int32(rawFlags & ProcessSyscalls.CSIGNAL),
                                                  stack: stack, parentTID: parentTID, childTID: childTID, tls: tls, pidfd: pidfdAddress)
        }
        if flags & (ProcessSyscalls.CLONE_VFORK | ProcessSyscalls.CLONE_PIDFD | ProcessSyscalls.CLONE_PARENT
                    | ProcessSyscalls.CLONE_INTO_CGROUP) != 0 {
            c.process.report("clone of a thread with flags 0x\(String(flags, radix: 16)) (CLONE_VFORK, CLONE_PIDFD, CLONE_PARENT or CLONE_INTO_CGROUP) is not supported; returning EINVAL",
                             key: 0x6_0000_0002, rip: c.rip)
            throw Errno.inval
        }
        let p = c.process
        let child = GuestThread(tid: p.family.allocateID())
        p.control.threadCreated(child.tid, by: p.current.tid)
        var regs = p.machine.registers
        regs.rax = 0
        if stack != 0 { regs.rsp = stack }
        child.registers = regs
        child.fsBase = flags & CLONE_SETTLS != 0 ? tls : p.machine.fsBase
        child.gsBase = p.machine.gsBase
        child.extendedState = try p.machine.extendedState()
        child.signalMask = p.signals.mask
        child.seccomp = p.current.seccomp
        child.credentials = p.current.credentials
        child.memoryPolicy = p.current.memoryPolicy
        if flags & CLONE_CHILD_CLEARTID != 0 { child.clearChildTID = childTID }
        if flags & CLONE_PARENT_SETTID != 0 { try c.writeValue(parentTID, UInt32(bitPattern: child.tid)) }
        if flags & CLONE_CHILD_SETTID != 0 { try c.writeValue(childTID, UInt32(bitPattern: child.tid)) }
        p.threads.append(child)
        return .result(Int64(child.tid))
    }
}
