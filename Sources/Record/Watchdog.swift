import Glibc
import KVMUser
import Synchronization

/// Notices a guest thread that computes for a long time without any exit
/// to detrec while other threads wait for it. Without a PMU detrec cannot
/// preempt such a thread at a point replay can find again, so the
/// recording stops with a message instead of hanging (spin_handoff).
///
/// A helper thread wakes every `interval` seconds; when the vCPU has stayed
/// in guest mode since its last look, it kicks the vCPU out (SIGVTALRM,
/// whose handler sets `immediate_exit`), and the run loop asks `stalled`.
enum Watchdog {
    static let stall = Atomic<Bool>(false)
    nonisolated(unsafe) static var vcpuThread = pthread_t()
    nonisolated(unsafe) static var intervalMicroseconds: UInt32 = 2_000_000

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
            while true {
                usleep(Watchdog.intervalMicroseconds)
                let now = guestEntries.load(ordering: .relaxed)
                if now == seen && inGuest.load(ordering: .sequentiallyConsistent) {
                    Watchdog.stall.store(true, ordering: .sequentiallyConsistent)
                    pthread_kill(Watchdog.vcpuThread, SIGVTALRM)
                }
                seen = now
            }
        }, nil)
        pthread_detach(thread)
    }

    /// True once after the watchdog saw the guest run a whole interval.
    static func takeStall() -> Bool {
        stall.exchange(false, ordering: .sequentiallyConsistent)
    }
}
