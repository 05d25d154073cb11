import KVMUser

/// ptrace between processes of the recording, as kernel/ptrace.c and
/// arch/x86/kernel/ptrace.c: a tracer attaches (TRACEME, ATTACH, SEIZE),
/// the tracee stops at signals, syscalls and events (`PtraceStops.swift`),
/// and while it is stopped the tracer reads and changes its memory and
/// registers and lets it go. The tracee's stops are scheduling decisions
/// of the recording (the stopped thread simply cannot run), so replay goes
/// through them again. A process outside the recording cannot be traced.
public enum Ptrace {
    static let TRACEME: Int64 = 0, PEEKTEXT: Int64 = 1, PEEKDATA: Int64 = 2, PEEKUSER: Int64 = 3
    static let POKETEXT: Int64 = 4, POKEDATA: Int64 = 5, POKEUSER: Int64 = 6, CONT: Int64 = 7, KILL: Int64 = 8
    static let SINGLESTEP: Int64 = 9, GETREGS: Int64 = 12, SETREGS: Int64 = 13, GETFPREGS: Int64 = 14
    static let SETFPREGS: Int64 = 15, ATTACH: Int64 = 16, DETACH: Int64 = 17, SYSCALL: Int64 = 24
    static let SETOPTIONS: Int64 = 0x4200, GETEVENTMSG: Int64 = 0x4201, GETSIGINFO: Int64 = 0x4202
    static let SETSIGINFO: Int64 = 0x4203, GETREGSET: Int64 = 0x4204, SETREGSET: Int64 = 0x4205
    static let SEIZE: Int64 = 0x4206, INTERRUPT: Int64 = 0x4207, GET_SYSCALL_INFO: Int64 = 0x420e
    /// The event message at syscall stops (PTRACE_EVENTMSG_SYSCALL_ENTRY/EXIT).
    static let EVENTMSG_SYSCALL_ENTRY: UInt64 = 1, EVENTMSG_SYSCALL_EXIT: UInt64 = 2

    static let O_TRACESYSGOOD: UInt64 = 1, O_TRACEFORK: UInt64 = 2, O_TRACEVFORK: UInt64 = 4, O_TRACECLONE: UInt64 = 8
    static let O_TRACEEXEC: UInt64 = 0x10, O_TRACEVFORKDONE: UInt64 = 0x20, O_TRACEEXIT: UInt64 = 0x40
    static let O_TRACESECCOMP: UInt64 = 0x80, O_EXITKILL: UInt64 = 0x10_0000, O_SUSPEND_SECCOMP: UInt64 = 0x20_0000
    static let optionMask: UInt64 = 0x30_00ff

    public static let EVENT_FORK: Int32 = 1, EVENT_VFORK: Int32 = 2, EVENT_CLONE: Int32 = 3, EVENT_EXEC: Int32 = 4
    public static let EVENT_VFORK_DONE: Int32 = 5, EVENT_EXIT: Int32 = 6, EVENT_SECCOMP: Int32 = 7, EVENT_STOP: Int32 = 128

    static let SIGTRAP: Int32 = 5, SIGSTOP: Int32 = 19, SIGKILL: Int32 = 9
    /// The pseudo-syscall a ptrace stop outside a syscall is logged as (a
    /// `blocked` event), in the range of detrec's other pseudo-syscalls.
    public static let stopNumber: UInt64 = 0x4000_0065
    static let NT_PRSTATUS: UInt64 = 1, NT_PRFPREG: UInt64 = 2, NT_X86_XSTATE: UInt64 = 0x202

    static func register(_ t: inout SyscallTable) {
        t.add(SYS.ptrace, .emulated,
              note: "between processes of the recording: TRACEME/ATTACH/SEIZE/INTERRUPT/DETACH, PEEK/POKE, regs, CONT/SYSCALL/SINGLESTEP/KILL, options, events; others EPERM") { c in
            try ptrace(c)
        }
    }

    static func ptrace(_ c: SyscallCall) throws -> Int64 {
        let request = c.long(0), pid = c.int(1), address = c.arg(2), data = c.arg(3)
        let p = c.process
        switch request {
        case TRACEME:
            guard p.current.trace == nil else { throw Errno.perm }
            guard let parent = p.parent, parent.zombieStatus == nil else {
                p.report("ptrace(PTRACE_TRACEME): the parent is outside the recording and cannot be its tracer; returning EPERM",
                         key: SYS.ptrace | 0x9_0000_0000, rip: c.rip)
                throw Errno.perm
            }
            p.current.trace = TraceeState(tracer: parent)
            return 0
        case ATTACH, SEIZE:
            return try attach(c, pid: pid, seize: request == SEIZE, flags: address, options: data)
        default:
            break
        }
        guard let (tp, tt) = p.family.find(pid) else {
            if !p.family.allocated(pid) && pid > 0 {
                p.report("ptrace of pid \(pid), which is not a process of the recording: returning ESRCH", key: SYS.ptrace | 0xa_0000_0000, rip: c.rip)
            }
            throw Errno.srch
        }
        guard var trace = tt.trace, trace.tracer === p else { throw Errno.srch }
        switch request {
        case KILL:
            SignalDelivery.generate(tp, signal: SIGKILL, info: SignalDelivery.siginfo(signal: SIGKILL, code: Signals.SI_KERNEL), to: tt)
            if trace.stop != nil { release(tt, &trace) }
            tt.trace = trace
            return 0
        case INTERRUPT:
            guard trace.seized else { throw Errno.io }
            if trace.stop == nil { tt.trace?.interruptRequested = true }
            return 0
        default:
            break
        }
        // Every other request needs the tracee stopped (ptrace_check_attach).
        guard trace.stop != nil else { throw Errno.srch }
        let regs = TraceeRegisters(process: tp, thread: tt)
        switch request {
        case PEEKTEXT, PEEKDATA:
            guard let word = try? tp.memory.read(address, count: 8, access: .kernel) else { throw Errno.io }
            try c.write(data, word)
            return 0
        case POKETEXT, POKEDATA:
            do { try tp.memory.write(address, Bytes.u64(data), access: .kernel) } catch { throw Errno.io }
            return 0
        case PEEKUSER:
            guard address & 7 == 0 else { throw Errno.io }
            let value: UInt64
            if address < UInt64(TraceeRegisters.size) {
                value = regs.words()[Int(address / 8)]
            } else if address >= TraceeRegisters.debugRegisters && address < TraceeRegisters.debugRegisters + 64 {
                value = 0   // no debug registers are set
            } else if address < 928 {   // sizeof(struct user)
                value = 0
            } else {
                throw Errno.io
            }
            try c.writeValue(data, value)
            return 0
        case POKEUSER:
            guard address & 7 == 0 else { throw Errno.io }
            if address < UInt64(TraceeRegisters.size) {
                try regs.set(word: Int(address / 8), data)
                return 0
            }
            if address >= TraceeRegisters.debugRegisters && address < TraceeRegisters.debugRegisters + 64 {
                if data == 0 { return 0 }
                p.report("ptrace(PTRACE_POKEUSER) of a debug register: hardware breakpoints are not supported; returning EIO",
                         key: SYS.ptrace | 0xb_0000_0000, rip: c.rip)
            }
            throw Errno.io
        case GETREGS:
            try c.write(data, regs.words().flatMap(Bytes.u64))
            return 0
        case SETREGS:
            let bytes = try c.read(data, count: TraceeRegisters.size)
            try regs.set(words: (0..<TraceeRegisters.count).map { Bytes.u64(bytes, at: $0 * 8) })
            return 0
        case GETFPREGS:
            try c.write(data, Array(try regs.extendedState().prefix(512)))
            return 0
        case SETFPREGS:
            let bytes = try c.read(data, count: 512)
            var state = try regs.extendedState()
            guard state.count >= 512 else { throw Errno.io }
            state.replaceSubrange(0..<512, with: bytes)
            try regs.setExtendedState(state)
            return 0
        case GETREGSET, SETREGSET:
            return try regset(c, regs, note: address, iovec: data, set: request == SETREGSET)
        case GETSIGINFO:
            guard let stop = trace.stop else { throw Errno.inval }
            try c.write(data, stop.siginfo(options: trace.options, pid: tp.pid, uid: tp.uid))
            return 0
        case SETSIGINFO:
            let info = try c.read(data, count: 128)
            if case .signal(let s, _)? = trace.stop { tt.trace?.stop = .signal(s, info: info) }
            return 0
        case GETEVENTMSG:
            try c.writeValue(data, trace.eventMessage)
            return 0
        case GET_SYSCALL_INFO:
            return try syscallInfo(c, regs, trace, size: address, to: data)
        case SETOPTIONS:
            try setOptions(c, data, &trace)
            tt.trace = trace
            return 0
        case CONT, SYSCALL, SINGLESTEP:
            guard data <= 64 else { throw Errno.io }
            trace.resume = request == CONT ? .cont : request == SYSCALL ? .syscall : .singleStep
            resume(tp, tt, &trace, signal: Int32(data))
            tt.trace = trace
            return 0
        case DETACH:
            guard data <= 64 else { throw Errno.io }
            trace.resume = .cont
            resume(tp, tt, &trace, signal: Int32(data))
            tt.trace = nil
            return 0
        default:
            p.report("ptrace request \(request) is not supported; returning EIO", key: SYS.ptrace | 0xc_0000_0000 | UInt64(UInt32(truncatingIfNeeded: request)),
                     rip: c.rip)
            throw Errno.io
        }
    }

    /// PTRACE_ATTACH (SIGSTOP to the tracee) and PTRACE_SEIZE (options, no stop).
    static func attach(_ c: SyscallCall, pid: Int32, seize: Bool, flags: UInt64, options: UInt64) throws -> Int64 {
        let p = c.process
        if seize {
            guard flags == 0 else { throw Errno.io }
            guard options & ~optionMask == 0 else { throw Errno.inval }
        }
        guard let (tp, tt) = p.family.find(pid) else {
            if pid > 0 && !p.family.allocated(pid) {
                p.report("ptrace attach to pid \(pid), a process outside the recording: returning EPERM", key: SYS.ptrace | 0xd_0000_0000, rip: c.rip)
                throw Errno.perm
            }
            throw Errno.srch
        }
        // Not a thread of its own process, not one already traced (ptrace_attach).
        guard tp !== p, tt.trace == nil else { throw Errno.perm }
        var trace = TraceeState(tracer: p)
        trace.seized = seize
        if seize {
            try setOptions(c, options, &trace)
        }
        tt.trace = trace
        if !seize {
            SignalDelivery.generate(tp, signal: SIGSTOP, info: SignalDelivery.siginfo(signal: SIGSTOP, code: Signals.SI_USER, pid: p.pid, uid: p.uid), to: tt)
        }
        return 0
    }

    /// PTRACE_GET_SYSCALL_INFO: struct ptrace_syscall_info of a syscall
    /// stop (seen as such with TRACESYSGOOD) or a seccomp stop; its full
    /// size is returned and at most `size` bytes written.
    static func syscallInfo(_ c: SyscallCall, _ regs: TraceeRegisters, _ trace: TraceeState, size: UInt64, to address: UInt64) throws -> Int64 {
        let r = regs.registers
        var info: [UInt8] = [0, 0, 0, 0] + Bytes.u32(SeccompData.AUDIT_ARCH_X86_64) + Bytes.u64(r.rip) + Bytes.u64(r.rsp)
        let args = [r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9]
        let sysgood = trace.options & O_TRACESYSGOOD != 0
        switch trace.stop {
        case .syscallEnter? where sysgood:
            info[0] = 1
            info += Bytes.u64(trace.origRAX) + args.flatMap(Bytes.u64)
        case .syscallExit? where sysgood:
            info[0] = 2
            let value = Int64(bitPattern: r.rax)
            info += Bytes.u64(r.rax) + [value < 0 && value >= -4095 ? 1 : 0]
        case .event(EVENT_SECCOMP)?:
            info[0] = 3
            info += Bytes.u64(trace.origRAX) + args.flatMap(Bytes.u64) + Bytes.u32(UInt32(truncatingIfNeeded: trace.eventMessage))
        default:
            break
        }
        let n = Int(min(UInt64(info.count), size))
        if n > 0 { try c.write(address, Array(info.prefix(n))) }
        return Int64(info.count)
    }

    static func setOptions(_ c: SyscallCall, _ options: UInt64, _ trace: inout TraceeState) throws {
        guard options & ~optionMask == 0 else { throw Errno.inval }
        if options & O_SUSPEND_SECCOMP != 0 {
            c.process.report("ptrace option PTRACE_O_SUSPEND_SECCOMP is not supported; returning EINVAL", key: SYS.ptrace | 0xe_0000_0000, rip: c.rip)
            throw Errno.inval
        }
        trace.options = options
    }

    /// PTRACE_GETREGSET/SETREGSET of NT_PRSTATUS, NT_PRFPREG and NT_X86_XSTATE
    /// through a struct iovec, whose length is set to what was transferred.
    static func regset(_ c: SyscallCall, _ regs: TraceeRegisters, note: UInt64, iovec: UInt64, set: Bool) throws -> Int64 {
        let io = try c.read(iovec, count: 16)
        let base = Bytes.u64(io, at: 0), length = Bytes.u64(io, at: 8)
        var content: [UInt8]
        switch note {
        case NT_PRSTATUS: content = regs.words().flatMap(Bytes.u64)
        case NT_PRFPREG: content = Array(try regs.extendedState().prefix(512))
        case NT_X86_XSTATE: content = try regs.extendedState()
        default: throw Errno.inval
        }
        let n = Int(min(UInt64(content.count), length))
        if set {
            let bytes = try c.read(base, count: n)
            switch note {
            case NT_PRSTATUS:
                var words = regs.words()
                for i in 0..<(n / 8) { words[i] = Bytes.u64(bytes, at: i * 8) }
                try regs.set(words: words)
            default:
                content.replaceSubrange(0..<n, with: bytes)
                var state = try regs.extendedState()
                state.replaceSubrange(0..<min(state.count, content.count), with: content.prefix(state.count))
                try regs.setExtendedState(state)
            }
        } else {
            try c.write(base, Array(content.prefix(n)))
        }
        try c.writeValue(iovec + 8, UInt64(n))
        return 0
    }

    static let ERESTARTSYS: Int64 = 512, ERESTARTNOINTR: Int64 = 513, ERESTARTNOHAND: Int64 = 514
    static let ERESTART_RESTARTBLOCK: Int64 = 516

    /// The code an interrupted call's RAX holds during the
    /// signal-delivery-stop; nil for a call that fails with EINTR.
    static func restartCode(_ rule: LinuxSyscall.Restart) -> Int64? {
        switch rule {
        case .never: return nil
        case .withSARestart: return ERESTARTSYS
        case .unlessHandled: return ERESTARTNOHAND
        case .restartBlock: return ERESTART_RESTARTBLOCK
        }
    }

    /// A tracee resumed from the signal-delivery-stop that followed an
    /// interrupted syscall: as Linux's arch_do_signal_or_restart, from the
    /// code in RAX (which the tracer may have changed) and whether the
    /// signal it lets through runs a handler. Without one (suppressed,
    /// ignored, a stop), the call runs again, with the time it had left;
    /// with one, ERESTARTSYS runs again after it when SA_RESTART is set, and
    /// the rest fail with EINTR.
    static func restartInterruptedCall(_ call: SyscallEntry, _ tp: Process, _ tt: GuestThread, _ trace: TraceeState, signal: Int32) {
        guard trace.origRAX == call.number else { return }
        let regs = TraceeRegisters(process: tp, thread: tt)
        var r = regs.registers
        let action = tp.signals.action(signal)
        let handled = signal != 0 && action.handler > SignalAction.SIG_IGN && tp.signalMask(of: tt) & SignalState.bit(signal) == 0
        let again: Bool
        switch -Int64(bitPattern: r.rax) {
        case ERESTARTNOHAND, ERESTART_RESTARTBLOCK: again = !handled
        case ERESTARTSYS: again = !handled || action.flags & SignalAction.SA_RESTART != 0
        case ERESTARTNOINTR: again = true
        default: return
        }
        guard again else {
            r.rax = UInt64(bitPattern: Errno.intr.result)
            regs.registers = r
            return
        }
        r.rax = call.number
        r.rip &-= 2
        regs.registers = r
        // A sleep or poll goes on with the time it had left (restart_block);
        // select, pselect6 and ppoll wrote what was left into their timeout.
        let rewritesTimeout = [SYS.select, SYS.pselect6, SYS.ppoll].contains(SyscallNumber.dispatched(call.number))
        if !handled, !rewritesTimeout, let started = tt.callStarted {
            tt.resumption = Resumption(entry: call, started: started)
        }
    }

    /// Lets a stopped tracee go: a syscall-enter-stop runs its (possibly
    /// changed) syscall, or skips it when the tracer set orig_rax to -1;
    /// a signal-delivery-stop delivers `signal` instead of the one it
    /// stopped for (none when 0).
    static func resume(_ tp: Process, _ tt: GuestThread, _ trace: inout TraceeState, signal: Int32) {
        let regs = TraceeRegisters(process: tp, thread: tt)
        var r = regs.registers
        if trace.resume == .singleStep {
            r.rflags |= 0x100
            trace.stepping = true
        } else if trace.stepping {
            r.rflags &= ~UInt64(0x100)
            trace.stepping = false
        }
        regs.registers = r
        let stop = trace.stop
        if case .signal(let stopped, let info)? = stop, signal != 0 {
            let siginfo = signal == stopped ? info : SignalDelivery.siginfo(signal: signal, code: Signals.SI_USER, pid: trace.tracer?.pid ?? 0)
            tt.pending.add(signal, info: siginfo)
            trace.injected = signal
        }
        if case .signal? = stop, let call = trace.interruptedCall {
            trace.interruptedCall = nil
            restartInterruptedCall(call, tp, tt, trace, signal: signal)
        }
        if trace.rerunsSyscall {
            trace.rerunsSyscall = false
            if trace.origRAX == UInt64.max {
                // Skipped: RAX stays as the tracer left it; the exit stop still comes.
                trace.entryStopped = false
                trace.seccompEventReported = false
                if stopAtSyscallExit(tp, tt, &trace) { return }
            } else {
                // Back onto the SYSCALL instruction with the number to run.
                var r = regs.registers
                r.rax = trace.origRAX
                r.rip &-= 2
                regs.registers = r
                trace.entryStopped = true
            }
        } else if trace.insideSyscall {
            trace.insideSyscall = false
            if stopAtSyscallExit(tp, tt, &trace) { return }
        }
        release(tt, &trace)
    }

    /// A tracee resumed with PTRACE_SYSCALL while its call is done (or
    /// skipped) stops at once at the syscall exit; whether it did.
    private static func stopAtSyscallExit(_ tp: Process, _ tt: GuestThread, _ trace: inout TraceeState) -> Bool {
        guard trace.resume == .syscall else { return false }
        trace.stop = .syscallExit
        trace.eventMessage = EVENTMSG_SYSCALL_EXIT
        trace.reported = false
        notifyTracer(tp, tt, trace)
        return true
    }

    static func release(_ tt: GuestThread, _ trace: inout TraceeState) {
        trace.stop = nil
        trace.reported = false
        if !trace.rerunsSyscall && !trace.insideSyscall { trace.origRAX = UInt64.max }
    }

    /// The tracer hears of a stop: SIGCHLD with CLD_TRAPPED (unless it
    /// asked for SA_NOCLDSTOP), and its wait4 can report it.
    static func notifyTracer(_ tp: Process, _ tt: GuestThread, _ trace: TraceeState) {
        guard let tracer = trace.tracer, let stop = trace.stop else { return }
        guard tracer.signals.action(JobControl.SIGCHLD).flags & JobControl.SA_NOCLDSTOP == 0 else { return }
        var info = SignalDelivery.siginfo(signal: JobControl.SIGCHLD, code: CLD_TRAPPED, pid: tt.tid, uid: tp.uid)
        for (i, b) in Bytes.i32(stop.waitStatus(options: trace.options) >> 8).enumerated() { info[24 + i] = b }
        SignalDelivery.generate(tracer, signal: JobControl.SIGCHLD, info: info)
    }
    static let CLD_TRAPPED: Int32 = 4

    /// A stop of a thread traced by `tracer` that its wait can report:
    /// the thread id and the wait status. `named`: the wait's pid argument
    /// accepts this tracee.
    static func reportableStop(of tracer: Process, named: (Process, GuestThread) -> Bool) -> (GuestThread, Int32)? {
        for p in tracer.family.processes where p.zombieStatus == nil {
            for t in p.threads {
                guard let trace = t.trace, trace.tracer === tracer, let stop = trace.stop, !trace.reported, named(p, t) else { continue }
                return (t, stop.waitStatus(options: trace.options))
            }
        }
        return nil
    }

    /// Whether `tracer` traces a thread the wait's pid argument accepts
    /// (`tid`: its id, for the ends of tracees, which have no thread left).
    static func traces(_ tracer: Process, named: (Process, GuestThread) -> Bool, tid: (Int32) -> Bool) -> Bool {
        tracer.traceeEnds.contains { tid($0.tid) } || tracer.family.processes.contains { p in
            p.zombieStatus == nil && p.threads.contains { $0.trace?.tracer === tracer && named(p, $0) }
        }
    }

    /// A traced thread ended. A tracer that is not its parent process
    /// (ATTACH, SEIZE, a followed fork or clone) hears of it through its own
    /// wait, and of a thread's end too; a parent learns of a process's end
    /// as always.
    static func traceeEnded(_ thread: GuestThread, of p: Process, status: Int32) {
        guard let trace = thread.trace, let tracer = trace.tracer, tracer.zombieStatus == nil else { return }
        thread.trace = nil
        let isProcess = thread.tid == p.pid
        if isProcess && p.parent === tracer { return }
        tracer.traceeEnds.append((thread.tid, status))
        let (code, childStatus) = ProcessSyscalls.childEnd(status)
        var info = SignalDelivery.siginfo(signal: JobControl.SIGCHLD, code: code, pid: thread.tid, uid: p.uid)
        for (i, b) in Bytes.i32(childStatus).enumerated() { info[24 + i] = b }
        SignalDelivery.generate(tracer, signal: JobControl.SIGCHLD, info: info)
    }

    /// The end of a tracee that `tracer`'s wait reports, taken off its list.
    static func takeEnd(of tracer: Process, tid: (Int32) -> Bool, consume: Bool) -> (tid: Int32, status: Int32)? {
        guard let i = tracer.traceeEnds.firstIndex(where: { tid($0.tid) }) else { return nil }
        let end = tracer.traceeEnds[i]
        if consume { tracer.traceeEnds.remove(at: i) }
        return end
    }

    /// The tracer's process ended: tracees with PTRACE_O_EXITKILL get
    /// SIGKILL; the others are detached and go on (ptrace's exit_ptrace).
    static func tracerEnded(_ tracer: Process) {
        for p in tracer.family.processes where p !== tracer && p.zombieStatus == nil {
            for t in p.threads {
                guard var trace = t.trace, trace.tracer === tracer || trace.tracer == nil else { continue }
                if trace.options & O_EXITKILL != 0 {
                    SignalDelivery.generate(p, signal: SIGKILL, info: SignalDelivery.siginfo(signal: SIGKILL, code: Signals.SI_KERNEL), to: t)
                }
                trace.resume = .cont
                if trace.stop != nil { resume(p, t, &trace, signal: 0) }
                t.trace = nil
            }
        }
    }
}
