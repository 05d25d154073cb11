import Glibc

/// What a parked syscall waits for. The scheduler runs other threads
/// until it holds; a signal the thread does not block that would end the
/// wait makes it runnable too (the call then fails with EINTR or restarts,
/// by its restart rule). Recording decides when a condition holds; replay
/// follows the trace, which records where each thread parked and when it
/// ran again, so no condition is evaluated on replay.
public enum WaitCondition {
    /// FUTEX_WAIT on a word: another thread's FUTEX_WAKE completes the call
    /// with 0; at the deadline it completes with ETIMEDOUT.
    case futex(address: UInt64, bitset: UInt32, deadline: MonotonicInstant?)
    /// Host descriptors with events, or a deadline (recording): the call
    /// runs again from the start once one descriptor is ready or the
    /// deadline has passed. Reads, writes, accept, poll and every other
    /// call that waits on the host park on this.
    case host(HostReadiness)
    /// Guest state only (wait4: a child ended, stopped or continued): the
    /// call runs again from the start once `ready` says so.
    case guest(ready: () -> Bool)
    /// Like `guest`, with a timeout (semtimedop, a timed msgrcv): the call
    /// runs again from the start once `ready` says so or at the deadline.
    case guestUntil(ready: () -> Bool, deadline: MonotonicInstant?)
    /// Like `guest`, but no signal ends it early: Linux's TASK_KILLABLE
    /// waits (a vfork parent until its child execs or ends).
    case killable(ready: () -> Bool)
    /// A signal wait (rt_sigsuspend, rt_sigtimedwait, pause, a signalfd
    /// read): the call runs again once one of `signals` is pending, the
    /// deadline has passed or a timer that sends one is due.
    case signals(UInt64, deadline: MonotonicInstant?)

    /// Whether the call completes with what woke it (a futex) rather than
    /// running again from the start.
    var completesWithResult: Bool {
        if case .futex = self { return true }
        return false
    }

    /// Whether a signal the thread does not block ends the wait.
    var interruptible: Bool {
        if case .killable = self { return false }
        return true
    }

    var deadline: MonotonicInstant? {
        switch self {
        case .futex(_, _, let d), .signals(_, let d), .guestUntil(_, let d): return d
        case .host(let h): return h.deadline
        case .guest, .killable: return nil
        }
    }
}

/// A set of host descriptors, each with the poll events it waits for,
/// and an optional deadline: the reusable condition for every call that
/// waits on the host (one descriptor for a read, many for poll, select or
/// an epoll's host descriptor).
public struct HostReadiness {
    public var descriptors: [pollfd]
    public var deadline: MonotonicInstant?

    public init(_ descriptors: [(fd: Int32, events: Int16)], deadline: MonotonicInstant? = nil) {
        self.descriptors = descriptors.map { pollfd(fd: $0.fd, events: $0.events, revents: 0) }
        self.deadline = deadline
    }

    public init(fd: Int32, events: Int16, deadline: MonotonicInstant? = nil) {
        self.init([(fd, events)], deadline: deadline)
    }

    /// Ready now: a descriptor has an event (or an error or hang-up, which
    /// poll always reports), or the deadline has passed.
    public func isReady() -> Bool {
        if let deadline, deadline.hasPassed { return true }
        guard !descriptors.isEmpty else { return false }
        var set = descriptors
        return Glibc.poll(&set, nfds_t(set.count), 0) > 0
    }
}
