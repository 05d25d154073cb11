import Glibc

/// The controlling terminals of the sessions the recording makes (setsid,
/// then TIOCSCTTY on a pseudo-terminal, as forkpty, tmux, screen and
/// script do). Every guest process is one host process, which cannot lead
/// those sessions on the host, so Linux's tty->ctrl.session and
/// tty->ctrl.pgrp are kept here, per terminal device, and the job-control
/// ioctls of such a session are answered from them
/// (drivers/tty/tty_jobctrl.c). ^C, ^\\ and ^Z written into the master
/// signal the foreground group (`TerminalSignals`). Not emulated: SIGTTOU,
/// and the hang-up when the leader exits.
struct SessionTerminals {
    struct Control: Equatable {
        var session: Int32
        var foreground: Int32
    }
    /// By terminal device (st_rdev of the slave side).
    private(set) var byDevice: [UInt64: Control] = [:]

    func control(of device: UInt64) -> Control? { byDevice[device] }

    /// The session's terminal, if it has one.
    func device(of session: Int32) -> UInt64? {
        byDevice.first { $0.value.session == session }?.key
    }

    mutating func set(_ device: UInt64, _ control: Control) {
        // A session has one controlling terminal (a steal clears the old one).
        byDevice = byDevice.filter { $0.value.session != control.session }
        byDevice[device] = control
    }

    mutating func setForeground(_ device: UInt64, _ group: Int32) {
        byDevice[device]?.foreground = group
    }

    mutating func clear(session: Int32) {
        byDevice = byDevice.filter { $0.value.session != session }
    }
}

/// What the host says about a descriptor a job-control ioctl names, read
/// in one host call and carried in the trace (`HostEffects.carry`), so
/// that record and replay decide the same.
struct TerminalFacts {
    /// It is the host's controlling terminal: detrec's own session's.
    var hostControlling: Bool
    var isTerminal: Bool
    /// A pseudo-terminal master (/dev/ptmx): `device` is then its slave's,
    /// as Linux's ioctls on a master act on the slave's job control.
    var isMaster: Bool
    /// CAP_SYS_ADMIN, which lets TIOCSCTTY(1) take another session's terminal.
    var sysAdmin: Bool
    var device: UInt64
    /// The host's foreground group and session of its controlling
    /// terminal (when `hostControlling`).
    var hostGroup: Int32
    var hostSession: Int32

    static let ptmx = device(major: 5, minor: 2)

    /// glibc's makedev: a dev_t from its major and minor numbers.
    static func device(major: UInt32, minor: UInt32) -> UInt64 {
        let ma = UInt64(major), mi = UInt64(minor)
        return (ma & 0xffff_f000) << 32 | (ma & 0xfff) << 8 | (mi & 0xffff_ff00) << 12 | (mi & 0xff)
    }

    /// The device of the slave of the pseudo-terminal master open on `fd`
    /// (TIOCGPTN), nil when it is none.
    static func slaveDevice(ofMaster fd: Int32) -> UInt64? {
        var n: UInt32 = 0
        let TIOCGPTN: UInt32 = 0x8004_5430
        guard withUnsafeMutablePointer(to: &n, { hostSyscall(SYS.ioctl, Int(fd), Int(TIOCGPTN), Int(bitPattern: $0)) }) == 0 else { return nil }
        // Unix98 slaves are majors 136-143 (UNIX98_PTY_MAJOR_COUNT).
        return device(major: 136 + n / 256, minor: n % 256)
    }

    /// 0 and the facts, or the host's -errno for the descriptor.
    static func read(_ c: SyscallCall) throws -> (Int64, TerminalFacts?) {
        let file = try c.file(0)
        let outcome = try c.hostOutcome { effects throws(Errno) -> Int64 in
            guard let h = file.hostFD else { throw .badf }
            var st = stat()
            guard fstat(h, &st) == 0 else { return -Int64(errno) }
            var sid: Int32 = 0, pgrp: Int32 = 0
            let controlling = withUnsafeMutablePointer(to: &sid) {
                hostSyscall(SYS.ioctl, Int(h), Int(IoctlRequests.TIOCGSID), Int(bitPattern: $0))
            } == 0
            if controlling {
                _ = withUnsafeMutablePointer(to: &pgrp) { hostSyscall(SYS.ioctl, Int(h), Int(IoctlRequests.TIOCGPGRP), Int(bitPattern: $0)) }
            }
            let terminal = isatty(h) == 1
            var device = UInt64(st.st_rdev)
            var master = false
            if st.st_mode & S_IFMT == S_IFCHR, device == ptmx, let slave = slaveDevice(ofMaster: h) {
                device = slave
                master = true
            }
            // The trace keeps a byte for it; the caller's emulated credentials decide.
            let admin = ProcessSyscalls.hasCapability(c, Credentials.CAP_SYS_ADMIN)
            effects.carry([controlling ? 1 : 0, terminal ? 1 : 0, master ? 1 : 0, admin ? 1 : 0] + Bytes.u64(device)
                         + Bytes.i32(pgrp) + Bytes.i32(sid))
            return 0
        }
        guard outcome.result == 0 else { return (outcome.result, nil) }
        let raw = outcome.carried.first ?? []
        guard raw.count == 20 else { throw RunStopped("the trace is damaged: a terminal ioctl carries \(raw.count) bytes, not 20") }
        return (0, TerminalFacts(hostControlling: raw[0] != 0, isTerminal: raw[1] != 0, isMaster: raw[2] != 0,
                                 sysAdmin: raw[3] != 0, device: Bytes.u64(raw, at: 4),
                                 hostGroup: Int32(bitPattern: Bytes.u32(raw, at: 12)),
                                 hostSession: Int32(bitPattern: Bytes.u32(raw, at: 16))))
    }
}

/// The job-control ioctls on a terminal that is not the host's
/// controlling terminal: its controlling session, if any, is one the
/// recording made (`SessionTerminals`), under tty_jobctrl.c's rules.
/// Not emulated: a background group's SIGTTOU (and EIO/ENOTTY when its
/// group is orphaned) from TIOCSPGRP.
enum SessionTerminalControl {
    static func ioctl(_ c: SyscallCall, request: UInt32, _ facts: TerminalFacts, group: Int32) throws -> Int64 {
        let process = c.process
        let family: ProcessFamily = process.family
        let own = process.leftTerminal ? nil : family.sessionTerminals.device(of: process.session)
        let control = family.sessionTerminals.control(of: facts.device)
        let mine = own == facts.device
        switch request {
        case IoctlRequests.TIOCGPGRP:
            // On a master, the slave's group for anyone (tty_pair_get_tty).
            guard facts.isMaster || mine else { throw Errno.notty }
            try c.write(c.arg(2), Bytes.i32(control?.foreground ?? 0))
            return 0
        case IoctlRequests.TIOCGSID:
            guard facts.isMaster || mine, let control else { throw Errno.notty }
            try c.write(c.arg(2), Bytes.i32(control.session))
            return 0
        case IoctlRequests.TIOCSPGRP:
            guard mine, let control, control.session == process.session else { throw Errno.notty }
            guard group >= 0 else { throw Errno.inval }
            let members = family.processes.filter { $0.zombieStatus == nil && $0.processGroup == group }
            guard !members.isEmpty else { throw Errno.srch }
            guard members.contains(where: { $0.session == process.session }) else { throw Errno.perm }
            family.sessionTerminals.setForeground(facts.device, group)
            return 0
        case IoctlRequests.TIOCNOTTY:
            guard mine, !facts.isMaster else { throw Errno.notty }
            // A leader's session loses it (Linux also hangs up the
            // foreground group then, which is not emulated).
            if process.pid == process.session { family.sessionTerminals.clear(session: process.session) }
            else { process.leftTerminal = true }
            return 0
        default:    // TIOCSCTTY
            guard !facts.isMaster else {
                process.report("TIOCSCTTY on a pseudo-terminal master is not supported; returning EPERM",
                               key: 0x1_0000_0000 | UInt64(request), rip: c.rip)
                throw Errno.perm
            }
            let leader = process.pid == process.session
            if leader, control?.session == process.session { return 0 }
            guard leader, own == nil else { throw Errno.perm }
            if let control, family.processes.contains(where: { $0.zombieStatus == nil && $0.session == control.session }) {
                // Another live session's: only stolen with arg 1 and CAP_SYS_ADMIN.
                guard c.arg(2) == 1, facts.sysAdmin else { throw Errno.perm }
            }
            family.sessionTerminals.set(facts.device, .init(session: process.session, foreground: process.processGroup))
            process.leftTerminal = false
            return 0
        }
    }
}
