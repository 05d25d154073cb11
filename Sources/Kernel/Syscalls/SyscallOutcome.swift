/// What a handler tells the run loop to do with its syscall. Control flow
/// is this value, never a thrown error: a thrown `Errno` is only the
/// shorthand for `.result(-errno)`.
public enum SyscallOutcome {
    /// The call completes and returns this in RAX (-errno for an error).
    /// -EINTR is then subject to the call's restart rule
    /// (`LinuxSyscall.Restart`): the run loop restarts it when Linux would.
    case result(Int64)
    /// The call must wait: the thread parks on the condition (a `blocked`
    /// event) and the others run. See `WaitCondition` for how it resumes.
    case park(WaitCondition)
    /// sched_yield: returns 0, and the scheduler may switch threads.
    case yield
    /// exit (`wholeProcess` false: this thread) or exit_group.
    case exit(status: Int32, wholeProcess: Bool)
    /// Linux's ERESTARTNOINTR: the call runs again from the start once the
    /// signals due now are pending (RIP back on the SYSCALL, RAX its
    /// number, which is also the result the trace records for it).
    case restart

    /// The result, when the outcome is one.
    public var result: Int64? {
        if case .result(let r) = self { return r }
        return nil
    }
}
