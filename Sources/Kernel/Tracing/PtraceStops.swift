import KVMUser

/// Where the run loop stops a traced thread, as Linux's ptrace_stop
/// callers: at syscall entry and exit (PTRACE_SYSCALL), at the events its
/// tracer asked for, before a signal is delivered, and after a single
/// step. A stopped thread cannot run (`Process.canRun`) until its tracer
/// lets it go, so a stop is one more scheduling decision, which replay
/// follows from the trace.
extension ProcessRunner {
    static let EXIT: UInt64 = 60, EXIT_GROUP: UInt64 = 231, EXECVE: UInt64 = 59, EXECVEAT: UInt64 = 322
    static let CLONE: UInt64 = 56, FORK: UInt64 = 57, VFORK: UInt64 = 58, CLONE3: UInt64 = 435

    /// Stops the thread for its tracer and lets another run. The stop is
    /// a `blocked` event of the syscall it happened in (`inside`), or of
    /// the pseudo-syscall `Ptrace.stopNumber` at the thread's RIP, so that
    /// replay parks the tracee at the same point and follows the schedule.
    func traceStop(_ thread: GuestThread, _ stop: TraceStop, _ trace: inout TraceeState,
                   inside entry: SyscallEntry? = nil) throws -> Next {
        let parked = entry ?? SyscallEntry(number: Ptrace.stopNumber, args: [0, 0, 0, 0, 0, 0],
                                           rip: process.machine.registers.rip, tid: thread.tid)
        world.currentThread = thread.tid
        if let end = try world.enterSyscall(parked) { return .end(end) }
        try world.blocked(parked)
        trace.stop = stop
        trace.reported = false
        thread.trace = trace
        Ptrace.notifyTracer(process, thread, trace)
        return .reschedule(.blocked)
    }

    /// On syscall entry: the syscall-enter-stop, then the exit event of
    /// exit and exit_group. Each stop leaves the registers as at the
    /// SYSCALL; resuming executes it again (`Ptrace.resume`), now past the stop.
    func traceSyscallEntry(_ entry: SyscallEntry, _ thread: GuestThread) throws -> Next? {
        thread.trace?.interruptedCall = nil
        guard var trace = thread.trace, trace.tracer != nil else { return nil }
        let nr = SyscallNumber.dispatched(entry.number)
        if trace.entryStopped {
            trace.entryStopped = false
            thread.trace = trace
        } else if trace.resume == .syscall {
            trace.origRAX = entry.number
            trace.rerunsSyscall = true
            trace.eventMessage = Ptrace.EVENTMSG_SYSCALL_ENTRY
            var r = process.machine.registers
            r.rax = UInt64(bitPattern: Errno.nosys.result)
            process.machine.registers = r
            return try traceStop(thread, .syscallEnter, &trace, inside: entry)
        }
        if (nr == Self.EXIT || nr == Self.EXIT_GROUP), trace.options & Ptrace.O_TRACEEXIT != 0, !trace.exitReported {
            trace.exitReported = true
            trace.eventMessage = UInt64(UInt32(bitPattern: ProcessSyscalls.waitStatus(exited: Int32(truncatingIfNeeded: entry.args[0]))))
            trace.origRAX = entry.number
            trace.rerunsSyscall = true
            return try traceStop(thread, .event(Ptrace.EVENT_EXIT), &trace, inside: entry)
        }
        return nil
    }

    /// After a syscall completed: the exec and fork events, then the
    /// syscall-exit-stop. A new child of a traced fork or clone is traced
    /// too, and starts with a SIGSTOP (PTRACE_EVENT_STOP when seized).
    func traceSyscallExit(_ entry: SyscallEntry, result: Int64) throws -> Next? {
        let thread = process.current
        // Still EINTR here: no SA_RESTART handler made it run again (finish).
        let interrupted = result == Errno.intr.result && process.machine.registers.rax == UInt64(bitPattern: result)
        thread.trace?.interruptedCall = interrupted ? entry : nil
        guard var trace = thread.trace, trace.tracer != nil else { return nil }
        let nr = SyscallNumber.dispatched(entry.number)
        if (nr == Self.EXECVE || nr == Self.EXECVEAT) && result == 0 {
            trace.exitReported = false
            if trace.options & Ptrace.O_TRACEEXEC != 0 {
                trace.eventMessage = UInt64(UInt32(bitPattern: thread.tid))
                trace.origRAX = entry.number
                trace.insideSyscall = true
                return try traceStop(thread, .event(Ptrace.EVENT_EXEC), &trace)
            }
            // Without TRACEEXEC a successful execve sends SIGTRAP.
            SignalDelivery.generate(process, signal: Ptrace.SIGTRAP, info: SignalDelivery.siginfo(signal: Ptrace.SIGTRAP, code: Signals.SI_USER), to: thread)
        }
        if [Self.CLONE, Self.FORK, Self.VFORK, Self.CLONE3].contains(nr), result > 0,
           let (_, child) = process.family.find(Int32(truncatingIfNeeded: result)) {
            let flags: UInt64
            switch nr {
            case Self.FORK: flags = 17
            case Self.VFORK: flags = 0x4000 | 0x100 | 17
            case Self.CLONE: flags = entry.args[0]
            default: flags = (try? process.memory.readValue(entry.args[0], as: UInt64.self)) ?? 0
            }
            let exitSignal = nr == Self.CLONE3 ? ((try? process.memory.readValue(entry.args[0] &+ 32, as: UInt64.self)) ?? 0) : flags & 0xff
            let event: Int32 = flags & 0x4000 != 0 ? Ptrace.EVENT_VFORK : exitSignal != 17 ? Ptrace.EVENT_CLONE : Ptrace.EVENT_FORK
            let option: UInt64 = event == Ptrace.EVENT_VFORK ? Ptrace.O_TRACEVFORK : event == Ptrace.EVENT_CLONE ? Ptrace.O_TRACECLONE : Ptrace.O_TRACEFORK
            // kernel_clone: CLONE_UNTRACED keeps the child untraced and the
            // event unreported (LeakSanitizer's tracer is made so);
            // CLONE_PTRACE traces the child without an event.
            let reported = flags & ProcessSyscalls.CLONE_UNTRACED == 0 && trace.options & option != 0
            if reported || flags & ProcessSyscalls.CLONE_PTRACE != 0, let tracer = trace.tracer, child.trace == nil {
                var inherited = TraceeState(tracer: tracer)
                inherited.options = trace.options
                inherited.seized = trace.seized
                if trace.seized {
                    inherited.interruptRequested = true
                } else {
                    child.pending.add(Ptrace.SIGSTOP, info: SignalDelivery.siginfo(signal: Ptrace.SIGSTOP, code: Signals.SI_USER))
                }
                child.trace = inherited
                if reported {
                    trace.eventMessage = UInt64(UInt32(bitPattern: child.tid))
                    trace.origRAX = entry.number
                    trace.insideSyscall = true
                    return try traceStop(thread, .event(event), &trace)
                }
            }
        }
        guard trace.resume == .syscall else { return nil }
        trace.origRAX = entry.number
        trace.eventMessage = Ptrace.EVENTMSG_SYSCALL_EXIT
        return try traceStop(thread, .syscallExit, &trace)
    }

    /// Before the current thread takes a signal: the signal-delivery-stop
    /// (not for SIGKILL, nor for the signal the tracer just injected), or
    /// the PTRACE_EVENT_STOP that PTRACE_INTERRUPT asked for.
    func traceSignalDelivery() throws -> Next? {
        let thread = process.current
        guard var trace = thread.trace, trace.tracer != nil, trace.stop == nil else { return nil }
        if trace.interruptRequested {
            trace.interruptRequested = false
            return try traceStop(thread, .event(Ptrace.EVENT_STOP), &trace)
        }
        let deliverable = ~process.signals.mask | SignalDelivery.unblockable
        let own = thread.pending.set & deliverable
        let set = own != 0 ? own : process.signals.shared.set & deliverable
        guard set != 0 else {
            thread.trace?.interruptedCall = nil
            return nil
        }
        let signal = Int32(set.trailingZeroBitCount + 1)
        if signal == Ptrace.SIGKILL { return nil }
        if signal == trace.injected {
            trace.injected = 0
            thread.trace = trace
            return nil
        }
        guard let (taken, info) = SignalDelivery.dequeue(process, from: SignalState.bit(signal)) else { return nil }
        // A syscall this signal interrupted shows its restart code while stopped.
        if let call = trace.interruptedCall {
            trace.interruptedCall = nil
            var r = process.machine.registers
            if r.rip == call.rip, r.rax == UInt64(bitPattern: Errno.intr.result),
               let code = Ptrace.restartCode(table.restartRule(SyscallNumber.dispatched(call.number))) {
                r.rax = UInt64(bitPattern: -code)
                process.machine.registers = r
                trace.origRAX = call.number
                trace.interruptedCall = call
            }
        }
        return try traceStop(thread, .signal(taken, info: info), &trace)
    }

    /// seccomp's TRACE with a tracer that asked for it: a
    /// PTRACE_EVENT_SECCOMP stop with the filter's data as the event
    /// message. Resuming runs the syscall again through the filters, where
    /// TRACE now allows it (or skips it when the tracer set orig_rax to -1).
    func seccompTraceStop(_ thread: GuestThread, _ entry: SyscallEntry, data: UInt16) throws -> Next {
        guard var trace = thread.trace else { return .resumeGuest }
        trace.eventMessage = UInt64(data)
        trace.origRAX = entry.number
        trace.rerunsSyscall = true
        trace.seccompEventReported = true
        var r = process.machine.registers
        r.rax = UInt64(bitPattern: Errno.nosys.result)
        process.machine.registers = r
        return try traceStop(thread, .event(Ptrace.EVENT_SECCOMP), &trace, inside: entry)
    }

    /// A fault of a traced thread (a breakpoint, a single step, a
    /// segfault) stops it with its signal instead of running a handler or
    /// killing it; the tracer decides (CONT with the signal delivers it).
    func traceFault(_ signal: FatalSignal, _ e: GuestException) throws -> Next? {
        let thread = process.current
        guard var trace = thread.trace, trace.tracer != nil, trace.stop == nil else { return nil }
        var code = signal.code
        if e.vector == GuestException.debug && trace.stepping { code = Signals.TRAP_TRACE }
        let info = SignalDelivery.siginfo(signal: signal.signal, code: code, address: signal.address)
        return try traceStop(thread, .signal(signal.signal, info: info), &trace)
    }
}
