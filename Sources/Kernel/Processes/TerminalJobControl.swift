import Glibc

/// The job-control ioctls of a controlling terminal. The recording's
/// process groups and sessions are the emulation's (pids are the
/// recording's), so the host tty cannot be told about them: its foreground
/// group stays detrec's, and the one the recording's processes see and set
/// is kept per recording (`ProcessFamily.terminalForeground`). The host
/// says whether a descriptor is the controlling terminal (ENOTTY when not);
/// a process in a session of its own, or that gave the terminal up with
/// TIOCNOTTY, has none.
enum TerminalJobControl {
    static func ioctl(_ c: SyscallCall, request: UInt32) throws -> Int64 {
        let process = c.process
        let family: ProcessFamily = process.family
        let hasTerminal = process.session == family.inheritedSession && !process.leftTerminal
        switch request {
        case IoctlRequests.TIOCGPGRP:
            try c.checkWritable(c.arg(2), count: 4)
            // The host's answer says whether it is a terminal and ours.
            let r = try performPassthrough(c, [.fd, .value, .out(4)])
            guard r == 0 else { return r }
            guard hasTerminal else { throw Errno.notty }
            if let group = family.terminalForeground { try c.write(c.arg(2), Bytes.i32(group)) }
            return 0
        case IoctlRequests.TIOCSPGRP:
            let group: Int32 = try c.readValue(c.arg(2))
            let r = try isControllingTerminal(c)
            guard r == 0 else { return r }
            guard hasTerminal else { throw Errno.notty }
            guard group >= 0 else { throw Errno.inval }
            // A group of the caller's session: one of the recording's, or detrec's own.
            let inSession = family.processes.contains { $0.zombieStatus == nil && $0.processGroup == group && $0.session == process.session }
            guard inSession || group == family.inheritedGroup else { throw Errno.perm }
            family.terminalForeground = group == family.inheritedGroup ? nil : group
            return 0
        case IoctlRequests.TIOCGSID:
            try c.checkWritable(c.arg(2), count: 4)
            let r = try performPassthrough(c, [.fd, .value, .out(4)])
            guard r == 0 else { return r }
            guard hasTerminal else { throw Errno.notty }
            return 0
        case IoctlRequests.TIOCNOTTY:
            let r = try isControllingTerminal(c)
            guard r == 0 else { return r }
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
            let r = try isControllingTerminal(c)
            guard r == 0 else { return r }
            guard hasTerminal else {
                c.process.report("TIOCSCTTY: a session the recording made cannot take detrec's terminal; returning EPERM",
                                 key: 0x1_0000_0000 | UInt64(request), rip: c.rip)
                throw Errno.perm
            }
            return 0
        }
    }

    /// 0 when the descriptor is the host's controlling terminal (TIOCGSID
    /// answers), else the host's error (ENOTTY).
    static func isControllingTerminal(_ c: SyscallCall) throws -> Int64 {
        let file = try c.file(0)
        return try c.host { _ throws(Errno) -> Int64 in
            guard let h = file.hostFD else { throw .badf }
            var sid: Int32 = 0
            let r = withUnsafeMutablePointer(to: &sid) { hostSyscall(SYS.ioctl, Int(h), Int(IoctlRequests.TIOCGSID), Int(bitPattern: $0)) }
            return r < 0 ? r : 0
        }
    }
}
