import Glibc
import Kernel
import KVMUser

/// Signals that reach detrec while it records (Ctrl-C, kill, a closed
/// terminal, a daemon's `kill -USR1 $(cat pidfile)`) are the guest's: they
/// end it as they would end the program, or its handler takes them, and the
/// trace records where. The handler only marks the signal and kicks the
/// vCPU out of KVM_RUN; the run loop does the rest.
enum HostSignals {
    /// Set when any signal is marked: the run loop's cheap check.
    nonisolated(unsafe) static var pending: Int32 = 0
    /// One flag per signal number: two different signals arriving in one
    /// slice are both taken (one variable kept only the last).
    nonisolated(unsafe) private static var marked = UnsafeMutablePointer<Int32>.allocate(capacity: 65)

    static let forwarded = Signals.fromHost

    static func install() {
        HostWake.install()
        marked.initialize(repeating: 0, count: 65)
        for s in forwarded {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { signal in
                guard signal > 0 && signal < 65 else { return }
                HostSignals.marked[Int(signal)] = 1
                HostSignals.pending = 1
                UserMachine.requestInterrupt()
                HostWake.notify()
            }
            sigemptyset(&action.sa_mask)
            action.sa_flags = 0   // no SA_RESTART: a blocked host read returns EINTR
            sigaction(s, &action, nil)
        }
        // A parent may have started detrec with them blocked or ignored (the
        // mask survives exec, and so does SIG_IGN, which the sigaction above
        // replaced): they must reach it.
        var set = sigset_t()
        sigemptyset(&set)
        for s in forwarded { sigaddset(&set, s) }
        sigprocmask(SIG_UNBLOCK, &set, nil)
        // A write to a closed pipe must return EPIPE to the guest, not kill detrec.
        signal(SIGPIPE, SIG_IGN)
    }

    /// The lowest marked signal. The wake pipe is emptied only when none is
    /// left, so a host wait still wakes for the others.
    static func take() -> Int32? {
        guard pending != 0 else { return nil }
        pending = 0
        var found: Int32?
        for s in forwarded where marked[Int(s)] != 0 {
            if found == nil {
                marked[Int(s)] = 0
                found = s
            } else {
                pending = 1
            }
        }
        if pending == 0 { HostWake.drain() }
        return found
    }
}
