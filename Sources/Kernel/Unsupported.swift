/// Syscalls whose effect detrec cannot provide yet and that a program
/// cannot do without: returning ENOSYS would leave it waiting forever for a
/// signal that never comes (alarm then spin) or silently wrong. These stop
/// the run with a message naming the syscall and the guest RIP. (None are
/// left: timer_create, rt_sigsuspend, rt_sigtimedwait, signalfd and timerfd
/// have their own handlers now.)
enum Unsupported {
    static let needsSignalDelivery: [UInt64] = []

    static func register(_ t: inout SyscallTable) {
        for n in needsSignalDelivery {
            t.add(n) { c in
                throw RunStopped("\(SyscallNames.name(c.number)) needs asynchronous signal delivery, which detrec does not support yet (guest rip 0x\(String(c.rip, radix: 16)))")
            }
        }
    }
}
