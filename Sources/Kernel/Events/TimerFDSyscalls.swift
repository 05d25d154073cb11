import Glibc

/// timerfd_create, timerfd_settime and timerfd_gettime. A timerfd is a host
/// timerfd: recording creates, arms and reads it on the host (its expiry
/// count is what `read` returns and logs), and poll sees its readiness as
/// for a pipe; replay takes every result from the trace. A blocking read
/// parks its thread while others can run (`SyscallCall.waitUntilReady`) and
/// is cut short by a timer signal like any read. Clocks, flags,
/// TFD_TIMER_ABSTIME and TFD_TIMER_CANCEL_ON_SET are the host kernel's.
enum TimerFDSyscalls {
    static let TFD_CLOEXEC: Int32 = 0o2000000

    static func register(_ t: inout SyscallTable) {
        t.add(SYS.timerfd_create) { c in
            let clock = c.int(0), flags = c.int(1)
            return try c.newDescriptor(name: "anon_inode:[timerfd]", closeOnExec: flags & TFD_CLOEXEC != 0) { _ in
                hostSyscall(SYS.timerfd_create, Int(clock), Int(flags | TFD_CLOEXEC))
            }
        }
        t.add(SYS.timerfd_settime, passthrough(.fd, .value, .input(32), .outOrNull(32)))
        t.add(SYS.timerfd_gettime, passthrough(.fd, .out(32)))
    }
}
