/// Syscalls whose effect detrec cannot provide yet and that a program
/// cannot do without: returning ENOSYS would leave it waiting forever for a
/// signal that never comes (alarm then spin) or silently wrong. These stop
/// the run with a message naming the syscall and the guest RIP. (None are
/// left: timer_create, rt_sigsuspend, rt_sigtimedwait, signalfd and timerfd
/// have their own handlers now.)
enum Unsupported {
    static let needsSignalDelivery: [UInt64] = []

    /// Why some calls that have no handler stay refused (the others say
    /// "not implemented").
    static let reasons: [(UInt64, String)] = [
        (SYS.io_uring_setup, "io_uring would move I/O out of the syscall log: ENOSYS, and programs fall back to plain calls"),
        (SYS.io_uring_enter, "no io_uring instance can exist"),
        (SYS.io_uring_register, "no io_uring instance can exist"),
        (SYS.perf_event_open, "no performance counters on the vCPU"),
    ]

    static func register(_ t: inout SyscallTable) {
        for (n, reason) in reasons { t.refuse(n, reason) }
        for n in needsSignalDelivery {
            t.add(n) { c in
                throw RunStopped("\(SyscallNames.name(c.number)) needs asynchronous signal delivery, which detrec does not support yet (guest rip 0x\(String(c.rip, radix: 16)))")
            }
        }
    }
}
