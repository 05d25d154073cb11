/// wait4 and waitid: a parent learns that a child of the recording ended,
/// stopped or continued (JobControl), each reported once (waitid's WNOWAIT
/// leaves it to be reported again). Group ids are the emulated ones
/// (`ProcessGroups`).
extension ProcessSyscalls {
    /// The wait status of a process that ended: exit code or signal.
    static func waitStatus(exited code: Int32) -> Int32 { (code & 0xff) << 8 }
    static func waitStatus(killedBy signal: Int32) -> Int32 { signal & 0x7f }

    /// SIGCHLD's si_code and si_status for a process that ended with
    /// `waitStatus`: CLD_EXITED and the exit code, or CLD_KILLED and the signal.
    static func childEnd(_ waitStatus: Int32) -> (code: Int32, status: Int32) {
        let signal = waitStatus & 0x7f
        return signal == 0 ? (JobControl.CLD_EXITED, waitStatus >> 8 & 0xff) : (JobControl.CLD_KILLED, signal)
    }

    static let WNOHANG: Int32 = 1, WUNTRACED: Int32 = 2, WEXITED: Int32 = 4, WCONTINUED: Int32 = 8
    static let WNOWAIT: Int32 = 0x0100_0000
    /// __WNOTHREAD, __WALL, __WCLONE.
    static let threadOptions: Int32 = 0x2000_0000 | 0x4000_0000 | Int32(bitPattern: 0x8000_0000)
    static let WALL: Int32 = 0x4000_0000, WCLONE = Int32(bitPattern: 0x8000_0000)

    /// Linux's eligible_child: without __WALL, a wait sees only the
    /// children whose exit signal is SIGCHLD, or with __WCLONE only the others.
    static func eligible(_ child: Process, options: Int32) -> Bool {
        options & WALL != 0 || (child.exitSignal != JobControl.SIGCHLD) == (options & WCLONE != 0)
    }

    /// What happened to a child that a wait can report.
    struct ChildChange {
        let child: Process
        /// SIGCHLD's si_code: CLD_EXITED, CLD_KILLED, CLD_STOPPED, CLD_CONTINUED.
        let code: Int32
        /// si_status: the exit code or the signal.
        let status: Int32

        /// The status word wait4 stores.
        var waitStatus: Int32 {
            switch code {
            case JobControl.CLD_EXITED: return ProcessSyscalls.waitStatus(exited: status)
            case JobControl.CLD_KILLED: return ProcessSyscalls.waitStatus(killedBy: status)
            case JobControl.CLD_STOPPED: return status << 8 | 0x7f
            default: return 0xffff
            }
        }
    }

    /// The first child `named` whose change the options ask for.
    static func change(of p: Process, named: (Process) -> Bool, exited: Bool, stopped: Bool, continued: Bool) -> ChildChange? {
        for child in p.family.processes where child.parent === p && named(child) {
            if let s = child.zombieStatus, exited {
                let (code, status) = childEnd(s)
                return ChildChange(child: child, code: code, status: status)
            }
            switch child.jobReport {
            case .stopped(let signal)? where stopped: return ChildChange(child: child, code: JobControl.CLD_STOPPED, status: signal)
            case .continued? where continued: return ChildChange(child: child, code: JobControl.CLD_CONTINUED, status: JobControl.SIGCONT)
            default: continue
            }
        }
        return nil
    }

    /// The change is reported: a zombie is reaped, a stop or continue forgotten.
    static func consume(_ change: ChildChange, of p: Process) {
        if change.child.zombieStatus != nil {
            p.reaped(change.child)
            p.family.processes.removeAll { $0 === change.child }
        } else {
            change.child.jobReport = nil
        }
    }

    static func wait4(_ c: SyscallCall) throws -> SyscallOutcome {
        let target = c.int(0), statusAddress = c.arg(1), options = c.int(2)
        guard options & ~(WNOHANG | WUNTRACED | WCONTINUED | threadOptions) == 0 else { throw Errno.inval }
        let p = c.process
        guard target != Int32.min else { throw Errno.srch }
        let group = target == 0 ? p.processGroup : -target
        let named: (Process) -> Bool = { child in
            let chosen = target == -1 || (target > 0 ? child.pid == target : child.processGroup == group)
            return chosen && eligible(child, options: options)
        }
        // Threads it traces are reported whatever their exit signal (Tracing/).
        let traced: (Process, GuestThread) -> Bool = { owner, t in
            target == -1 || (target > 0 ? t.tid == target : owner.processGroup == group)
        }
        let tracedID: (Int32) -> Bool = { target == -1 || target == $0 }
        func anyToWaitFor() -> Bool {
            p.family.processes.contains(where: { $0.parent === p && named($0) }) || Ptrace.traces(p, named: traced, tid: tracedID)
        }
        guard anyToWaitFor() else { throw Errno.child }
        func ready() -> ChildChange? {
            change(of: p, named: named, exited: true, stopped: options & WUNTRACED != 0, continued: options & WCONTINUED != 0)
        }
        if let (tracee, status) = Ptrace.reportableStop(of: p, named: traced) {
            if statusAddress != 0 { try c.writeValue(statusAddress, status) }
            if c.arg(3) != 0 { try c.write(c.arg(3), [UInt8](repeating: 0, count: 144)) }
            tracee.trace?.reported = true
            return .result(Int64(tracee.tid))
        }
        if let end = Ptrace.takeEnd(of: p, tid: tracedID, consume: true) {
            if statusAddress != 0 { try c.writeValue(statusAddress, end.status) }
            if c.arg(3) != 0 { try c.write(c.arg(3), [UInt8](repeating: 0, count: 144)) }
            return .result(Int64(end.tid))
        }
        guard let change = ready() else {
            if options & WNOHANG != 0 { return .result(0) }
            // Also when another thread reaped the last child it could wait
            // for: the retry is ECHILD, as Linux's do_wait.
            return c.parkUnlessInterrupted(.guest {
                ready() != nil || Ptrace.reportableStop(of: p, named: traced) != nil || Ptrace.takeEnd(of: p, tid: tracedID, consume: false) != nil
                    || !anyToWaitFor()
            })
        }
        if statusAddress != 0 { try c.writeValue(statusAddress, change.waitStatus) }
        try ResourceUsageSyscalls.storeForWait(c, c.arg(3), of: change.child)
        consume(change, of: p)
        return .result(Int64(change.child.pid))
    }

    static let P_ALL: Int32 = 0, P_PID: Int32 = 1, P_PGID: Int32 = 2, P_PIDFD: Int32 = 3

    static func waitid(_ c: SyscallCall) throws -> SyscallOutcome {
        let idType = c.int(0), id = c.int(1), infoAddress = c.arg(2), options = c.int(3)
        guard options & ~(WNOHANG | WUNTRACED | WEXITED | WCONTINUED | WNOWAIT | threadOptions) == 0,
              options & (WUNTRACED | WEXITED | WCONTINUED) != 0 else { throw Errno.inval }
        let named: (Process) -> Bool
        var nonBlocking = false
        switch idType {
        case P_ALL: named = { _ in true }
        case P_PID where id > 0: named = { $0.pid == id }
        case P_PGID where id >= 0:
            let group = id == 0 ? c.process.processGroup : id
            named = { $0.processGroup == group }
        case P_PIDFD where id >= 0:
            let target = try ProcessDescriptors.pidfd(c, 1)
            // A PIDFD_NONBLOCK pidfd waits as WNOHANG, and then says EAGAIN.
            nonBlocking = target.nonBlocking
            named = { $0.pid == target.pid }
        default: throw Errno.inval
        }
        let p = c.process
        let matching: (Process) -> Bool = { named($0) && eligible($0, options: options) }
        func anyToWaitFor() -> Bool { p.family.processes.contains(where: { $0.parent === p && matching($0) }) }
        guard anyToWaitFor() else { throw Errno.child }
        if infoAddress != 0 { try c.checkWritable(infoAddress, count: 128) }
        func ready() -> ChildChange? {
            change(of: p, named: matching, exited: options & WEXITED != 0, stopped: options & WUNTRACED != 0,
                   continued: options & WCONTINUED != 0)
        }
        guard let change = ready() else {
            if options & WNOHANG == 0 && !nonBlocking { return c.parkUnlessInterrupted(.guest { ready() != nil || !anyToWaitFor() }) }
            // Linux zeroes the siginfo when no child is ready.
            if infoAddress != 0 { try c.write(infoAddress, [UInt8](repeating: 0, count: 128)) }
            return .result(options & WNOHANG == 0 ? Errno.again.result : 0)
        }
        if infoAddress != 0 {
            var info = SignalDelivery.siginfo(signal: JobControl.SIGCHLD, code: change.code, pid: change.child.pid, uid: change.child.uid)
            for (i, b) in Bytes.i32(change.status).enumerated() { info[24 + i] = b }
            try c.write(infoAddress, info)
        }
        try ResourceUsageSyscalls.storeForWait(c, c.arg(4), of: change.child)
        if options & WNOWAIT == 0 { consume(change, of: p) }
        return .result(0)
    }
}
