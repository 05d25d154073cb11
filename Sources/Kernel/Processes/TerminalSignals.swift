import Glibc

/// The signals a pseudo-terminal raises when its master is written (a
/// terminal emulator, expect, a test driving a program through forkpty):
/// with ISIG, the slave's VINTR, VQUIT and VSUSP characters are not input
/// but SIGINT, SIGQUIT and SIGTSTP to the terminal's foreground process
/// group (n_tty_receive_char_special, isig). The host's line discipline
/// still consumes the character and flushes, but it knows no foreground
/// group of the recording: the session that made the slave its
/// controlling terminal is emulated (`SessionTerminals`), so the signal is
/// the emulation's to send. The recording reads the slave's termios after
/// the write and carries the signals the written bytes raise, with the
/// slave's device; replay sends the same ones at the same write.
enum TerminalSignals {
    /// Whether writes to `file` may raise them (a pseudo-terminal master,
    /// by the path it was opened as, in record and replay alike).
    static func mayRaise(_ file: OpenFile) -> Bool {
        file.path == "/dev/ptmx" || file.path.hasSuffix("/pts/ptmx")
    }

    /// Recording, in the write's host call: the signals that `written`
    /// raises on the master open on `fd`, carried with the slave's device.
    static func note(_ fd: Int32, _ written: ArraySlice<UInt8>, _ effects: inout HostEffects) {
        guard !written.isEmpty else { return }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFCHR, UInt64(st.st_rdev) == TerminalFacts.ptmx,
              let device = TerminalFacts.slaveDevice(ofMaster: fd) else { return }
        var t = termios()
        guard tcgetattr(fd, &t) == 0, t.c_lflag & tcflag_t(ISIG) != 0 else { return }
        let cc = withUnsafeBytes(of: t.c_cc) { Array($0) }
        guard cc.count > Int(VSUSP), cc.count > Int(VLNEXT) else { return }
        let signals = raised(by: written, intr: cc[Int(VINTR)], quit: cc[Int(VQUIT)], suspend: cc[Int(VSUSP)],
                             literalNext: t.c_lflag & tcflag_t(IEXTEN) != 0 ? cc[Int(VLNEXT)] : 0)
        guard !signals.isEmpty else { return }
        effects.carry(Bytes.u64(device) + signals)
    }

    /// The signals the bytes raise, in order. A character of value 0 is
    /// _POSIX_VDISABLE (that function is off); after VLNEXT (with IEXTEN)
    /// the next byte is taken literally.
    static func raised(by bytes: ArraySlice<UInt8>, intr: UInt8, quit: UInt8, suspend: UInt8, literalNext: UInt8) -> [UInt8] {
        var out: [UInt8] = []
        var literal = false
        for b in bytes {
            if literal { literal = false; continue }
            if literalNext != 0 && b == literalNext { literal = true; continue }
            if intr != 0 && b == intr { out.append(UInt8(Signals.SIGINT)) }
            else if quit != 0 && b == quit { out.append(UInt8(Signals.SIGQUIT)) }
            else if suspend != 0 && b == suspend { out.append(20) }   // SIGTSTP
        }
        return out
    }

    /// Record and replay, after the write: each carried signal goes to the
    /// foreground group of the session whose terminal the slave is, as
    /// the kernel sends it (SI_KERNEL, no permission check). A slave no
    /// recorded session controls has no group here: nothing is sent.
    static func send(_ c: SyscallCall, _ outcome: HostOutcome) throws {
        guard let raw = outcome.carried.first else { return }
        guard raw.count > 8 else { throw RunStopped("the trace is damaged: a terminal write carries \(raw.count) bytes") }
        let family: ProcessFamily = c.process.family
        guard let control = family.sessionTerminals.control(of: Bytes.u64(raw, at: 0)), control.foreground > 0 else { return }
        for signal in raw.dropFirst(8) {
            let info = SignalDelivery.siginfo(signal: Int32(signal), code: Signals.SI_KERNEL)
            for p in ProcessGroups.members(family, control.foreground) {
                SignalDelivery.generate(p, signal: Int32(signal), info: info)
            }
        }
    }
}
