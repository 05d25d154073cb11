import Glibc

/// Interval timers and alarm(2). The timers live in the emulated process
/// and run on the host clock while recording; when one expires, the signal
/// is made pending after the syscall that noticed it and logged, so replay
/// generates it at the same point (`HostWorld.outsideSignals`). A sleep that
/// a timer cuts short returns EINTR with the time left, as on Linux.
/// ITIMER_VIRTUAL and ITIMER_PROF are approximated with wall-clock time.
enum TimerSyscalls {
    static func register(_ t: inout SyscallTable) {
        t.add(SYS.setitimer, setitimer)
        t.add(SYS.getitimer, getitimer)
        t.add(SYS.alarm, alarm)
        t.addOutcome(SYS.nanosleep, .emulated, note: "parks while other threads run") { c in
            try sleep(c, clock: CLOCK_MONOTONIC, flags: 0, request: 0, remainder: 1)
        }
        t.addOutcome(SYS.clock_nanosleep, .emulated, note: "REALTIME, MONOTONIC, BOOTTIME, TAI; parks while other threads run") { c in
            try sleep(c, clock: c.int(0), flags: c.int(1), request: 2, remainder: 3)
        }
        t.addOutcome(SYS.pause, .emulated, pause)
    }

    static func now() -> Double { Scheduler.monotonicNow() }

    static func timeval(_ seconds: Double) -> [UInt8] {
        let s = max(0, seconds)
        let whole = s.rounded(.down)
        return Bytes.u64(UInt64(whole)) + Bytes.u64(UInt64(((s - whole) * 1e6).rounded(.down)))
    }

    static func parseTimeval(_ b: [UInt8], at i: Int) throws(Errno) -> Double {
        let sec = Int64(bitPattern: Bytes.u64(b, at: i)), usec = Int64(bitPattern: Bytes.u64(b, at: i + 8))
        guard sec >= 0, usec >= 0, usec < 1_000_000 else { throw .inval }
        return Double(sec) + Double(usec) / 1e6
    }

    /// A struct timespec (rounded to the nanosecond).
    static func timespecBytes(_ seconds: Double) -> [UInt8] {
        let s = max(0, seconds)
        let whole = s.rounded(.down)
        return Bytes.u64(UInt64(whole)) + Bytes.u64(min(999_999_999, UInt64(((s - whole) * 1e9).rounded())))
    }

    /// A guest's struct timespec, checked as Linux checks one: EINVAL for a
    /// negative field or nanoseconds past a second.
    static func timespecFields(_ b: [UInt8], at i: Int) throws(Errno) -> (sec: Int64, nsec: Int64) {
        let sec = Int64(bitPattern: Bytes.u64(b, at: i)), nsec = Int64(bitPattern: Bytes.u64(b, at: i + 8))
        guard sec >= 0, nsec >= 0, nsec < 1_000_000_000 else { throw .inval }
        return (sec, nsec)
    }

    static func parseTimespec(_ b: [UInt8], at i: Int) throws(Errno) -> Double {
        let (sec, nsec) = try timespecFields(b, at: i)
        return Double(sec) + Double(nsec) / 1e9
    }

    /// Sleeps on the host for `seconds`; false when a host signal cut it short.
    @discardableResult
    static func nap(_ seconds: Double) -> Bool {
        // NaN and huge spans (a TIME_T_MAX timeout) must not trap: 30 years is forever here.
        let s = seconds > 0 ? min(seconds, 1e9) : 0
        var ts = Glibc.timespec(tv_sec: Int(s), tv_nsec: Int((s - s.rounded(.down)) * 1e9))
        return !(nanosleep(&ts, nil) != 0 && errno == EINTR)
    }

    /// The current value of timer `which` as struct itimerval (interval, value).
    static func current(_ p: Process, _ which: Int) -> [UInt8] {
        guard let t = p.timers[which] else { return [UInt8](repeating: 0, count: 32) }
        return timeval(t.interval) + timeval(t.deadline - now())
    }

    static func setitimer(_ c: SyscallCall) throws -> Int64 {
        let which = Int(c.int(0))
        guard (0...2).contains(which) else { throw Errno.inval }
        var interval = 0.0, value = 0.0
        if c.arg(1) != 0 {
            let raw = try c.read(c.arg(1), count: 32)
            interval = try parseTimeval(raw, at: 0)
            value = try parseTimeval(raw, at: 16)
        }
        if c.arg(2) != 0 { try c.checkWritable(c.arg(2), count: 32) }
        let p = c.process, old = c.arg(2)
        return try c.host { effects throws(Errno) -> Int64 in
            if old != 0 { try effects.write(old, current(p, which)) }
            p.timers[which] = value > 0 ? (now() + value, interval) : nil
            return 0
        }
    }

    static func getitimer(_ c: SyscallCall) throws -> Int64 {
        let which = Int(c.int(0))
        guard (0...2).contains(which) else { throw Errno.inval }
        try c.checkWritable(c.arg(1), count: 32)
        let p = c.process, out = c.arg(1)
        return try c.host { effects throws(Errno) -> Int64 in
            try effects.write(out, current(p, which))
            return 0
        }
    }

    static func alarm(_ c: SyscallCall) throws -> Int64 {
        let seconds = Double(UInt32(truncatingIfNeeded: c.arg(0)))
        let p = c.process
        return try c.host { _ in
            var old: Int64 = 0
            if let t = p.timers[0] {
                let left = max(0, t.deadline - now())
                old = Int64(left.rounded(.down)) + (left - left.rounded(.down) >= 0.5 ? 1 : 0)
                if old == 0 { old = 1 }
            }
            p.timers[0] = seconds > 0 ? (now() + seconds, 0) : nil
            return old
        }
    }

    /// The earliest expiry of a timer whose signal would interrupt a wait.
    static func nextInterruption(_ p: Process) -> Double? {
        p.earliestTimerDeadline(signals: SignalWait.deliverable(p, mask: p.signals.mask))
    }

    /// Recording, inside a host call: waits for a host descriptor to be
    /// ready, but no longer than until a timer would interrupt the wait.
    /// False when the timer came first: the syscall returns EINTR (or
    /// restarts after the handler, under SA_RESTART).
    /// A host signal to detrec ends the wait as well (HostWake): false.
    static func waitReady(_ p: Process, fd: Int32, events: Int16) -> Bool {
        // A non-blocking descriptor never waits: the call says EAGAIN itself.
        guard fcntl(fd, F_GETFL) & O_NONBLOCK == 0 else { return true }
        let deadline = nextInterruption(p).map { MonotonicInstant(doubleSeconds: $0) }
        var set = [pollfd(fd: fd, events: events, revents: 0)]
        switch HostWake.wait(&set, until: deadline) {
        case .ready, .failed: return true
        case .deadline: return Glibc.poll(&set, 1, 0) > 0
        case .hostSignal: return false
        }
    }

    /// nanosleep and clock_nanosleep, relative or TIMER_ABSTIME. The end is
    /// a point on the host's monotonic clock, in saturating integers (a
    /// sleep of TIME_T_MAX seconds just never ends). While other threads
    /// could run the thread parks until then; otherwise detrec sleeps on
    /// the host until then, a timer that would interrupt it, or a host
    /// signal. Interrupted, it writes the time left (relative sleeps) and
    /// fails with EINTR, which its restart rule may turn into a restart.
    static func sleep(_ c: SyscallCall, clock: Int32, flags: Int32, request: Int, remainder: Int) throws -> SyscallOutcome {
        let (sec, nsec) = try timespecFields(try c.read(c.arg(request), count: 16), at: 0)
        guard [CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_BOOTTIME, CLOCK_TAI].contains(clock) else { throw Errno.inval }
        let absolute = flags & TIMER_ABSTIME != 0
        let rem = c.arg(remainder)
        if rem != 0 && !absolute { try c.checkWritable(rem, count: 16) }
        let p = c.process
        let span = Nanoseconds(seconds: sec, nanoseconds: nsec)
        // Recording only: replay never looks at the clock (the host part is
        // skipped and parking follows the trace).
        let deadline: MonotonicInstant
        if absolute {
            var t = timespec()
            clock_gettime(clock, &t)
            deadline = MonotonicInstant.now() + (span - Nanoseconds(seconds: Int64(t.tv_sec), nanoseconds: Int64(t.tv_nsec)))
        } else {
            deadline = c.deadline(after: span)
        }
        func interrupted(_ effects: inout HostEffects) throws(Errno) -> Int64 {
            if rem != 0 && !absolute {
                let left = deadline.remaining()
                try effects.write(rem, Bytes.u64(UInt64(left.seconds)) + Bytes.u64(UInt64(left.subsecondNanoseconds)))
            }
            return Errno.intr.result
        }
        if c.interrupted { return .result(try c.host { effects throws(Errno) in try interrupted(&effects) }) }
        if let parked = c.park(.host(HostReadiness([], deadline: deadline)), unless: { deadline.hasPassed }) {
            return parked
        }
        let r = try c.host { effects throws(Errno) -> Int64 in
            // Sleep to the end, or to the first timer that would interrupt,
            // or until a host signal arrives.
            var none: [pollfd] = []
            let timer = nextInterruption(p).map { MonotonicInstant(doubleSeconds: $0) }
            let until = min(deadline, timer ?? .never)
            switch HostWake.wait(&none, until: until.isNever ? nil : until) {
            case .hostSignal: return try interrupted(&effects)
            case .failed(let e): return -Int64(e)
            case .ready, .deadline:
                // A timer due before the end interrupts, however late detrec
                // woke: Linux wakes the sleeper at the timer's expiry.
                if let timer, timer < deadline, timer.hasPassed { return try interrupted(&effects) }
                if deadline.hasPassed { return 0 }
                return try interrupted(&effects)
            }
        }
        // A sleep that blocked the recording is paced on replay; one that
        // parked overlapped with other threads, which replay runs anyway.
        if !absolute, c.resumedStart == nil, r == 0 || r == Errno.intr.result {
            var slept = span
            if r == Errno.intr.result, rem != 0, let left = try? c.read(rem, count: 16) {
                slept = slept - Nanoseconds(seconds: Int64(bitPattern: Bytes.u64(left, at: 0)),
                                            nanoseconds: Int64(bitPattern: Bytes.u64(left, at: 8)))
            }
            c.world.pace(seconds: slept.doubleSeconds)
        }
        return .result(r)
    }

    /// pause(2): waits, as rt_sigsuspend with the current mask, until a
    /// signal is delivered (a timer's, another thread's or process's).
    static func pause(_ c: SyscallCall) throws -> SyscallOutcome {
        SignalWait.clear(c)
        let p = c.process
        let wake = SignalWait.deliverable(p, mask: p.signals.mask)
        if p.pendingSignals() & wake == 0 {
            let outcome = try SignalWait.wait(c, wake: wake, restartOn: 0, deadline: nil, file: nil)
            if outcome.result != Errno.intr.result { return outcome }
        }
        return .result(Errno.intr.result)
    }
}
