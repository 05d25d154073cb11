import KVMUser

/// Signal numbers, names, and how CPU exceptions become signals.
public enum Signals {
    public static let SIGHUP: Int32 = 1, SIGINT: Int32 = 2, SIGQUIT: Int32 = 3, SIGILL: Int32 = 4
    public static let SIGTRAP: Int32 = 5, SIGABRT: Int32 = 6, SIGBUS: Int32 = 7, SIGFPE: Int32 = 8
    public static let SIGKILL: Int32 = 9, SIGSEGV: Int32 = 11, SIGPIPE: Int32 = 13, SIGTERM: Int32 = 15

    /// The host signals a recording passes on to the program: Ctrl-C,
    /// Ctrl-\\, kill of detrec, a closed terminal, and the signals other
    /// programs send it for the program to act on (a daemon's pid file
    /// names detrec: `nginx -s reopen` is SIGUSR1, a terminal's resize
    /// SIGWINCH). Not passed on: the ones detrec's own faults raise (SEGV,
    /// BUS, ILL, FPE, TRAP, ABRT, SYS, XFSZ, XCPU), the ones it uses
    /// (SIGVTALRM: the watchdog's kick; SIGCHLD; SIGPIPE, ignored so a write
    /// returns EPIPE), job control of detrec itself (STOP, TSTP, TTIN,
    /// TTOU, CONT), SIGKILL, SIGIO/SIGURG (host descriptors' owner is
    /// detrec), and real-time signals (they queue; `outsideQueue` does not).
    public static let fromHost: [Int32] = [SIGINT, SIGTERM, SIGHUP, SIGQUIT,
                                           10, 12, 14, 28, 30]   // USR1 USR2 ALRM WINCH PWR
    /// The ones a user sends to stop a recording (Ctrl-C, kill, a closed
    /// terminal): sent again before the program took the first, or after
    /// the first process ended, they end the recording as they would end
    /// the program. Any other is one pending signal, as Linux keeps it.
    public static let endRecordingWhenRepeated: Set<Int32> = [SIGINT, SIGTERM, SIGHUP, SIGQUIT]

    public static func name(_ signal: Int32) -> String {
        let names: [Int32: String] = [1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 4: "SIGILL", 5: "SIGTRAP",
                                      6: "SIGABRT", 7: "SIGBUS", 8: "SIGFPE", 9: "SIGKILL", 10: "SIGUSR1",
                                      11: "SIGSEGV", 12: "SIGUSR2", 13: "SIGPIPE", 14: "SIGALRM", 15: "SIGTERM"]
        return names[signal] ?? "signal \(signal)"
    }

    // si_code values (asm-generic/siginfo.h).
    public static let SEGV_MAPERR: Int32 = 1, SEGV_ACCERR: Int32 = 2
    public static let ILL_ILLOPN: Int32 = 2, FPE_INTDIV: Int32 = 1, FPE_FLTINV: Int32 = 7
    public static let BUS_ADRALN: Int32 = 1, BUS_ADRERR: Int32 = 2, TRAP_BRKPT: Int32 = 1, TRAP_TRACE: Int32 = 2
    public static let SI_KERNEL: Int32 = 0x80, SI_USER: Int32 = 0, SI_TKILL: Int32 = -6
    /// The si_code detrec logs for a signal that reached the recorder from
    /// outside (Ctrl-C, kill of detrec): the guest died of it there, and a
    /// replay ends at the same syscall. Not a Linux value.
    public static let fromOutside: Int32 = 0x4000

    /// The signal Linux sends for an exception in user mode (arch/x86/kernel/traps.c,
    /// and mm/memory.c for a page beyond a mapped file's end); `page` is what a
    /// page fault touched.
    public static func forException(_ e: GuestException, page: FaultedPage) -> FatalSignal {
        let (signal, code, address): (Int32, Int32, UInt64)
        switch e.vector {
        case GuestException.divideError: (signal, code, address) = (SIGFPE, FPE_INTDIV, e.rip)
        case GuestException.debug: (signal, code, address) = (SIGTRAP, TRAP_TRACE, e.rip)
        case GuestException.breakpoint: (signal, code, address) = (SIGTRAP, SI_KERNEL, 0)
        case GuestException.invalidOpcode: (signal, code, address) = (SIGILL, ILL_ILLOPN, e.rip)
        case GuestException.pageFault:
            switch page {
            case .unmapped: (signal, code, address) = (SIGSEGV, SEGV_MAPERR, e.address)
            case .refused: (signal, code, address) = (SIGSEGV, SEGV_ACCERR, e.address)
            case .beyondFileEnd: (signal, code, address) = (SIGBUS, BUS_ADRERR, e.address)
            }
        case GuestException.alignmentCheck: (signal, code, address) = (SIGBUS, BUS_ADRALN, 0)
        case GuestException.x87, GuestException.simd: (signal, code, address) = (SIGFPE, FPE_FLTINV, e.rip)
        default: (signal, code, address) = (SIGSEGV, SI_KERNEL, 0)   // #GP, #SS, #NP, ...
        }
        return FatalSignal(signal: signal, code: code, rip: e.rip, address: address)
    }
}

/// What a page fault touched, as Linux's fault handler finds it.
public enum FaultedPage: Sendable {
    /// Nothing is mapped there: SEGV_MAPERR.
    case unmapped
    /// The mapping does not allow the access: SEGV_ACCERR.
    case refused
    /// A page of a file mapping wholly past the end of the file: SIGBUS, BUS_ADRERR.
    case beyondFileEnd
}
