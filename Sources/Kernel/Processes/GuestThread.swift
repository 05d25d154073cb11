import Glibc
import KVMUser

/// A syscall a thread is parked in: it resumes when its condition holds
/// (`WaitCondition`), or when a signal interrupts it.
public struct BlockedSyscall {
    public var entry: SyscallEntry
    public var condition: WaitCondition
    /// Set when another thread woke it (a futex) or its deadline passed:
    /// what the syscall returns.
    public var result: Int64?

    /// The futex word and bitset, for a futex wait.
    var futex: (address: UInt64, bitset: UInt32)? {
        if case .futex(let address, let bitset, _) = condition { return (address, bitset) }
        return nil
    }

    /// The host descriptors it waits for, for a host wait.
    var hostWait: HostReadiness? {
        if case .host(let h) = condition { return h }
        return nil
    }
}

/// What a parked syscall keeps between its attempts.
struct Resumption {
    var entry: SyscallEntry
    var started: MonotonicInstant
}

/// A guest thread. One vCPU runs one thread at a time; the others keep
/// their registers, FS/GS base, XSAVE state and signal mask here.
public final class GuestThread {
    public let tid: Int32
    public var registers = Registers()
    public var fsBase: UInt64 = 0
    public var gsBase: UInt64 = 0
    var extendedState: [UInt8]?
    public var signalMask: UInt64 = 0
    /// Signals directed at this thread (tkill, tgkill, SIGEV_THREAD_ID).
    public var pending = PendingSignals()
    public var altStack: [UInt8] = SignalState().altStack
    public var clearChildTID: UInt64 = 0
    public var robustList: (head: UInt64, length: UInt64) = (0, 0)
    public var blocked: BlockedSyscall?
    /// Its seccomp mode and filters (Sandbox/Seccomp.swift).
    public var seccomp = SeccompState()
    /// Its ids and capabilities (Credentials.swift): per thread, as Linux's.
    public var credentials = Credentials(uid: 0, euid: 0, gid: 0, egid: 0)
    /// Its NUMA policy (set_mempolicy; nil is the default): fork, clone and exec keep it.
    public var memoryPolicy: MemoryPolicy?
    /// Set while a tracer traces it (Tracing/TraceeState.swift).
    public var trace: TraceeState?
    /// The child of a CLONE_VFORK this thread waits for, until its call
    /// returns (`ProcessSyscalls.vforkCompleted`).
    var vforkChild: Process?
    /// A syscall that parked and will run again from the start: when it
    /// first started (its timeout runs from there).
    var resumption: Resumption?
    /// When the current call that may wait started (its first attempt).
    var callStarted: MonotonicInstant?
    /// Bytes the current call has written in earlier attempts, when a
    /// blocking write is done in parts (recording only; `HostTransfer`).
    var transferred: Int64 = 0
    /// Bytes a MSG_WAITALL receive has taken in earlier attempts, written to
    /// the guest when it completes (recording only; `ReceiveAll`).
    var received: [UInt8] = []
    /// The msg_flags those receives reported (recvmsg), OR'd.
    var receivedFlags: Int32 = 0
    /// The current call is a connect that went on without waiting.
    var connecting = false
    /// Its CPU time and counters, measured while recording (`ResourceUsage`).
    var usage = ResourceUsage()
    /// The host reader an open of a FIFO holds while it waits for a
    /// writer (recording only; `FIFOOpen`).
    var fifoReader: Int32?
    /// A writer's open of a FIFO waiting for a reader (recording only; `FIFOOpen`).
    var fifoWriter: FIFOOpen.WaitingWriter?
    /// Set when a signal ended the parked call's wait: it runs again once
    /// to return EINTR, or what it had transferred (`SyscallCall.interrupted`).
    var interruptedWait = false
    /// A stop (SIGSTOP and the like) ended the parked call's wait, and the
    /// call fails with EINTR once the process continues (`JobControl.stop`).
    var stopInterrupted = false
    /// Set while the thread is parked waiting for a signal (rt_sigsuspend,
    /// rt_sigtimedwait, a signalfd read): the signals that end the wait.
    /// The syscall runs again from the start once one is pending, its
    /// timeout has passed or a timer that sends one is due.
    public var signalWait: UInt64 = 0
    weak var signalWaitProcess: Process?
    /// When the current signal wait began (its timeout runs from there).
    var signalWaitStarted: Double?
    /// The mask rt_sigsuspend replaced: the handler's frame saves it, or it
    /// comes back once the syscall has returned (Linux's saved_sigmask).
    public var savedSignalMask: UInt64?
    /// Syscalls completed since this thread was last switched to.
    var syscallsInSlice = 0
    /// How long it may compute while others may need the vCPU (recording).
    var quantumPolicy = QuantumPolicy()

    public init(tid: Int32) { self.tid = tid }

    /// Can run now: not parked, or parked and already woken, or its
    /// condition holds.
    var isRunnable: Bool {
        guard let b = blocked else { return true }
        if b.result != nil || stopInterrupted { return true }
        if let d = wakeDeadline, d.hasPassed { return true }
        switch b.condition {
        case .futex: return false
        case .host(let h): return h.isReady()
        case .guest(let ready), .killable(let ready), .guestUntil(let ready, _): return ready()
        case .signals:
            guard signalWait != 0, let p = signalWaitProcess else { return false }
            return p.pendingSignals(of: self) & signalWait != 0
        }
    }

    /// When a parked thread is due to run again without being woken: its
    /// timeout, or for a signal wait also the next timer that sends one of
    /// its signals (recording only).
    var wakeDeadline: MonotonicInstant? {
        guard let b = blocked else { return nil }
        let own = b.condition.deadline
        guard signalWait != 0, let p = signalWaitProcess,
              let timer = p.earliestTimerDeadline(signals: signalWait) else { return own }
        return min(own ?? .never, MonotonicInstant(doubleSeconds: timer))
    }

    static func ready(_ fd: Int32, _ events: Int16, timeout: Int32) -> Bool {
        var p = pollfd(fd: fd, events: events, revents: 0)
        return poll(&p, 1, timeout) > 0
    }
}

extension Process {
    public func thread(_ tid: Int32) -> GuestThread? { threads.first { $0.tid == tid } }

    /// Puts `thread` on the vCPU, saving the state of the one there. The
    /// vCPU may hold a thread of another process that shares this memory
    /// (vfork, CLONE_VM): its registers are saved into that thread all the same.
    public func switchTo(_ thread: GuestThread) throws {
        if mm.loaded !== thread {
            if let holder = mm.loaded {
                holder.registers = machine.registers
                holder.fsBase = machine.fsBase
                holder.gsBase = machine.gsBase
                holder.extendedState = try machine.extendedState()
            }
            machine.registers = thread.registers
            machine.fsBase = thread.fsBase
            machine.gsBase = thread.gsBase
            if let state = thread.extendedState { try machine.setExtendedState(state) }
            thread.extendedState = nil
            mm.loaded = thread
        }
        guard thread !== current else { return }
        if threads.contains(where: { $0 === current }) {
            current.signalMask = signals.mask
            current.altStack = signals.altStack
        }
        signals.mask = thread.signalMask
        signals.altStack = thread.altStack
        current = thread
    }

    /// Wakes up to `count` threads waiting on `futex` whose bitset matches;
    /// -EINVAL when it meets a PI waiter on the word first
    /// (`MemoryContext.wakeWaiters`).
    public func wake(_ futex: UInt64, count: Int, bitset: UInt32 = 0xffff_ffff) -> Int {
        var woken = 0
        let refused = mm.wakeWaiters(count: count, bitset: bitset, woken: &woken) { $0 == futex }
        return refused ? -Int(EINVAL) : woken
    }
}
