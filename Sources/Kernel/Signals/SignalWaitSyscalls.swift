import Glibc

/// Waiting for signals: rt_sigsuspend and rt_sigtimedwait (sigwait,
/// sigwaitinfo, sigtimedwait).
///
/// Which signals are pending is guest state, the same on replay, so a wait
/// that can end at once ends the same way in both modes. A wait that must
/// last goes through `SignalWait.wait`: the thread parks while other
/// threads can run (another thread's kill wakes it), or sleeps on the host
/// until its timeout or the next timer that sends one of its signals.
/// Timer signals become pending only after a syscall (the `signal` events
/// follow a syscall event), so a wait that a timer ends returns EINTR when
/// the timer's signal runs a handler, and otherwise completes as a restart
/// (Linux's ERESTARTNOINTR): the guest's RIP goes back onto the SYSCALL
/// instruction, the signal is made pending, and the call runs again and
/// finds it.
enum SignalWaitSyscalls {
    static func register(_ t: inout SyscallTable) {
        t.addOutcome(SYS.rt_sigsuspend, .emulated, sigsuspend)
        t.addOutcome(SYS.rt_sigtimedwait, .emulated, sigtimedwait)
    }

    static let unblockable = SignalDelivery.unblockable

    static func sigsuspend(_ c: SyscallCall) throws -> SyscallOutcome {
        SignalWait.clear(c)
        guard c.arg(1) == 8 else { throw Errno.inval }
        let temporary: UInt64 = try c.readValue(c.arg(0)) & ~unblockable
        let p = c.process
        // What ends the wait: a signal the new mask lets through that is
        // not discarded on arrival.
        let wake = SignalWait.deliverable(p, mask: temporary)
        if p.pendingSignals() & wake == 0 {
            let outcome = try SignalWait.wait(c, wake: wake, restartOn: 0, deadline: nil, file: nil)
            if outcome.result != Errno.intr.result { return outcome }
        }
        // Return EINTR with the new mask in force: the signal is delivered
        // on the way out, its frame saving the old mask (Linux's
        // saved_sigmask), which comes back when the handler returns.
        p.current.savedSignalMask = p.signals.mask
        p.signals.mask = temporary
        return .result(Errno.intr.result)
    }

    static func sigtimedwait(_ c: SyscallCall) throws -> SyscallOutcome {
        SignalWait.clear(c)
        guard c.arg(3) == 8 else { throw Errno.inval }
        let set: UInt64 = try c.readValue(c.arg(0)) & ~unblockable
        let infoAddress = c.arg(1)
        var timeout: Double?
        if c.arg(2) != 0 {
            timeout = try TimerSyscalls.parseTimespec(try c.read(c.arg(2), count: 16), at: 0)
        }
        if infoAddress != 0 { try c.checkWritable(infoAddress, count: 128) }
        let p = c.process
        if let (signal, info) = SignalDelivery.dequeue(p, from: set) {
            if infoAddress != 0 { try c.write(infoAddress, info) }
            return .result(Int64(signal))
        }
        // While it waits, Linux unblocks the set: a signal of the set or
        // any other the mask lets through ends the wait (the latter with
        // EINTR, after which its handler runs).
        let other = SignalWait.deliverable(p, mask: p.signals.mask)
        if p.pendingSignals() & other != 0 { return .result(Errno.intr.result) }
        if timeout == 0 { return .result(Errno.again.result) }
        let outcome = try SignalWait.wait(c, wake: set | other, restartOn: set, deadline: timeout, file: nil)
        return outcome.result == SignalWait.timedOut ? .result(Errno.again.result) : outcome
    }
}

/// The wait shared by every call that waits for signals.
enum SignalWait {
    /// Linux's ERESTARTNOINTR: the call runs again after the signals due now
    /// are made pending. A host part returns it, and replay must see the
    /// same, so it is the result the guest's RAX gets for the restart: the
    /// call's own number, which none of these calls returns otherwise
    /// (poll only restarts with fewer descriptors than that).
    static func restart(_ c: SyscallCall) -> Int64 { Int64(c.number) }
    static let timedOut = -Int64(ETIMEDOUT)

    /// The signals that would end a wait under `mask`: not blocked, and not
    /// discarded on arrival (ignored, or ignored by default).
    static func deliverable(_ p: Process, mask: UInt64) -> UInt64 {
        var set = ~mask | SignalDelivery.unblockable
        for signal in Int32(1)...64 where set & SignalState.bit(signal) != 0 {
            let a = p.signals.action(signal)
            if signal == 9 || signal == 19 { continue }
            if a.handler == SignalAction.SIG_IGN || (a.handler == SignalAction.SIG_DFL && SignalDelivery.ignoredByDefault.contains(signal)) {
                set &= ~SignalState.bit(signal)
            }
        }
        return set
    }

    /// Forgets a finished wait (each of these calls starts with it).
    static func clear(_ c: SyscallCall) {
        // A call that parked runs again with signalWait still set: it keeps
        // the time its wait started; a new call starts afresh.
        if c.process.current.signalWait == 0 { c.process.current.signalWaitStarted = nil }
        c.process.current.signalWait = 0
        c.process.current.signalWaitProcess = nil
    }

    /// Waits until a signal in `wake` is pending, `deadline` (seconds from
    /// now) passes, or the non-blocking host descriptor `fd` says not to.
    /// Called when none is pending. Returns EINTR when a timer's signal that
    /// is not in `restartOn` ended it (the caller returns EINTR, and the
    /// signal is delivered), -ETIMEDOUT at the deadline, -EAGAIN for a
    /// non-blocking `fd`, or rewinds the call to run again (see
    /// `SignalWaitSyscalls`: `.restart`). Parks the thread while others
    /// can run.
    static func wait(_ c: SyscallCall, wake: UInt64, restartOn: UInt64, deadline seconds: Double?, file: OpenFile?) throws -> SyscallOutcome {
        let p = c.process
        let fd = file?.hostFD
        let restart = restart(c)
        let started = Scheduler.monotonicNow()
        // A parked wait runs again from the start: its deadline is kept
        // from the first attempt (recording only).
        let deadline = seconds.map { (p.current.signalWaitStarted ?? started) + $0 }
        func nonBlocking() -> Bool {
            guard let fd else { return false }
            return fcntl(fd, F_GETFL) & O_NONBLOCK != 0
        }
        func timerDue() -> Bool { p.earliestTimerDeadline(signals: wake).map { $0 <= Scheduler.monotonicNow() } ?? false }
        let others = p.family.threads.contains { $0 !== p.current }
        if others, c.world.shouldBlock({ !nonBlocking() && !timerDue() && (deadline.map { $0 > Scheduler.monotonicNow() } ?? true) }) {
            p.current.signalWait = wake
            p.current.signalWaitProcess = p
            if p.current.signalWaitStarted == nil { p.current.signalWaitStarted = started }
            return .park(.signals(wake, deadline: deadline.map { MonotonicInstant(doubleSeconds: $0) }))
        }
        p.current.signalWaitStarted = nil
        let r = try c.host { _ throws(Errno) -> Int64 in
            if nonBlocking() { return Errno.again.result }
            while true {
                let now = Scheduler.monotonicNow()
                // Timers due now: the first decides how the wait ends.
                if let due = p.earliestTimerDeadline(signals: wake), due <= now {
                    return p.earliestTimerDeadline(signals: restartOn).map { $0 <= now } ?? false ? restart : Errno.intr.result
                }
                if let deadline, deadline <= now { return timedOut }
                guard let until = [deadline, p.earliestTimerDeadline(signals: wake)].compactMap({ $0 }).min() else {
                    // Only a host signal (Ctrl-C, a kill of detrec) ends this
                    // one; the program gets it (ProcessRunner.hostSignalArrived).
                    Glibc.pause()
                    return Errno.intr.result
                }
                if !TimerSyscalls.nap(until - now) { return Errno.intr.result }
            }
        }
        return r == restart ? .restart : .result(r)
    }

    /// How a host poll ended: with its count of ready descriptors, or with
    /// what the syscall returns instead (-errno, EINTR, `restart`).
    enum PollOutcome { case ready(Int32), returns(Int64) }

    /// poll(2) on the host for up to `timeout` ms (-1: no limit), ended
    /// early by a timer whose signal is in `interrupting` (EINTR) or read by
    /// a polled signalfd (`restart`; recording only; with as many
    /// descriptors as the call's number, a signalfd's timer interrupts).
    static func poll(_ c: SyscallCall, _ set: inout [pollfd], timeout: Int32, signalfds: UInt64, interrupting: UInt64) -> PollOutcome {
        let p = c.process
        // A restart must not read as a count of ready descriptors.
        let restart = set.count < c.number ? restart(c) : Errno.intr.result
        let wake = signalfds | interrupting
        let end = timeout < 0 ? nil : Scheduler.monotonicNow() + Double(timeout) / 1000
        while true {
            // As Linux's do_poll: ready descriptors first, then the timeout,
            // then a signal. A host signal to detrec ends it too (HostWake).
            let now = Scheduler.monotonicNow()
            let due = p.earliestTimerDeadline(signals: wake)
            let until = [end, due].compactMap { $0 }.min()
            let ms = until.map { Int32(clamping: Int((max(0, $0 - now) * 1000).rounded(.up))) } ?? -1
            var all = set
            if let w = HostWake.pollEntry { all.append(w) }
            let n = Glibc.poll(&all, nfds_t(all.count), ms)
            for i in set.indices { set[i].revents = all[i].revents }
            if n < 0 { return .returns(-Int64(errno)) }
            if all.count > set.count, all[set.count].revents != 0 {
                let ready = set.filter { $0.revents != 0 }.count
                return ready > 0 ? .ready(Int32(ready)) : .returns(Errno.intr.result)
            }
            if n > 0 { return .ready(n) }
            let after = Scheduler.monotonicNow()
            if let end, end <= after { return .ready(0) }
            if let due, due <= after {
                return .returns(p.earliestTimerDeadline(signals: signalfds).map { $0 <= after } ?? false ? restart : Errno.intr.result)
            }
        }
    }
}
