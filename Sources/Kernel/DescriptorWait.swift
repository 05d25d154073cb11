import Glibc

/// What the calls that wait for several descriptors at once share
/// (epoll_wait, select, pselect6, ppoll): their timeout as a deadline, the
/// temporary signal mask of the p- variants, parking while other threads
/// can run, and the host wait itself, in the order Linux decides: ready
/// descriptors first, then the timeout, then a pending signal.
enum DescriptorWait {
    /// When a wait of `timeout` seconds (nil: none) that starts now ends, in
    /// host CLOCK_MONOTONIC seconds. A call that parked and runs again keeps
    /// the deadline of its first attempt (recording only; replay takes
    /// every outcome from the trace).
    static func deadline(_ c: SyscallCall, timeout: Double?) -> Double? {
        let thread = c.process.current
        if let parked = thread.parkedWait, parked.entry.number == c.number, parked.entry.args == c.args,
           parked.entry.rip == c.rip {
            return parked.deadline
        }
        thread.parkedWait = nil
        return timeout.map { Scheduler.monotonicNow() + $0 }
    }

    /// The call ends without parking: the next one starts a new wait.
    static func finished(_ c: SyscallCall) { c.process.current.parkedWait = nil }

    /// Milliseconds left until `deadline` for a host poll (-1: no limit).
    static func milliseconds(until deadline: Double?) -> Int32 {
        guard let deadline else { return -1 }
        let left = (deadline - Scheduler.monotonicNow()) * 1000
        return left <= 0 ? 0 : Int32(clamping: Int(left.rounded(.up)))
    }

    /// Parks the thread while other threads can run and the wait cannot
    /// end now: `hostFD` is not ready for POLLIN, the deadline has not
    /// passed and no timer that ends it (one of `wake`'s signals) is due.
    /// Replay parks it where the recording did. The scheduler runs the call
    /// again once the descriptor is ready or the deadline is due.
    static func parkIfWaiting(_ c: SyscallCall, hostFD: Int32?, deadline: Double?, wake: UInt64) throws {
        let p = c.process
        guard p.family.threads.contains(where: { $0 !== p.current }) else { return }
        let timerDeadline = p.earliestTimerDeadline(signals: wake)
        let until = [deadline, timerDeadline].compactMap { $0 }.min()
        let mustWait = c.world.shouldBlock {
            guard let fd = hostFD else { return false }
            if let until, until <= Scheduler.monotonicNow() { return false }
            return !GuestThread.ready(fd, Int16(POLLIN), timeout: 0)
        }
        guard mustWait else { return }
        p.current.parkedWait = (c.entry, deadline)
        var block = MustBlock(hostFD: hostFD, events: Int16(POLLIN))
        block.deadline = until
        throw block
    }

    /// How a host wait ended.
    enum Outcome: Equatable {
        /// This many descriptors are ready.
        case ready(Int32)
        case timedOut
        /// A signal ends it: EINTR (a timer's, or one pending already, or
        /// a host signal that cut the host poll short).
        case interrupted
        /// A timer is due whose signal a polled signalfd reads: the call
        /// runs again once it is pending (`SignalWait.rewindIfRestart`).
        case restart
        case failed(Int64)
    }

    /// The host wait of these calls (recording), as Linux's do_poll orders
    /// it: `set` is polled; ready descriptors end the wait, then a zero
    /// timeout, then a signal pending already; otherwise it waits until a
    /// descriptor is ready, the deadline passes or a timer is due whose
    /// signal is in `interrupting` (EINTR) or read by a polled signalfd
    /// (`signalfds`: restart).
    static func hostWait(_ c: SyscallCall, _ set: inout [pollfd], deadline: Double?, zeroTimeout: Bool,
                         signalfds: UInt64, interrupting: UInt64, pendingInterrupt: Bool) -> Outcome {
        let p = c.process
        var first = true
        while true {
            let due = p.earliestTimerDeadline(signals: signalfds | interrupting)
            let until = [deadline, due].compactMap { $0 }.min()
            let ms = first ? 0 : milliseconds(until: until)
            let n = Glibc.poll(&set, nfds_t(set.count), ms)
            if n < 0 { return errno == EINTR ? .interrupted : .failed(-Int64(errno)) }
            if n > 0 { return .ready(n) }
            if zeroTimeout { return .timedOut }
            if first && pendingInterrupt { return .interrupted }
            first = false
            let now = Scheduler.monotonicNow()
            if let deadline, deadline <= now { return .timedOut }
            if let due, due <= now {
                let read = p.earliestTimerDeadline(signals: signalfds).map { $0 <= now } ?? false
                return read ? .restart : .interrupted
            }
        }
    }

    /// The temporary signal mask of pselect6, ppoll and epoll_pwait: in
    /// force during the wait (Linux's set_user_sigmask). A wait that ends
    /// with EINTR keeps it until the handler's frame has saved the old one
    /// (`GuestThread.savedSignalMask`, as rt_sigsuspend); otherwise the old
    /// mask comes back at once (`restoreMask`). A call that parked and runs
    /// again finds its mask already in place.
    static func setMask(_ c: SyscallCall, at address: UInt64, size: UInt64) throws(Errno) {
        guard address != 0 else { return }
        guard size == 8 else { throw .inval }
        let mask: UInt64 = try c.readValue(address) & ~SignalDelivery.unblockable
        let thread = c.process.current
        if thread.savedSignalMask == nil { thread.savedSignalMask = c.process.signals.mask }
        c.process.signals.mask = mask
    }

    /// Ends the temporary mask unless the call returns EINTR (Linux's
    /// restore_saved_sigmask_unless).
    static func restoreMask(_ c: SyscallCall, result: Int64) {
        guard result != Errno.intr.result, let saved = c.process.current.savedSignalMask else { return }
        c.process.signals.mask = saved
        c.process.current.savedSignalMask = nil
    }

    /// A timeout given as a struct timespec (NULL: none), EINVAL unless valid.
    static func timespec(_ c: SyscallCall, at address: UInt64) throws(Errno) -> Double? {
        guard address != 0 else { return nil }
        return try TimerSyscalls.parseTimespec(try c.read(address, count: 16), at: 0)
    }

    /// The time left until `deadline` as a struct timespec, zero once past
    /// (what pselect6 and ppoll write back).
    static func remaining(until deadline: Double) -> (sec: Int64, nsec: Int64) {
        let left = max(0, deadline - Scheduler.monotonicNow())
        let sec = Int64(left.rounded(.down))
        return (sec, min(999_999_999, Int64((left - Double(sec)) * 1e9)))
    }
}
