import Glibc
import Kernel
import KVMUser

/// Signals that reach detrec while it records (Ctrl-C, kill, a closed
/// terminal) are the guest's: they end it as they would end the program,
/// and the trace records where. The handler only sets a flag and kicks the
/// vCPU out of KVM_RUN; the run loop does the rest.
enum HostSignals {
    nonisolated(unsafe) static var pending: Int32 = 0

    static let forwarded = Signals.fromHost

    static func install() {
        HostWake.install()
        for s in forwarded {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { signal in
                HostSignals.pending = signal
                UserMachine.requestInterrupt()
                HostWake.notify()
            }
            sigemptyset(&action.sa_mask)
            action.sa_flags = 0   // no SA_RESTART: a blocked host read returns EINTR
            sigaction(s, &action, nil)
        }
        // A parent may have started detrec with them blocked (the mask
        // survives exec): they must reach it.
        var set = sigset_t()
        sigemptyset(&set)
        for s in forwarded { sigaddset(&set, s) }
        sigprocmask(SIG_UNBLOCK, &set, nil)
        // A write to a closed pipe must return EPIPE to the guest, not kill detrec.
        signal(SIGPIPE, SIG_IGN)
    }

    static func take() -> Int32? {
        let s = pending
        guard s != 0 else { return nil }
        pending = 0
        HostWake.drain()
        return s
    }
}
