import Glibc

/// What the calls that wait for several descriptors at once share
/// (epoll_wait, select, pselect6, ppoll): their timeout as a deadline, the
/// temporary signal mask of the p- variants, parking while other threads
/// can run, and the host wait itself, in the order Linux decides: ready
/// descriptors first, then the timeout, then a pending signal.
enum DescriptorWait {
    /// When a wait of `timeout` (nil: none) ends; a call that parked and
    /// runs again keeps the start of its first attempt (recording only;
    /// replay takes every outcome from the trace).
    static func deadline(_ c: SyscallCall, timeout: Nanoseconds?) -> MonotonicInstant? {
        guard let timeout, !timeout.isForever else { return nil }
        return c.deadline(after: timeout)
    }

    /// A host poll timeout until `deadline` (-1: no limit).
    static func milliseconds(until deadline: MonotonicInstant?) -> Int32 {
        deadline.map { $0.remaining().pollMilliseconds } ?? -1
    }

    /// Parks the thread while other threads can run and the wait cannot
    /// end now: `hostFD` is not ready for POLLIN, the deadline has not
    /// passed and no timer that ends it (one of `wake`'s signals) is due.
    /// Replay parks it where the recording did. The call runs again once
    /// the descriptor is ready or that time comes; EINTR when a signal
    /// ended the wait. Nil: go on with the host wait.
    static func parkIfWaiting(_ c: SyscallCall, hostFD: Int32?, deadline: MonotonicInstant?, wake: UInt64) -> SyscallOutcome? {
        let timer = c.process.earliestTimerDeadline(signals: wake).map { MonotonicInstant(doubleSeconds: $0) }
        let until = [deadline, timer].compactMap { $0 }.min()
        let wait = HostReadiness(fd: hostFD ?? -1, events: Int16(POLLIN), deadline: until)
        return c.park(.host(wait), unless: { hostFD == nil || wait.isReady() })
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
        /// runs again once it is pending (`SyscallOutcome.restart`).
        case restart
        case failed(Int64)
    }

    /// The host wait of these calls (recording), as Linux's do_poll orders
    /// it: `set` is polled; ready descriptors end the wait, then a zero
    /// timeout, then a signal pending already; otherwise it waits until a
    /// descriptor is ready, the deadline passes or a timer is due whose
    /// signal is in `interrupting` (EINTR) or read by a polled signalfd
    /// (`signalfds`: restart).
    static func hostWait(_ c: SyscallCall, _ set: inout [pollfd], deadline: MonotonicInstant?, zeroTimeout: Bool,
                         signalfds: UInt64, interrupting: UInt64, pendingInterrupt: Bool) -> Outcome {
        let p = c.process
        var first = true
        while true {
            let due = p.earliestTimerDeadline(signals: signalfds | interrupting).map { MonotonicInstant(doubleSeconds: $0) }
            let until = [deadline, due].compactMap { $0 }.min()
            let ms = first ? 0 : milliseconds(until: until)
            let n = Glibc.poll(&set, nfds_t(set.count), ms)
            if n < 0 { return errno == EINTR ? .interrupted : .failed(-Int64(errno)) }
            if n > 0 { return .ready(n) }
            if zeroTimeout { return .timedOut }
            if first && pendingInterrupt { return .interrupted }
            first = false
            if let deadline, deadline.hasPassed { return .timedOut }
            if let due, due.hasPassed {
                let read = p.earliestTimerDeadline(signals: signalfds).map { MonotonicInstant(doubleSeconds: $0).hasPassed } ?? false
                return read ? .restart : .interrupted
            }
        }
    }

    /// The temporary signal mask of pselect6, ppoll and epoll_pwait: in
    /// force during the wait (Linux's set_user_sigmask). A wait that ends
    /// with EINTR keeps it until the handler's frame has saved the old one
    /// (`GuestThread.savedSignalMask`, as rt_sigsuspend); otherwise the old
    /// mask comes back at once (`withMask`). A call that parked and runs
    /// again finds its mask already in place.
    static func setMask(_ c: SyscallCall, at address: UInt64, size: UInt64) throws(Errno) {
        guard address != 0 else { return }
        guard size == 8 else { throw .inval }
        let mask: UInt64 = try c.readValue(address) & ~SignalDelivery.unblockable
        let thread = c.process.current
        if thread.savedSignalMask == nil { thread.savedSignalMask = c.process.signals.mask }
        c.process.signals.mask = mask
    }

    /// Runs a call under the temporary mask `setMask` put in place, and
    /// ends it as Linux's restore_saved_sigmask_unless: kept for EINTR (and
    /// while the call parks or restarts), restored for any other result.
    static func withMask(_ c: SyscallCall, _ body: () throws -> SyscallOutcome) throws -> SyscallOutcome {
        let outcome: SyscallOutcome
        do { outcome = try body() } catch let e as Errno { outcome = .result(e.result) }
        if let r = outcome.result, r != Errno.intr.result, let saved = c.process.current.savedSignalMask {
            c.process.signals.mask = saved
            c.process.current.savedSignalMask = nil
        }
        return outcome
    }

    /// A timeout given as a struct timespec (NULL: none), EINVAL unless valid.
    static func timespec(_ c: SyscallCall, at address: UInt64) throws(Errno) -> Nanoseconds? {
        guard address != 0 else { return nil }
        let (sec, nsec) = try TimerSyscalls.timespecFields(try c.read(address, count: 16), at: 0)
        return Nanoseconds(seconds: sec, nanoseconds: nsec)
    }

    /// The time left until `deadline` as seconds and nanoseconds, zero once
    /// past (what pselect6, select and ppoll write back).
    static func remaining(until deadline: MonotonicInstant) -> (sec: Int64, nsec: Int64) {
        let left = deadline.remaining()
        return (left.seconds, left.subsecondNanoseconds)
    }
}
