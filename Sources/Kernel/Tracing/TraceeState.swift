/// Where a traced thread is stopped, as its tracer's wait4 reports it.
public enum TraceStop: Equatable {
    /// signal-delivery-stop: the signal it was about to take, with its siginfo.
    case signal(Int32, info: [UInt8])
    /// syscall-enter-stop and syscall-exit-stop.
    case syscallEnter, syscallExit
    /// PTRACE_EVENT_* stop (exec, exit, fork, vfork, clone, seccomp, stop).
    case event(Int32)

    /// The wait status (WIFSTOPPED, WSTOPSIG and the event in bits 16-23).
    func waitStatus(options: UInt64) -> Int32 {
        switch self {
        case .signal(let s, _): return s << 8 | 0x7f
        case .syscallEnter, .syscallExit: return (Ptrace.SIGTRAP | (options & Ptrace.O_TRACESYSGOOD != 0 ? 0x80 : 0)) << 8 | 0x7f
        case .event(let e): return (Ptrace.SIGTRAP | e << 8) << 8 | 0x7f
        }
    }

    /// What PTRACE_GETSIGINFO reads: the signal's siginfo, or the SIGTRAP
    /// ptrace_notify builds (si_code is the stop's exit code).
    func siginfo(options: UInt64, pid: Int32, uid: UInt32) -> [UInt8] {
        if case .signal(_, let info) = self { return info }
        let code = waitStatus(options: options) >> 8
        return SignalDelivery.siginfo(signal: Ptrace.SIGTRAP, code: code, pid: pid, uid: uid)
    }
}

/// How a tracee was let go: it runs until the next signal (CONT), also
/// stops at syscalls (SYSCALL), or after one instruction (SINGLESTEP).
public enum TraceResume: Equatable { case cont, syscall, singleStep }

/// What ptrace keeps about one traced thread (Linux's task->ptrace,
/// jobctl and last_siginfo), all guest state: record and replay go
/// through the same stops.
public struct TraceeState {
    /// The process whose threads trace this one (Linux's tracer is a
    /// thread, but any thread of its process may wait and make requests).
    public weak var tracer: Process?
    /// Attached by PTRACE_SEIZE (INTERRUPT allowed, no SIGSTOP on attach).
    public var seized = false
    public var options: UInt64 = 0
    public var stop: TraceStop?
    /// The tracer's wait has reported `stop`.
    public var reported = false
    public var resume: TraceResume = .cont
    /// The syscall at the registers had its syscall-enter-stop (or exit
    /// event): when it runs again, it goes on from there.
    public var entryStopped = false
    /// A stop inside a syscall that, once resumed, executes it again from
    /// its SYSCALL instruction (syscall-enter-stop, the exit event).
    public var rerunsSyscall = false
    /// orig_rax: the syscall's number during syscall stops, -1 otherwise.
    public var origRAX: UInt64 = UInt64.max
    /// The syscall an event stop happened inside of, whose syscall-exit-stop follows.
    public var insideSyscall = false
    /// PTRACE_GETEVENTMSG.
    public var eventMessage: UInt64 = 0
    /// A signal the tracer injected: delivered without another stop.
    public var injected: Int32 = 0
    /// PTRACE_INTERRUPT asked for a PTRACE_EVENT_STOP.
    public var interruptRequested = false
    /// The exit event of the current exit or exit_group was reported.
    public var exitReported = false
    /// A PTRACE_EVENT_SECCOMP stop was reported for the syscall at the registers.
    public var seccompEventReported = false
    /// SINGLESTEP set the trap flag (cleared again when resumed otherwise).
    public var stepping = false
    /// The syscall that just failed with EINTR because a signal ended its
    /// wait, until the signal-delivery-stop that follows takes it: during
    /// that stop RAX holds its -ERESTART* code and orig_rax its number, as
    /// on Linux, and resuming decides whether it runs again
    /// (`Ptrace.restartInterruptedCall`).
    public var interruptedCall: SyscallEntry?

    public init(tracer: Process) { self.tracer = tracer }
}
