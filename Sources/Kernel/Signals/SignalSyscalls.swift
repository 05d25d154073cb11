/// Signal dispositions, masks, the alternate stack, rt_sigreturn and
/// rt_sigpending. Sending is `SignalSending`, delivery `SignalDelivery`.
enum SignalSyscalls {
    static func register(_ t: inout SyscallTable) {
        t.add(SYS.rt_sigaction, sigaction)
        t.add(SYS.rt_sigprocmask, sigprocmask)
        t.add(SYS.sigaltstack, sigaltstack)
        t.add(SYS.rt_sigreturn) { c in
            do { return try SignalDelivery.sigreturn(c.process) } catch let e as SignalFrameUnreadable {
                c.process.pendingFault = FatalSignal(signal: Signals.SIGSEGV, code: Signals.SI_KERNEL, rip: e.rip, address: 0)
                return 0
            }
        }
        // Linux reports the pending signals that are blocked (do_sigpending).
        t.add(SYS.rt_sigpending) { c in
            guard c.arg(1) == 8 else { throw Errno.inval }
            try c.writeValue(c.arg(0), c.process.pendingSignals() & c.process.signals.mask)
            return 0
        }
    }

    static let SIGKILL: Int32 = 9, SIGSTOP: Int32 = 19

    static func sigaction(_ c: SyscallCall) throws -> Int64 {
        let signal = c.int(0), act = c.arg(1), oldact = c.arg(2)
        guard c.arg(3) == 8 else { throw Errno.inval }
        guard signal >= 1, signal <= 64 else { throw Errno.inval }
        var new: [UInt8]?
        if act != 0 {
            guard signal != SIGKILL, signal != SIGSTOP else { throw Errno.inval }
            new = try c.read(act, count: 32)
        }
        if oldact != 0 {
            try c.write(oldact, c.process.signals.actions[signal] ?? [UInt8](repeating: 0, count: 32))
        }
        if let new {
            // A handler's mask never blocks SIGKILL and SIGSTOP: setupFrame drops them.
            c.process.signals.actions[signal] = new
        }
        return 0
    }

    static func sigprocmask(_ c: SyscallCall) throws -> Int64 {
        let how = c.int(0), set = c.arg(1), oldset = c.arg(2)
        guard c.arg(3) == 8 else { throw Errno.inval }
        let old = c.process.signals.mask
        if set != 0 {
            let value: UInt64 = try c.readValue(set)
            switch how {
            case 0: c.process.signals.mask |= value
            case 1: c.process.signals.mask &= ~value
            case 2: c.process.signals.mask = value
            default: throw Errno.inval
            }
            c.process.signals.mask &= ~(UInt64(1) << UInt64(SIGKILL - 1) | UInt64(1) << UInt64(SIGSTOP - 1))
        }
        if oldset != 0 { try c.writeValue(oldset, old) }
        return 0
    }

    static func sigaltstack(_ c: SyscallCall) throws -> Int64 {
        let ss = c.arg(0), old = c.arg(1)
        var new: [UInt8]?
        if ss != 0 {
            let raw = try c.read(ss, count: 24)
            let flags = Bytes.u32(raw, at: 8)
            guard flags & ~UInt32(2 | 0x8000_0000) == 0 else { throw Errno.inval }   // SS_DISABLE, SS_AUTODISARM
            if flags & 2 == 0, Bytes.u64(raw, at: 16) < 2048 { throw Errno(12) }      // ENOMEM below MINSIGSTKSZ
            new = raw
        }
        if old != 0 { try c.write(old, c.process.signals.altStack) }
        if let new { c.process.signals.altStack = new }
        return 0
    }
}
