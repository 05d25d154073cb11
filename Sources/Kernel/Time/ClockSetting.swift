import Glibc

/// clock_settime and settimeofday, as kernel/time/posix-timers.c and
/// time.c check them. detrec never sets a host clock for a recording (the
/// host's time is not the guest's to change, and replay must touch
/// nothing), so where Linux would set one the call is EPERM, as for a
/// caller without CAP_SYS_TIME, with a report when the recording has the
/// capability. Every error Linux finds first is Linux's.
enum ClockSetting {
    static let CLOCK_REALTIME: Int32 = 0
    static let capSysTime = 25
    /// KTIME_SEC_MAX less 30 years of uptime (TIME_SETTOD_SEC_MAX).
    static let settableSeconds: Int64 = 9_223_372_036 - 946_080_000

    static func register(_ t: inout SyscallTable) {
        t.add(SYS.clock_settime, .host, note: "never sets a clock: EPERM (reported with CAP_SYS_TIME) after Linux's checks", clockSettime)
        t.add(SYS.settimeofday, .host, note: "never sets the time or time zone: EPERM (reported with CAP_SYS_TIME) after Linux's checks", settimeofday)
    }

    /// timespec64_valid_settod.
    static func settable(seconds: Int64, nanoseconds: Int64) -> Bool {
        seconds >= 0 && seconds < settableSeconds && nanoseconds >= 0 && nanoseconds < 1_000_000_000
    }

    /// The last step, security_settime64: EPERM either way; reported when
    /// Linux would have set it.
    static func refuse(_ c: SyscallCall, _ what: String) throws -> Int64 {
        let process = c.process, rip = c.rip, number = c.number
        let capable = process.current.credentials.capable(capSysTime)
        return try c.host { _ in
            if capable {
                process.report("\(SyscallNames.name(number)) would set \(what), which detrec does not do; returning EPERM",
                               key: 0x3_0000_0000 | number, rip: rip)
            }
            return Errno.perm.result
        }
    }

    static func clockSettime(_ c: SyscallCall) throws -> Int64 {
        let id = c.int(0)
        // clockid_to_kclock: only CLOCK_REALTIME, the CPU clocks of a pid
        // or tid and clock descriptors have a clock_set.
        guard id == CLOCK_REALTIME || (id < 0 && id & 7 != 7) else { throw Errno.inval }
        let raw = try c.read(c.arg(1), count: 16)
        let seconds = Int64(bitPattern: Bytes.u64(raw, at: 0)), nanoseconds = Int64(bitPattern: Bytes.u64(raw, at: 8))
        if id == CLOCK_REALTIME {
            guard settable(seconds: seconds, nanoseconds: nanoseconds) else { throw Errno.inval }
            return try refuse(c, "CLOCK_REALTIME")
        }
        let host = try CPUClocks.hostClock(c, id)
        if id & 7 == 3 {
            // A descriptor that is no posix clock is EINVAL (get_clock_desc);
            // one that is (a PTP clock) is not set.
            return try c.host { _ in
                var now = timespec()
                guard clock_gettime(clockid_t(host), &now) == 0 else { return Errno.inval.result }
                return Errno.perm.result
            }
        }
        // posix_cpu_clock_set: a CPU clock is never set, once the pid or tid
        // is known to exist.
        return try c.host { _ in
            var now = timespec()
            guard clock_gettime(clockid_t(host), &now) == 0 else { return Errno.inval.result }
            return Errno.perm.result
        }
    }

    static func settimeofday(_ c: SyscallCall) throws -> Int64 {
        let tv = c.arg(0), tz = c.arg(1)
        // The syscall's own checks (the microseconds, both reads), then
        // do_sys_settimeofday64's (the time's range, the capability).
        var time: (seconds: Int64, nanoseconds: Int64)?
        if tv != 0 {
            let raw = try c.read(tv, count: 16)
            let seconds = Int64(bitPattern: Bytes.u64(raw, at: 0)), microseconds = Int64(bitPattern: Bytes.u64(raw, at: 8))
            guard microseconds >= 0 && microseconds <= 1_000_000 else { throw Errno.inval }
            time = (seconds, microseconds * 1000)
        }
        if tz != 0 { _ = try c.read(tz, count: 8) }
        if let time, !settable(seconds: time.seconds, nanoseconds: time.nanoseconds) { throw Errno.inval }
        if tv == 0 && tz == 0 {
            // Nothing to set: allowed with the capability.
            return c.process.current.credentials.capable(capSysTime) ? 0 : Errno.perm.result
        }
        return try refuse(c, tv != 0 ? "the time" : "the kernel's time zone")
    }
}
