import Glibc
import KVMUser
import Synchronization

/// Interrupts the vCPU when the guest has computed past a deadline the run
/// loop set (a thread's time slice, a timer's expiry), and notices a guest
/// that stays in user mode for seconds without any exit at all.
///
/// A helper thread looks every 5 ms; when it is time, it kicks the vCPU out
/// (SIGVTALRM, whose handler sets `immediate_exit`), and the run loop asks
/// `takeStall` and decides what to do (docs/preemption.md).
enum Watchdog {
    static let stall = Atomic<Bool>(false)
    /// When to interrupt the guest, CLOCK_MONOTONIC nanoseconds; 0: never.
    static let deadline = Atomic<UInt64>(0)
    nonisolated(unsafe) static var vcpuThread = pthread_t()
    nonisolated(unsafe) static var intervalMicroseconds: UInt32 = 2_000_000
    static let tickMicroseconds: UInt32 = 5_000

    static func start(interval: Double) {
        intervalMicroseconds = UInt32(interval * 1e6)
        vcpuThread = pthread_self()
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in UserMachine.requestInterrupt() }
        sigemptyset(&action.sa_mask)
        action.sa_flags = Int32(SA_RESTART)
        sigaction(SIGVTALRM, &action, nil)
        // The helper thread must never take a signal meant for the guest
        // (Ctrl-C must interrupt the vCPU thread's host call): it starts
        // with every signal blocked.
        var all = sigset_t(), previous = sigset_t()
        sigfillset(&all)
        pthread_sigmask(SIG_SETMASK, &all, &previous)
        defer { pthread_sigmask(SIG_SETMASK, &previous, nil) }
        var thread = pthread_t()
        pthread_create(&thread, nil, { _ in
            var seen = guestEntries.load(ordering: .relaxed)
            var sinceLook: UInt32 = 0
            while true {
                usleep(Watchdog.tickMicroseconds)
                sinceLook += Watchdog.tickMicroseconds
                let due = Watchdog.deadline.load(ordering: .sequentiallyConsistent)
                if due != 0, Watchdog.nowNanoseconds() >= due, inGuest.load(ordering: .sequentiallyConsistent) {
                    Watchdog.deadline.store(0, ordering: .sequentiallyConsistent)
                    Watchdog.kick()
                }
                guard sinceLook >= Watchdog.intervalMicroseconds else { continue }
                sinceLook = 0
                let now = guestEntries.load(ordering: .relaxed)
                if now == seen && inGuest.load(ordering: .sequentiallyConsistent) { Watchdog.kick() }
                seen = now
            }
        }, nil)
        pthread_detach(thread)
    }

    private static func kick() {
        stall.store(true, ordering: .sequentiallyConsistent)
        pthread_kill(vcpuThread, SIGVTALRM)
    }

    static func nowNanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    /// Asks for an interrupt once the guest still runs at `at` (CLOCK_MONOTONIC
    /// seconds); nil cancels it.
    static func interrupt(at: Double?) {
        let ns = at.map { UInt64(max(1, $0 * 1e9)) } ?? 0
        deadline.store(ns, ordering: .sequentiallyConsistent)
    }

    /// True once after a kick.
    static func takeStall() -> Bool {
        stall.exchange(false, ordering: .sequentiallyConsistent)
    }
}
