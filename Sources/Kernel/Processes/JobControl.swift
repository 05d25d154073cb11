/// Stopping and continuing processes, as Linux's prepare_signal and
/// do_signal_stop do: a stop signal whose action is the default stops
/// every thread of the process, SIGCONT resumes it, and the parent hears
/// of both (SIGCHLD unless it asked for SA_NOCLDSTOP, and wait4 with
/// WUNTRACED or WCONTINUED). The run loop keeps a stopped process off the
/// vCPU; when nothing in the recording is left to continue it, detrec
/// itself stops on the host (`ProcessRunner.waitWhileStopped`), as the
/// program would have under a shell.
public enum JobControl {
    public static let SIGCHLD: Int32 = 17, SIGCONT: Int32 = 18
    static let stopSignals = SignalState.bit(19) | SignalState.bit(20) | SignalState.bit(21) | SignalState.bit(22)
    // si_code of SIGCHLD (asm-generic/siginfo.h).
    public static let CLD_EXITED: Int32 = 1, CLD_KILLED: Int32 = 2, CLD_STOPPED: Int32 = 5, CLD_CONTINUED: Int32 = 6
    static let SA_NOCLDSTOP: UInt64 = 1

    /// What wait4 reports of a child besides its end, once each.
    public enum Report: Equatable { case stopped(Int32), continued }

    /// What a signal does on arrival, before any thread takes it: SIGCONT
    /// resumes a stopped process and drops its pending stop signals; a
    /// stop signal drops a pending SIGCONT.
    static func arrived(_ p: Process, signal: Int32) {
        if signal == SIGCONT {
            discard(p, stopSignals)
            guard p.stoppedBy != nil else { return }
            p.stoppedBy = nil
            p.jobReport = .continued
            notifyParent(p, code: CLD_CONTINUED, status: SIGCONT)
        } else if stopSignals & SignalState.bit(signal) != 0 {
            discard(p, SignalState.bit(SIGCONT))
        }
    }

    /// Whether a stop signal stops the process at once: its action is the
    /// default and a thread it may go to does not block it. Linux stops
    /// each thread as it next runs; stopping them all now is the same for
    /// threads that are not on the vCPU, and keeps the stop at the sending
    /// syscall, where record and replay both are.
    static func stopsOnArrival(_ p: Process, signal: Int32, thread: GuestThread?) -> Bool {
        guard stopSignals & SignalState.bit(signal) != 0 else { return false }
        guard signal == 19 || p.signals.action(signal).handler == SignalAction.SIG_DFL else { return false }
        let takers = thread.map { [$0] } ?? p.threads
        // A traced thread takes it at delivery, as a signal-delivery-stop for its tracer.
        if takers.contains(where: { $0.trace != nil }) { return false }
        return takers.contains { signal == 19 || p.signalMask(of: $0) & SignalState.bit(signal) == 0 }
    }

    /// A stop signal's default action: the process stops.
    static func stop(_ p: Process, signal: Int32) {
        p.stoppedBy = signal
        // The stop wakes each thread's interruptible wait: a call that
        // fails with EINTR on any signal (epoll_wait: no -ERESTART code)
        // returns EINTR once the process continues; the others run again.
        for t in p.threads {
            guard let b = t.blocked, b.result == nil, b.condition.interruptible,
                  SyscallTable.linux.description(b.entry.number)?.restart == .never else { continue }
            t.stopInterrupted = true
        }
        p.jobReport = .stopped(signal)
        notifyParent(p, code: CLD_STOPPED, status: signal)
    }

    /// The SIGCHLD a parent gets when its child stops, continues or ends
    /// (the child's exit signal for its end, which clone may have chosen:
    /// none when it is 0).
    public static func notifyParent(_ p: Process, code: Int32, status: Int32) {
        guard let parent = p.parent else { return }
        if code == CLD_STOPPED || code == CLD_CONTINUED,
           parent.signals.action(SIGCHLD).flags & SA_NOCLDSTOP != 0 { return }
        let signal = code == CLD_EXITED || code == CLD_KILLED ? p.exitSignal : SIGCHLD
        guard signal != 0 else { return }
        var info = SignalDelivery.siginfo(signal: signal, code: code, pid: p.pid, uid: p.uid)
        for (i, b) in Bytes.i32(status).enumerated() { info[24 + i] = b }   // si_status
        SignalDelivery.generate(parent, signal: signal, info: info)
    }

    private static func discard(_ p: Process, _ mask: UInt64) {
        p.signals.shared.discard(mask)
        for t in p.threads { t.pending.discard(mask) }
    }
}
