/// One installed filter. Filters form a chain, newest first, shared by the
/// threads that inherited it (Linux's refcounted seccomp_filter list).
public final class SeccompFilter {
    public let program: SeccompProgram
    /// SECCOMP_FILTER_FLAG_LOG: the actions it takes, other than ALLOW, are logged.
    public let log: Bool
    public let previous: SeccompFilter?

    init(program: SeccompProgram, log: Bool, previous: SeccompFilter?) {
        self.program = program; self.log = log; self.previous = previous
    }

    /// Instructions of the chain as Linux counts them against
    /// MAX_INSNS_PER_PATH: each filter's length plus 4.
    var pathLength: Int {
        var total = 0
        var f: SeccompFilter? = self
        while let g = f { total += g.program.instructions.count + 4; f = g.previous }
        return total
    }

    /// How many filters the chain holds (/proc's Seccomp_filters).
    var chainLength: Int {
        var n = 0
        var f: SeccompFilter? = self
        while let g = f { n += 1; f = g.previous }
        return n
    }

    /// Whether `other` is this filter or one of its ancestors (Linux's is_ancestor).
    func descends(from other: SeccompFilter?) -> Bool {
        guard let other else { return true }
        var f: SeccompFilter? = self
        while let g = f {
            if g === other { return true }
            f = g.previous
        }
        return false
    }
}

/// A thread's seccomp mode and filters, kept by fork, clone and execve.
public struct SeccompState {
    public enum Mode: Int32 { case disabled = 0, strict = 1, filter = 2 }
    public var mode: Mode = .disabled
    public var filters: SeccompFilter?

    public init() {}
}

/// What seccomp decides about one syscall, in the order Linux's
/// __seccomp_filter acts on it.
public enum SeccompVerdict: Equatable {
    /// The handler runs (ALLOW, LOG, or no filter).
    case run
    /// The syscall is skipped and returns this (ERRNO, TRACE without a
    /// tracer, USER_NOTIF without a listener).
    case skip(result: Int64)
    /// SIGSYS with si_code SYS_SECCOMP and si_errno = `data`; the syscall
    /// is skipped and RAX keeps the number.
    case trap(data: UInt16)
    /// TRACE with a tracer that asked for PTRACE_O_TRACESECCOMP: a
    /// PTRACE_EVENT_SECCOMP stop with `data` as the event message.
    case traceStop(data: UInt16)
    /// The thread ends (KILL_THREAD with other threads left; strict mode).
    case killThread(signal: Int32)
    /// The process dies of `signal` (KILL_PROCESS, an unknown action,
    /// KILL_THREAD of the last thread; strict mode's SIGKILL of the last).
    case killProcess(signal: Int32)
}

/// seccomp's filtering of the recorded program's own syscalls, as
/// kernel/seccomp.c: strict mode allows read, write, exit and rt_sigreturn;
/// filter mode runs every filter of the thread and takes the action of
/// lowest value. Everything is computed from guest state, so replay
/// reaches the same verdicts; detrec's own host calls never pass here.
public enum Seccomp {
    // Return actions (linux/seccomp.h).
    public static let RET_KILL_PROCESS: UInt32 = 0x8000_0000, RET_KILL_THREAD: UInt32 = 0
    public static let RET_TRAP: UInt32 = 0x0003_0000, RET_ERRNO: UInt32 = 0x0005_0000
    public static let RET_USER_NOTIF: UInt32 = 0x7fc0_0000, RET_TRACE: UInt32 = 0x7ff0_0000
    public static let RET_LOG: UInt32 = 0x7ffc_0000, RET_ALLOW: UInt32 = 0x7fff_0000
    static let actionMask: UInt32 = 0xffff_0000, dataMask: UInt32 = 0xffff
    static let knownActions: [UInt32] = [RET_KILL_PROCESS, RET_KILL_THREAD, RET_TRAP, RET_ERRNO, RET_USER_NOTIF,
                                         RET_TRACE, RET_LOG, RET_ALLOW]
    static let SIGSYS: Int32 = 31, SIGKILL: Int32 = 9
    /// si_code of a seccomp SIGSYS.
    static let SYS_SECCOMP: Int32 = 1
    /// MAX_ERRNO: larger ERRNO data is clamped to it.
    static let maxErrno: UInt32 = 4095
    /// mode1_syscalls on x86-64: read, write, exit, rt_sigreturn.
    static let strictAllowed: Set<Int32> = [0, 1, 60, 15]

    /// The action of the filters for a syscall: the lowest (signed) action
    /// over the chain with its data, and the filter that returned it.
    static func evaluate(_ chain: SeccompFilter, _ data: SeccompData) -> (value: UInt32, filter: SeccompFilter) {
        var best = RET_ALLOW
        var matched = chain
        var f: SeccompFilter? = chain
        while let g = f {
            let r = g.program.run(data)
            if Int32(bitPattern: r & actionMask) < Int32(bitPattern: best & actionMask) {
                best = r
                matched = g
            }
            f = g.previous
        }
        return (best, matched)
    }

    /// What seccomp does with the syscall the thread is entering.
    /// `tracedForSeccomp`: a tracer asked for PTRACE_EVENT_SECCOMP stops;
    /// `afterTracer`: the filters run again after such a stop, where a
    /// second TRACE allows the call (Linux's recheck_after_trace).
    static func verdict(_ process: Process, _ thread: GuestThread, _ entry: SyscallEntry,
                        tracedForSeccomp: Bool, afterTracer: Bool = false) -> SeccompVerdict {
        let nr = Int32(truncatingIfNeeded: entry.number)
        let lastThread = process.threads.count == 1
        switch thread.seccomp.mode {
        case .disabled:
            return .run
        case .strict:
            if strictAllowed.contains(nr) { return .run }
            return lastThread ? .killProcess(signal: SIGKILL) : .killThread(signal: SIGKILL)
        case .filter:
            guard let chain = thread.seccomp.filters else { return .killProcess(signal: SIGSYS) }
            let data = SeccompData(nr: nr, instructionPointer: entry.rip, args: entry.args)
            let (value, filter) = evaluate(chain, data)
            let action = value & actionMask
            let payload = UInt16(value & dataMask)
            log(process, action: action, filter: filter, nr: nr, rip: entry.rip)
            switch action {
            case RET_ALLOW, RET_LOG: return .run
            case RET_ERRNO: return .skip(result: -Int64(min(UInt32(payload), maxErrno)))
            case RET_TRAP: return .trap(data: payload)
            case RET_TRACE where afterTracer: return .run
            case RET_TRACE: return tracedForSeccomp ? .traceStop(data: payload) : .skip(result: Errno.nosys.result)
            // No listener can exist (NEW_LISTENER is refused): Linux's answer without one.
            case RET_USER_NOTIF: return .skip(result: Errno.nosys.result)
            case RET_KILL_THREAD where !lastThread: return .killThread(signal: SIGSYS)
            default: return .killProcess(signal: SIGSYS)
            }
        }
    }

    /// What Linux's seccomp_log puts in the audit log, with the default
    /// actions_logged: kills and LOG always, TRAP, ERRNO, TRACE and
    /// USER_NOTIF when the filter has SECCOMP_FILTER_FLAG_LOG. detrec has
    /// no audit log: the record goes to stderr, once per call and action.
    static func log(_ process: Process, action: UInt32, filter: SeccompFilter, nr: Int32, rip: UInt64) {
        let logged: Bool
        switch action {
        case RET_ALLOW: logged = false
        case RET_LOG, RET_KILL_THREAD, RET_KILL_PROCESS: logged = true
        case RET_TRAP, RET_ERRNO, RET_TRACE, RET_USER_NOTIF: logged = filter.log
        default: logged = true
        }
        guard logged else { return }
        let key = 0x7_0000_0000_0000 | UInt64(action >> 16) << 32 | UInt64(UInt32(bitPattern: nr))
        process.report("seccomp: audit type=1326 syscall=\(nr) (\(SyscallNames.name(UInt64(UInt32(bitPattern: nr))))) arch=c000003e code=0x\(String(action, radix: 16))",
                       key: key, rip: rip)
    }

    /// The siginfo of a seccomp SIGSYS (force_sig_seccomp): the call's
    /// address (after the SYSCALL), number and architecture, and the
    /// filter's data as si_errno.
    static func sigsysInfo(nr: Int32, rip: UInt64, data: UInt16) -> [UInt8] {
        var info = Bytes.i32(SIGSYS) + Bytes.i32(Int32(data)) + Bytes.i32(SYS_SECCOMP) + Bytes.i32(0)
        info += Bytes.u64(rip) + Bytes.i32(nr) + Bytes.u32(SeccompData.AUDIT_ARCH_X86_64)
        return info + [UInt8](repeating: 0, count: 128 - info.count)
    }

    /// Makes the SIGSYS of a TRAP pending for the thread, as
    /// force_sig_info_to_task: a blocked or ignored SIGSYS goes back to its
    /// default action and is unblocked, so it cannot be missed.
    static func forceSIGSYS(_ process: Process, info: [UInt8]) {
        let bit = SignalState.bit(SIGSYS)
        let blocked = process.signals.mask & bit != 0
        if blocked || process.signals.action(SIGSYS).handler == SignalAction.SIG_IGN {
            var raw = process.signals.actions[SIGSYS] ?? [UInt8](repeating: 0, count: 32)
            for i in 0..<8 { raw[i] = 0 }   // sa_handler = SIG_DFL; flags and mask stay
            process.signals.actions[SIGSYS] = raw
            if blocked { process.signals.mask &= ~bit }
        }
        SignalDelivery.generate(process, signal: SIGSYS, info: info, to: process.current)
    }
}
