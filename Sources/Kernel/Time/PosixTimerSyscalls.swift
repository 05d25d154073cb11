import Glibc

/// A POSIX timer (timer_create). Which timers exist, how they notify and
/// their overrun counts are guest state, kept alike in record and replay;
/// `deadline` and `interval` are host CLOCK_MONOTONIC time, set and read
/// inside host calls, so they exist while recording only.
public struct PosixTimer {
    public let id: Int32
    public let clock: Int32
    /// SIGEV_SIGNAL (0), SIGEV_NONE (1), SIGEV_THREAD (2, which the kernel
    /// treats as SIGEV_SIGNAL), SIGEV_THREAD_ID (4).
    public let notify: Int32
    public let signal: Int32
    /// sigev_value, delivered as si_value.
    public let value: UInt64
    public var deadline: Double?
    public var interval: Double = 0
    /// Expiries while its signal was already queued, and the count the
    /// last delivered signal carried (timer_getoverrun).
    public var overrun: Int32 = 0
    public var overrunLast: Int32 = 0
    /// Its signal is pending and not yet dequeued.
    public var signalQueued = false
    /// SIGEV_THREAD_ID's thread: the signal is pending for it alone.
    public var thread: Int32?

    public static let SIGEV_SIGNAL: Int32 = 0, SIGEV_NONE: Int32 = 1, SIGEV_THREAD: Int32 = 2, SIGEV_THREAD_ID: Int32 = 4
    public static let SI_TIMER: Int32 = -2
    /// Linux clamps overrun counts at DELAYTIMER_MAX.
    static let delayTimerMax: Int32 = Int32.max
    /// At most this many expiries of one timer are logged at one syscall
    /// (a 1 µs timer behind a long computation): more are dropped.
    public static let maxExpiriesPerCheck = 1000
    /// Timer ids stay below this, so that an expiry encodes into an Int32.
    static let idLimit: Int32 = 1 << 22

    /// Whether its expiry sends a signal.
    public var signals: Bool { notify != PosixTimer.SIGEV_NONE }

    /// An expiry as `Process.dueTimerSignals` reports it and the trace's
    /// `signal` event carries it: `(id + 1) << 8 | signal`, always above 64,
    /// so it never reads as a plain signal number.
    public var encoded: Int32 { (id + 1) << 8 | signal }

    public static func decode(_ encoded: Int32) -> (id: Int32, signal: Int32) {
        ((encoded >> 8) - 1, encoded & 0xff)
    }
}

/// timer_create, timer_settime, timer_gettime, timer_getoverrun and
/// timer_delete. Expiry shares the interval timers' machinery:
/// `Process.dueTimerSignals` reports each due expiry after a syscall (a
/// `signal` event in the trace), and `expired` turns it into the signal
/// with its SI_TIMER siginfo, or an overrun when that signal is still
/// queued. CLOCK_PROCESS_CPUTIME_ID and CLOCK_THREAD_CPUTIME_ID timers run
/// on wall-clock time (an approximation, like ITIMER_VIRTUAL's).
/// SIGEV_THREAD_ID's signal is pending for its thread alone.
enum PosixTimerSyscalls {
    static func register(_ t: inout SyscallTable) {
        t.add(SYS.timer_create, create)
        t.add(SYS.timer_settime, settime)
        t.add(SYS.timer_gettime, gettime)
        t.add(SYS.timer_getoverrun) { c in
            guard let i = index(c.process, c.int(0)) else { throw Errno.inval }
            return Int64(c.process.posixTimers[i].overrunLast)
        }
        t.add(SYS.timer_delete) { c in
            guard let i = index(c.process, c.int(0)) else { throw Errno.inval }
            c.process.posixTimers.remove(at: i)
            return 0
        }
    }

    static func index(_ p: Process, _ id: Int32) -> Int? { p.posixTimers.firstIndex { $0.id == id } }

    /// The host clock a timer's absolute times are read on, or nil when
    /// Linux has no timer for `clock` (errno to return).
    static func hostClock(_ c: SyscallCall, _ clock: Int32) throws(Errno) -> Int32 {
        switch clock {
        case CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_BOOTTIME, CLOCK_TAI, CLOCK_PROCESS_CPUTIME_ID, CLOCK_THREAD_CPUTIME_ID:
            return clock
        case CLOCK_REALTIME_ALARM, CLOCK_BOOTTIME_ALARM:
            c.process.report("timer_create on an alarm clock needs CAP_WAKE_ALARM and a wake-up device; returning EOPNOTSUPP", key: 0x6_0000_0000 | UInt64(UInt32(bitPattern: clock)), rip: c.rip)
            throw .notsup
        case CLOCK_MONOTONIC_RAW, CLOCK_REALTIME_COARSE, CLOCK_MONOTONIC_COARSE:
            throw .notsup
        case ..<0:
            // A CPU-time clock (MAKE_PROCESS_CPUCLOCK / MAKE_THREAD_CPUCLOCK):
            // glibc names the caller's own as pid 0. Others' are not supported.
            let pid = ~(clock >> 3), thread = clock & 4 != 0
            guard clock & 3 != 3 else { throw .inval }
            let own = pid == 0 || (thread ? c.process.thread(pid) != nil : pid == c.process.pid)
            guard own else {
                c.process.report("timer_create on another task's CPU clock is not supported; returning EINVAL", key: 0x6_0000_0000 | UInt64(UInt32(bitPattern: clock)), rip: c.rip)
                throw .inval
            }
            return thread ? CLOCK_THREAD_CPUTIME_ID : CLOCK_PROCESS_CPUTIME_ID
        default:
            throw .inval
        }
    }

    static func create(_ c: SyscallCall) throws -> Int64 {
        let clock = c.int(0), eventAddress = c.arg(1), idAddress = c.arg(2)
        _ = try hostClock(c, clock)
        let p = c.process
        var notify = PosixTimer.SIGEV_SIGNAL, signal: Int32 = 14, value: UInt64?, thread: Int32?
        if eventAddress != 0 {
            let event = try c.read(eventAddress, count: 64)
            value = Bytes.u64(event, at: 0)
            signal = Int32(bitPattern: Bytes.u32(event, at: 8))
            notify = Int32(bitPattern: Bytes.u32(event, at: 12))
            let target = Int32(bitPattern: Bytes.u32(event, at: 16))
            switch notify {
            case PosixTimer.SIGEV_THREAD_ID:
                guard p.thread(target) != nil else { throw Errno.inval }
                thread = target
                fallthrough
            case PosixTimer.SIGEV_SIGNAL, PosixTimer.SIGEV_THREAD:
                guard signal > 0, signal <= 64 else { throw Errno.inval }
            case PosixTimer.SIGEV_NONE:
                signal = 0
            default:
                throw Errno.inval
            }
        }
        try c.checkWritable(idAddress, count: 4)
        guard p.posixTimers.count < 1 << 16 else { throw Errno.again }
        // Linux hands out increasing ids; they wrap, skipping ones in use.
        var id = p.nextPosixTimerID
        while index(p, id) != nil { id = (id + 1) % PosixTimer.idLimit }
        p.nextPosixTimerID = (id + 1) % PosixTimer.idLimit
        p.posixTimers.append(PosixTimer(id: id, clock: clock, notify: notify, signal: signal, value: value ?? UInt64(UInt32(bitPattern: id)),
                                      thread: thread))
        try c.writeValue(idAddress, id)
        return 0
    }

    static func clockNow(_ clock: Int32) -> Double {
        var ts = Glibc.timespec()
        clock_gettime(clock, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// The timer's struct itimerspec (interval, time to the next expiry),
    /// read on the host clock (recording only).
    static func current(_ t: PosixTimer) -> [UInt8] {
        guard var deadline = t.deadline else { return [UInt8](repeating: 0, count: 32) }
        let now = Scheduler.monotonicNow()
        if deadline <= now {
            // Expired: a periodic timer's next expiry; a one-shot's is none.
            guard t.interval > 0 else { return TimerSyscalls.timespecBytes(t.interval) + TimerSyscalls.timespecBytes(0) }
            deadline += (((now - deadline) / t.interval).rounded(.down) + 1) * t.interval
        }
        return TimerSyscalls.timespecBytes(t.interval) + TimerSyscalls.timespecBytes(deadline - now)
    }

    static func settime(_ c: SyscallCall) throws -> Int64 {
        let p = c.process, id = c.int(0)
        guard let i = index(p, id) else { throw Errno.inval }
        guard c.arg(2) != 0 else { throw Errno.inval }
        let raw = try c.read(c.arg(2), count: 32)
        let interval = try TimerSyscalls.parseTimespec(raw, at: 0), value = try TimerSyscalls.parseTimespec(raw, at: 16)
        let old = c.arg(3)
        if old != 0 { try c.checkWritable(old, count: 32) }
        // Linux looks at TIMER_ABSTIME only.
        let absolute = c.int(1) & TIMER_ABSTIME != 0
        let clock = try hostClock(c, p.posixTimers[i].clock)
        p.posixTimers[i].overrunLast = 0
        return try c.host { effects throws(Errno) -> Int64 in
            if old != 0 { try effects.write(old, current(p.posixTimers[i])) }
            if value == 0 {
                p.posixTimers[i].deadline = nil
            } else {
                let now = Scheduler.monotonicNow()
                p.posixTimers[i].deadline = absolute ? now + (value - clockNow(clock)) : now + value
            }
            p.posixTimers[i].interval = value == 0 ? 0 : interval
            return 0
        }
    }

    static func gettime(_ c: SyscallCall) throws -> Int64 {
        let p = c.process
        guard let i = index(p, c.int(0)) else { throw Errno.inval }
        let out = c.arg(1)
        try c.checkWritable(out, count: 32)
        return try c.host { effects throws(Errno) -> Int64 in
            try effects.write(out, current(p.posixTimers[i]))
            return 0
        }
    }

    /// A timer expired (a `signal` event, record and replay alike): its
    /// signal becomes pending with an SI_TIMER siginfo, or counts as an
    /// overrun while the previous one is still queued.
    static func expired(_ p: Process, encoded: Int32) {
        let (id, signal) = PosixTimer.decode(encoded)
        guard let i = index(p, id), p.posixTimers[i].signal == signal, signal > 0, signal <= 64 else {
            // Expiries come from the armed timers (`dueTimerSignals`), so
            // one that names none is detrec's error: said, not swallowed.
            p.report("a POSIX timer expiry names no timer (id \(id), signal \(signal)); dropped",
                     key: 0xA_0000_0000 | UInt64(UInt32(bitPattern: encoded)), rip: p.machine.registers.rip)
            return
        }
        if p.posixTimers[i].signalQueued {
            if p.posixTimers[i].overrun < PosixTimer.delayTimerMax { p.posixTimers[i].overrun += 1 }
            return
        }
        let t = p.posixTimers[i]
        var info = Bytes.i32(signal) + Bytes.i32(0) + Bytes.i32(PosixTimer.SI_TIMER) + Bytes.i32(0)
        info += Bytes.i32(id) + Bytes.i32(0) + Bytes.u64(t.value)
        info += [UInt8](repeating: 0, count: 128 - info.count)
        // A thread that has ended leaves its timer's signal to the process.
        let target = t.thread.flatMap { p.thread($0) }
        func instances() -> Int {
            p.signals.shared.count(of: signal) + (target?.pending.count(of: signal) ?? 0)
        }
        let before = instances()
        SignalDelivery.generate(p, signal: signal, info: info, to: target)
        if instances() > before {
            p.posixTimers[i].signalQueued = true
            p.posixTimers[i].overrun = 0
        }
    }

    /// A signal was dequeued: if it is a timer's, its siginfo gets the
    /// overrun count, which timer_getoverrun then reports.
    static func dequeued(_ p: Process, signal: Int32, info: inout [UInt8]) {
        guard Int32(bitPattern: Bytes.u32(info, at: 8)) == PosixTimer.SI_TIMER else { return }
        let id = Int32(bitPattern: Bytes.u32(info, at: 16))
        guard let i = index(p, id), p.posixTimers[i].signal == signal, p.posixTimers[i].signalQueued else { return }
        let overrun = p.posixTimers[i].overrun
        for (k, b) in Bytes.i32(overrun).enumerated() { info[20 + k] = b }
        p.posixTimers[i].overrunLast = overrun
        p.posixTimers[i].overrun = 0
        p.posixTimers[i].signalQueued = false
    }
}
