extension ProcessRunner {
    /// Acts on seccomp's verdict for the syscall the current thread
    /// enters: nil lets its handler run; otherwise the step that follows
    /// instead (the call skipped with a result, a SIGSYS, the thread or
    /// process killed). A skipped call is still a syscall event, so
    /// replay, which reaches the same verdict, checks its result.
    func applySeccomp(_ entry: SyscallEntry, _ thread: GuestThread) throws -> Next? {
        let process = self.process
        let afterTracer = thread.trace?.seccompEventReported ?? false
        thread.trace?.seccompEventReported = false
        let traced = thread.trace.map { $0.tracer != nil && $0.options & Ptrace.O_TRACESECCOMP != 0 } ?? false
        switch Seccomp.verdict(process, thread, entry, tracedForSeccomp: traced, afterTracer: afterTracer) {
        case .run:
            return nil
        case .skip(let result):
            if let end = try world.enterSyscall(entry) { return .end(end) }
            return .complete(entry, result: result, yielded: false)
        case .traceStop(let data):
            return try seccompTraceStop(thread, entry, data: data)
        case .trap(let data):
            if let end = try world.enterSyscall(entry) { return .end(end) }
            let nr = Int32(truncatingIfNeeded: entry.number)
            Seccomp.forceSIGSYS(process, info: Seccomp.sigsysInfo(nr: nr, rip: entry.rip, data: data))
            // syscall_rollback: the handler sees RAX as the call's number.
            return .complete(entry, result: Int64(bitPattern: entry.number), yielded: false)
        case .killThread(let signal):
            if let end = try world.enterSyscall(entry) { return .end(end) }
            return try exit(entry, status: signal, wholeProcess: false)
        case .killProcess(let signal):
            let code = signal == Seccomp.SIGSYS ? Seccomp.SYS_SECCOMP : Signals.SI_KERNEL
            return try die(FatalSignal(signal: signal, code: code, rip: entry.rip, address: 0))
        }
    }
}
