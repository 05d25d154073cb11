import Glibc

/// kill, tkill, tgkill, rt_sigqueueinfo and rt_tgsigqueueinfo: who a
/// signal is for. A process of the recording gets it process-directed, a
/// thread of one gets it for itself alone (its own pending set). Process
/// group 0 and the recording's own group mean every process of the
/// recording, which share one group; -1 means all of them but the
/// sender. Any other id is a host process or thread: recording sends the
/// signal on the host, as the program would have, and replay returns what
/// that did.
enum SignalSending {
    static func register(_ t: inout SyscallTable) {
        t.add(SYS.kill) { c in
            try send(c, to: c.int(0), signal: c.int(1), info: siginfo(c, c.int(1), code: Signals.SI_USER))
        }
        t.add(SYS.tkill) { c in
            try sendToThread(c, tgid: nil, tid: c.int(0), signal: c.int(1), info: siginfo(c, c.int(1), code: Signals.SI_TKILL))
        }
        t.add(SYS.tgkill) { c in
            try sendToThread(c, tgid: c.int(0), tid: c.int(1), signal: c.int(2), info: siginfo(c, c.int(2), code: Signals.SI_TKILL))
        }
        t.add(SYS.rt_sigqueueinfo) { c in
            let info = try queuedInfo(c, target: c.int(0), signal: c.int(1), at: c.arg(2))
            guard c.int(0) > 0 else { throw Errno.srch }
            return try send(c, to: c.int(0), signal: c.int(1), info: info)
        }
        t.add(SYS.rt_tgsigqueueinfo) { c in
            let info = try queuedInfo(c, target: c.int(1), signal: c.int(2), at: c.arg(3))
            return try sendToThread(c, tgid: c.int(0), tid: c.int(1), signal: c.int(2), info: info)
        }
    }

    static func siginfo(_ c: SyscallCall, _ signal: Int32, code: Int32) -> [UInt8] {
        SignalDelivery.siginfo(signal: signal, code: code, pid: c.process.pid, uid: c.process.uid)
    }

    /// The caller's siginfo for rt_(tg)sigqueueinfo, with the kernel's
    /// si_signo. A caller may not pose as the kernel or as kill() toward
    /// another task (Linux compares with the caller's thread id).
    static func queuedInfo(_ c: SyscallCall, target: Int32, signal: Int32, at address: UInt64) throws -> [UInt8] {
        var raw = try c.read(address, count: 128)
        guard signal >= 0, signal <= 64 else { throw Errno.inval }
        let code = Int32(bitPattern: Bytes.u32(raw, at: 8))
        if (code >= 0 || code == Signals.SI_TKILL) && target != c.process.current.tid { throw Errno.perm }
        for (i, b) in Bytes.i32(signal).enumerated() { raw[i] = b }
        return raw
    }

    /// kill(2)'s targets: a pid, 0 (own group), -1 (all but the caller), -pgid.
    static func send(_ c: SyscallCall, to pid: Int32, signal: Int32, info: [UInt8]) throws -> Int64 {
        guard signal >= 0, signal <= 64 else { throw Errno.inval }
        let family: ProcessFamily = c.process.family
        let live = family.processes.filter { $0.zombieStatus == nil }
        var targets: [Process]
        switch pid {
        case 0:
            targets = ProcessGroups.members(family, c.process.processGroup)
        case -1:
            targets = live.filter { $0 !== c.process }
            guard !targets.isEmpty else { throw Errno.srch }
        case Int32.min:
            throw Errno.srch
        case let pid where pid > 0:
            if let known = family.processes.first(where: { $0.pid == pid }) {
                // A zombie takes signals and nothing happens.
                targets = known.zombieStatus == nil ? [known] : []
            } else if family.allocated(pid) {
                throw Errno.srch   // one of ours that has been reaped
            } else {
                return try c.host { _ in hostSignal { Glibc.kill(pid, signal) } }
            }
        default:
            targets = ProcessGroups.members(family, -pid)
            if targets.isEmpty {
                // A group of the recording's that has emptied, or detrec's
                // own (which the recording's processes have all left), has
                // nobody to signal; any other is the host's.
                guard !family.allocated(-pid), -pid != family.inheritedGroup else { throw Errno.srch }
                return try c.host { _ in hostSignal { Glibc.kill(pid, signal) } }
            }
        }
        // check_kill_permission: one target refused is EPERM; a group
        // succeeds when one member may be signalled; -1 skips the refusals.
        let allowed = targets.filter { permitted(c, $0, thread: nil, signal: signal) }
        if allowed.isEmpty && !targets.isEmpty && pid != -1 { throw Errno.perm }
        guard signal != 0 else { return 0 }
        for p in allowed { SignalDelivery.generate(p, signal: signal, info: info) }
        return 0
    }

    /// check_kill_permission for a signal from the program: its own thread
    /// group, kill_ok_by_cred, or SIGCONT within its session.
    static func permitted(_ c: SyscallCall, _ target: Process, thread: GuestThread?, signal: Int32) -> Bool {
        guard target !== c.process else { return true }
        let them = (thread ?? target.thread(target.pid) ?? target.current).credentials
        if CredentialsSyscalls.maySignal(c.process.current.credentials, them) { return true }
        return signal == SIGCONT && target.session == c.process.session
    }

    /// tkill/tgkill/rt_tgsigqueueinfo: one thread (`tgid` nil for tkill).
    static func sendToThread(_ c: SyscallCall, tgid: Int32?, tid: Int32, signal: Int32, info: [UInt8]) throws -> Int64 {
        guard signal >= 0, signal <= 64, tid > 0, (tgid ?? 1) > 0 else { throw Errno.inval }
        guard let (owner, thread) = c.process.family.find(tid) else {
            if c.process.family.allocated(tid) { throw Errno.srch }
            guard let tgid else { return try c.host { _ in hostSyscall(SYS.tkill, Int(tid), Int(signal)) } }
            return try c.host { _ in hostSyscall(SYS.tgkill, Int(tgid), Int(tid), Int(signal)) }
        }
        if let tgid, tgid != owner.pid { throw Errno.srch }
        guard permitted(c, owner, thread: thread, signal: signal) else { throw Errno.perm }
        guard signal != 0 else { return 0 }
        SignalDelivery.generate(owner, signal: signal, info: info, to: thread)
        return 0
    }

    private static func hostSignal(_ send: () -> Int32) -> Int64 {
        send() == 0 ? 0 : -Int64(errno)
    }
}
