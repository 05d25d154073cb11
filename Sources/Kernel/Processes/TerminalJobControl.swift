import Glibc

/// The job-control ioctls of a terminal (TIOCGPGRP, TIOCSPGRP, TIOCGSID,
/// TIOCNOTTY, TIOCSCTTY). The recording's process groups and sessions are
/// the emulation's (pids are the recording's), so no host tty can be told
/// about them. The host's controlling terminal is detrec's session's: its
/// foreground group stays detrec's on the host, and the one the
/// recording's processes see and set is kept per recording
/// (`ProcessFamily.terminalForeground`); a process in a session of its own,
/// or that gave the terminal up with TIOCNOTTY, has none. Any other
/// terminal can become the controlling terminal of a session the recording
/// made (`SessionTerminals`), under tty_jobctrl.c's rules.
enum TerminalJobControl {
    static func ioctl(_ c: SyscallCall, request: UInt32) throws -> Int64 {
        let process = c.process
        let family: ProcessFamily = process.family
        if request == IoctlRequests.TIOCGPGRP || request == IoctlRequests.TIOCGSID {
            try c.checkWritable(c.arg(2), count: 4)
        }
        var group: Int32 = 0
        if request == IoctlRequests.TIOCSPGRP { group = try c.readValue(c.arg(2)) }
        let (r, read) = try TerminalFacts.read(c)
        guard r == 0, let facts = read else { return r }
        guard facts.isTerminal else { throw Errno.notty }
        guard facts.hostControlling else { return try SessionTerminalControl.ioctl(c, request: request, facts, group: group) }
        let hasTerminal = process.session == family.inheritedSession && !process.leftTerminal
        switch request {
        case IoctlRequests.TIOCGPGRP:
            guard hasTerminal else { throw Errno.notty }
            try c.write(c.arg(2), Bytes.i32(family.terminalForeground ?? facts.hostGroup))
            return 0
        case IoctlRequests.TIOCSPGRP:
            guard hasTerminal else { throw Errno.notty }
            guard group >= 0 else { throw Errno.inval }
            // A group of the caller's session: one of the recording's, or detrec's own.
            let inSession = family.processes.contains { $0.zombieStatus == nil && $0.processGroup == group && $0.session == process.session }
            guard inSession || group == family.inheritedGroup else { throw Errno.perm }
            family.terminalForeground = group == family.inheritedGroup ? nil : group
            return 0
        case IoctlRequests.TIOCGSID:
            guard hasTerminal else { throw Errno.notty }
            try c.write(c.arg(2), Bytes.i32(facts.hostSession))
            return 0
        case IoctlRequests.TIOCNOTTY:
            guard hasTerminal else { throw Errno.notty }
            guard process.session != process.pid else {
                // A session leader giving it up hangs up its foreground
                // group on Linux; the recording's session is detrec's, so
                // no recorded process leads it.
                throw Errno.perm
            }
            process.leftTerminal = true
            return 0
        default:
            // TIOCSCTTY: already this session's terminal is no change; a
            // recorded session of its own cannot take the host tty (it is
            // detrec's session's), as Linux refuses a terminal that is
            // another session's: EPERM.
            guard hasTerminal else {
                c.process.report("TIOCSCTTY: a session the recording made cannot take detrec's terminal; returning EPERM",
                                 key: 0x1_0000_0000 | UInt64(request), rip: c.rip)
                throw Errno.perm
            }
            return 0
        }
    }
}
