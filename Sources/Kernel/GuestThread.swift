import Glibc
import KVMUser

/// A syscall a thread is parked in (a futex wait): it completes when the
/// scheduler resumes the thread.
public struct BlockedSyscall {
    public var entry: SyscallEntry
    /// The futex word waited on, and the FUTEX_WAIT_BITSET mask.
    public var futex: UInt64
    public var bitset: UInt32
    /// When the wait times out, in host CLOCK_MONOTONIC seconds (recording only).
    public var deadline: Double?
    /// Set when another thread woke it: what the syscall returns.
    public var result: Int64?
    /// A wait for a host descriptor to become ready (recording): the
    /// syscall runs again from the start once it is.
    public var hostFD: Int32?
    public var events: Int16 = 0
    /// A wait that ends when this says so (wait4: a child ended, stopped
    /// or continued); the syscall runs again then.
    public var wakeWhen: (() -> Bool)?
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
    /// A descriptor wait (epoll_wait, select, ppoll) this thread parked in,
    /// and when it times out: the call runs again with the same deadline
    /// (`DescriptorWait.deadline`; recording only).
    var parkedWait: (entry: SyscallEntry, deadline: Double?)?
    /// Syscalls completed since this thread was last switched to.
    var syscallsInSlice = 0
    /// Forced preemptions since its last slice that ended at a syscall
    /// after using its quantum: each doubles the quantum (recording).
    var preemptions = 0

    public init(tid: Int32) { self.tid = tid }

    /// Can run now: not parked, or parked and already woken, or waiting
    /// for a host descriptor that is ready.
    var isRunnable: Bool {
        guard let b = blocked else { return true }
        if b.result != nil { return true }
        if let fd = b.hostFD { return GuestThread.ready(fd, b.events, timeout: 0) }
        if let wakeWhen = b.wakeWhen { return wakeWhen() }
        if signalWait != 0, let p = signalWaitProcess {
            if p.pendingSignals(of: self) & signalWait != 0 { return true }
            if let d = wakeDeadline, d <= Scheduler.monotonicNow() { return true }
        }
        return false
    }

    /// When a parked thread is due to run again without being woken: its
    /// timeout, or for a signal wait also the next timer that sends one of
    /// its signals (recording only).
    var wakeDeadline: Double? {
        guard let b = blocked else { return nil }
        guard signalWait != 0, let p = signalWaitProcess else { return b.deadline }
        return [b.deadline, p.earliestTimerDeadline(signals: signalWait)].compactMap { $0 }.min()
    }

    static func ready(_ fd: Int32, _ events: Int16, timeout: Int32) -> Bool {
        var p = pollfd(fd: fd, events: events, revents: 0)
        return poll(&p, 1, timeout) > 0
    }
}

/// Thrown by a handler whose syscall must wait for another thread.
public struct MustBlock: Error {
    public var futex: UInt64
    public var bitset: UInt32
    public var deadline: Double?
    public var hostFD: Int32?
    public var events: Int16 = 0

    public init(futex: UInt64, bitset: UInt32, deadline: Double?) {
        self.futex = futex; self.bitset = bitset; self.deadline = deadline
    }

    public var wakeWhen: (() -> Bool)?

    /// Wait until a host descriptor is ready, then run the syscall again.
    public init(hostFD: Int32?, events: Int16) {
        futex = 0; bitset = 0; deadline = nil
        self.hostFD = hostFD; self.events = events
    }

    /// Wait until `ready` says so, then run the syscall again.
    public init(until ready: @escaping () -> Bool) {
        futex = 0; bitset = 0; deadline = nil
        wakeWhen = ready
    }
}

extension Process {
    public func thread(_ tid: Int32) -> GuestThread? { threads.first { $0.tid == tid } }

    /// Puts `thread` on the vCPU, saving the state of the one there.
    public func switchTo(_ thread: GuestThread) throws {
        guard thread !== current else { return }
        if threads.contains(where: { $0 === current }) {
            current.registers = machine.registers
            current.fsBase = machine.fsBase
            current.gsBase = machine.gsBase
            current.extendedState = try machine.extendedState()
            current.signalMask = signals.mask
            current.altStack = signals.altStack
        }
        machine.registers = thread.registers
        machine.fsBase = thread.fsBase
        machine.gsBase = thread.gsBase
        if let state = thread.extendedState { try machine.setExtendedState(state) }
        thread.extendedState = nil
        signals.mask = thread.signalMask
        signals.altStack = thread.altStack
        current = thread
    }

    /// Wakes up to `count` threads waiting on `futex` whose bitset matches.
    public func wake(_ futex: UInt64, count: Int, bitset: UInt32 = 0xffff_ffff) -> Int {
        var woken = 0
        for t in futexOrder where woken < count {
            guard var b = t.blocked, b.result == nil, b.futex == futex, b.bitset & bitset != 0 else { continue }
            b.result = 0
            t.blocked = b
            woken += 1
        }
        futexOrder.removeAll { $0.blocked?.result != nil || $0.blocked == nil }
        return woken
    }

    /// Moves up to `count` waiters from one futex word to another (REQUEUE).
    public func requeue(from: UInt64, to: UInt64, count: Int) -> Int {
        var moved = 0
        for t in futexOrder where moved < count {
            guard var b = t.blocked, b.result == nil, b.futex == from else { continue }
            b.futex = to
            t.blocked = b
            moved += 1
        }
        return moved
    }
}
