import KVMUser

/// Threads: clone with the flags pthread_create uses, clone3, thread ids,
/// the CHILD_CLEARTID word and the robust list. Thread ids are the pid plus
/// a creation index, the same in record and replay.
enum ThreadSyscalls {
    static func register(_ t: inout SyscallTable) {
        t.add(SYS.clone) { c in
            try clone(c, flags: c.arg(0), stack: c.arg(1), parentTID: c.arg(2), childTID: c.arg(3), tls: c.arg(4))
        }
        t.add(SYS.clone3, clone3)
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

    static let CLONE_VM: UInt64 = 0x100, CLONE_FS: UInt64 = 0x200, CLONE_FILES: UInt64 = 0x400
    static let CLONE_SIGHAND: UInt64 = 0x800, CLONE_THREAD: UInt64 = 0x10000, CLONE_SETTLS: UInt64 = 0x80000
    static let CLONE_PARENT_SETTID: UInt64 = 0x100000, CLONE_CHILD_CLEARTID: UInt64 = 0x200000
    static let CLONE_CHILD_SETTID: UInt64 = 0x1000000

    static func clone3(_ c: SyscallCall) throws -> Int64 {
        guard c.arg(1) >= 64, c.arg(1) <= 4096 else { throw Errno.inval }
        let a = try c.read(c.arg(0), count: 64)
        let stack = Bytes.u64(a, at: 40), size = Bytes.u64(a, at: 48)
        return try clone(c, flags: Bytes.u64(a, at: 0), stack: stack == 0 ? 0 : stack &+ size,
                         parentTID: Bytes.u64(a, at: 24), childTID: Bytes.u64(a, at: 16), tls: Bytes.u64(a, at: 56))
    }

    static func clone(_ c: SyscallCall, flags: UInt64, stack: UInt64, parentTID: UInt64, childTID: UInt64, tls: UInt64) throws -> Int64 {
        let thread = CLONE_VM | CLONE_SIGHAND | CLONE_THREAD
        if flags & (CLONE_VM | CLONE_THREAD) == 0 {
            return try ProcessSyscalls.fork(c, flags: flags, stack: stack, parentTID: parentTID, childTID: childTID, tls: tls)
        }
        guard flags & thread == thread else {
            c.process.report("clone with flags 0x\(String(flags, radix: 16)) (vfork or a partly shared process) is not supported yet; returning ENOSYS",
                             key: 0x6_0000_0000, rip: c.rip)
            throw Errno.nosys
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
        if flags & CLONE_CHILD_CLEARTID != 0 { child.clearChildTID = childTID }
        if flags & CLONE_PARENT_SETTID != 0 { try c.writeValue(parentTID, UInt32(bitPattern: child.tid)) }
        if flags & CLONE_CHILD_SETTID != 0 { try c.writeValue(childTID, UInt32(bitPattern: child.tid)) }
        p.threads.append(child)
        return Int64(child.tid)
    }
}
