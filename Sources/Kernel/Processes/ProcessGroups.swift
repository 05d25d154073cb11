/// Process groups and sessions, kept per process by the emulation: the
/// first process starts in detrec's own (`InheritedState`), children
/// inherit theirs, and setpgid and setsid move a process of the recording
/// without touching detrec's. kill, wait4 and waitid name groups by these
/// ids (`SignalSending`, `WaitSyscalls`).
enum ProcessGroups {
    static func register(_ t: inout SyscallTable) {
        t.add(SYS.getpgrp) { c in Int64(c.process.processGroup) }
        t.add(SYS.getpgid) { c in
            guard let p = try target(c, c.int(0)) else { return try performPassthrough(c, [.value]) }
            return Int64(p.processGroup)
        }
        t.add(SYS.getsid) { c in
            guard let p = try target(c, c.int(0)) else { return try performPassthrough(c, [.value]) }
            return Int64(p.session)
        }
        t.add(SYS.setpgid, setpgid)
        t.add(SYS.setsid, setsid)
    }

    /// The process `pid` names: the caller for 0, a live or zombie process
    /// of the recording, nil for an id outside it (the host answers),
    /// ESRCH for one the recording handed out that is gone.
    static func target(_ c: SyscallCall, _ pid: Int32) throws(Errno) -> Process? {
        if pid == 0 || pid == c.process.pid { return c.process }
        guard pid > 0 else { throw .srch }
        if let p = c.process.family.processes.first(where: { $0.pid == pid }) { return p }
        if c.process.family.allocated(pid) { throw .srch }
        return nil
    }

    /// setpgid as Linux's: the caller or a child of it not yet exec'd, in
    /// the caller's session and not a session leader, into a group of that
    /// session or a new one named after the process.
    static func setpgid(_ c: SyscallCall) throws -> Int64 {
        let caller = c.process
        let pid = c.int(0), pgid = c.int(1)
        guard pgid >= 0 else { throw Errno.inval }
        guard let p = try target(c, pid) else { throw Errno.srch }
        if p !== caller {
            guard p.parent === caller, p.zombieStatus == nil else { throw Errno.srch }
            guard p.session == caller.session else { throw Errno.perm }
            if p.hasExeced { throw Errno.acces }
        }
        let group = pgid == 0 ? p.pid : pgid
        guard p.session != p.pid else { throw Errno.perm }
        if group != p.pid {
            // The group must exist in the caller's session: one of the
            // recording's, or the one the recording started in.
            let exists = caller.family.processes.contains { $0.zombieStatus == nil && $0.processGroup == group && $0.session == caller.session }
            guard exists else { throw Errno.perm }
        }
        p.processGroup = group
        return 0
    }

    static func setsid(_ c: SyscallCall) throws -> Int64 {
        let p = c.process
        // A group leader, or anyone whose pid names a group, cannot start a session.
        guard p.processGroup != p.pid,
              !p.family.processes.contains(where: { $0.zombieStatus == nil && $0.processGroup == p.pid }) else { throw Errno.perm }
        p.session = p.pid
        p.processGroup = p.pid
        return Int64(p.pid)
    }

    /// The live processes of the recording in group `pgid`.
    static func members(_ family: ProcessFamily, _ pgid: Int32) -> [Process] {
        family.processes.filter { $0.zombieStatus == nil && $0.processGroup == pgid }
    }
}
