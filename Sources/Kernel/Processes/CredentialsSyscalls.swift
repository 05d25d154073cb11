import Glibc

/// setuid and its relatives, getuid and its relatives, getgroups/setgroups,
/// capget/capset and the capability prctls, on the calling thread's
/// emulated credentials (`Credentials`), with kernel/sys.c's and
/// commoncap.c's rules. Nothing here touches the host: host calls made on
/// the thread's behalf run with its filesystem ids and groups
/// (`HostCredentials`), and replay computes the same credentials.
enum CredentialsSyscalls {
    static let unchanged: UInt32 = 0xffff_ffff
    static let NGROUPS_MAX = 65536

    static func register(_ t: inout SyscallTable) {
        let note = "per-thread emulated credentials, Linux's rules; host calls run with the thread's fsuid/fsgid/groups"
        t.add(SYS.setuid, .emulated, note: note) { c in try commit(c) { o throws(Errno) in try setuid(o, id(c, 0)) } }
        t.add(SYS.setgid, .emulated, note: note) { c in try commit(c) { o throws(Errno) in try setgid(o, id(c, 0)) } }
        t.add(SYS.setreuid, .emulated, note: note) { c in try commit(c) { o throws(Errno) in try setreuid(o, id(c, 0), id(c, 1)) } }
        t.add(SYS.setregid, .emulated, note: note) { c in try commit(c) { o throws(Errno) in try setregid(o, id(c, 0), id(c, 1)) } }
        t.add(SYS.setresuid, .emulated, note: note) { c in
            try commit(c) { o throws(Errno) in try setresuid(o, id(c, 0), id(c, 1), id(c, 2)) }
        }
        t.add(SYS.setresgid, .emulated, note: note) { c in
            try commit(c) { o throws(Errno) in try setresgid(o, id(c, 0), id(c, 1), id(c, 2)) }
        }
        t.add(SYS.setfsuid, .emulated, note: "returns the old fsuid; capabilities follow it as commoncap's") { c in
            let old = c.process.current.credentials
            apply(c.process, c.process.current, setfsuid(old, id(c, 0)))
            return Int64(old.fsuid)
        }
        t.add(SYS.setfsgid, .emulated, note: "returns the old fsgid") { c in
            let old = c.process.current.credentials
            apply(c.process, c.process.current, setfsgid(old, id(c, 0)))
            return Int64(old.fsgid)
        }
        t.add(SYS.setgroups, .emulated, note: "CAP_SETGID; the list is kept sorted, as groups_sort", setgroups)
        t.add(SYS.getuid, .emulated) { c in Int64(c.process.current.credentials.uid) }
        t.add(SYS.geteuid, .emulated) { c in Int64(c.process.current.credentials.euid) }
        t.add(SYS.getgid, .emulated) { c in Int64(c.process.current.credentials.gid) }
        t.add(SYS.getegid, .emulated) { c in Int64(c.process.current.credentials.egid) }
        t.add(SYS.getresuid, .emulated) { c in
            let k = c.process.current.credentials
            return try getres(c, [k.uid, k.euid, k.suid])
        }
        t.add(SYS.getresgid, .emulated) { c in
            let k = c.process.current.credentials
            return try getres(c, [k.gid, k.egid, k.sgid])
        }
        t.add(SYS.getgroups, .emulated, getgroups)
        t.add(SYS.capget, .emulated, capget)
        t.add(SYS.capset, .emulated, note: "commoncap's cap_capset rules on the thread's sets", capset)
    }

    static func id(_ c: SyscallCall, _ i: Int) -> UInt32 { UInt32(truncatingIfNeeded: c.arg(i)) }

    /// Runs `change` on the calling thread's credentials and keeps the result.
    static func commit(_ c: SyscallCall, _ change: (Credentials) throws(Errno) -> Credentials) throws(Errno) -> Int64 {
        let thread = c.process.current
        apply(c.process, thread, try change(thread.credentials))
        return 0
    }

    /// commit_creds: a change of effective or filesystem id, or new
    /// permitted capabilities, makes the process dumpable only as
    /// fs.suid_dumpable says and clears its parent-death signal.
    static func apply(_ p: Process, _ thread: GuestThread, _ new: Credentials) {
        let old = thread.credentials
        if old.euid != new.euid || old.egid != new.egid || old.fsuid != new.fsuid || old.fsgid != new.fsgid
            || new.permitted & ~old.permitted != 0 {
            p.control.dumpable = p.control.suidDumpable
            p.control.parentDeathSignal = 0
        }
        thread.credentials = new
    }

    static func setuid(_ old: Credentials, _ uid: UInt32) throws(Errno) -> Credentials {
        guard uid != unchanged else { throw .inval }
        var n = old
        if old.capable(Credentials.CAP_SETUID) {
            n.uid = uid; n.suid = uid
        } else if uid != old.uid && uid != old.suid {
            throw .perm
        }
        n.euid = uid; n.fsuid = uid
        n.fixCapabilities(after: old)
        return n
    }

    static func setgid(_ old: Credentials, _ gid: UInt32) throws(Errno) -> Credentials {
        guard gid != unchanged else { throw .inval }
        var n = old
        if old.capable(Credentials.CAP_SETGID) {
            n.gid = gid; n.egid = gid; n.sgid = gid; n.fsgid = gid
        } else if gid == old.gid || gid == old.sgid {
            n.egid = gid; n.fsgid = gid
        } else {
            throw .perm
        }
        return n
    }

    static func setreuid(_ old: Credentials, _ r: UInt32, _ e: UInt32) throws(Errno) -> Credentials {
        var n = old
        let privileged = old.capable(Credentials.CAP_SETUID)
        if r != unchanged {
            guard r == old.uid || r == old.euid || privileged else { throw .perm }
            n.uid = r
        }
        if e != unchanged {
            guard e == old.uid || e == old.euid || e == old.suid || privileged else { throw .perm }
            n.euid = e
        }
        if r != unchanged || (e != unchanged && e != old.uid) { n.suid = n.euid }
        n.fsuid = n.euid
        n.fixCapabilities(after: old)
        return n
    }

    static func setregid(_ old: Credentials, _ r: UInt32, _ e: UInt32) throws(Errno) -> Credentials {
        var n = old
        let privileged = old.capable(Credentials.CAP_SETGID)
        if r != unchanged {
            guard r == old.gid || r == old.egid || privileged else { throw .perm }
            n.gid = r
        }
        if e != unchanged {
            guard e == old.gid || e == old.egid || e == old.sgid || privileged else { throw .perm }
            n.egid = e
        }
        if r != unchanged || (e != unchanged && e != old.gid) { n.sgid = n.egid }
        n.fsgid = n.egid
        return n
    }

    static func setresuid(_ old: Credentials, _ r: UInt32, _ e: UInt32, _ s: UInt32) throws(Errno) -> Credentials {
        if (r == unchanged || r == old.uid) && (e == unchanged || (e == old.euid && e == old.fsuid))
            && (s == unchanged || s == old.suid) { return old }
        let mine = [old.uid, old.euid, old.suid]
        let new = [r, e, s].contains { $0 != unchanged && !mine.contains($0) }
        if new && !old.capable(Credentials.CAP_SETUID) { throw .perm }
        var n = old
        if r != unchanged { n.uid = r }
        if e != unchanged { n.euid = e }
        if s != unchanged { n.suid = s }
        n.fsuid = n.euid
        n.fixCapabilities(after: old)
        return n
    }

    static func setresgid(_ old: Credentials, _ r: UInt32, _ e: UInt32, _ s: UInt32) throws(Errno) -> Credentials {
        if (r == unchanged || r == old.gid) && (e == unchanged || (e == old.egid && e == old.fsgid))
            && (s == unchanged || s == old.sgid) { return old }
        let mine = [old.gid, old.egid, old.sgid]
        let new = [r, e, s].contains { $0 != unchanged && !mine.contains($0) }
        if new && !old.capable(Credentials.CAP_SETGID) { throw .perm }
        var n = old
        if r != unchanged { n.gid = r }
        if e != unchanged { n.egid = e }
        if s != unchanged { n.sgid = s }
        n.fsgid = n.egid
        return n
    }

    /// setfsuid: any of the caller's ids, or anything with CAP_SETUID; an
    /// invalid id or a refusal changes nothing (the call still succeeds).
    static func setfsuid(_ old: Credentials, _ uid: UInt32) -> Credentials {
        guard uid != unchanged, uid != old.fsuid,
              [old.uid, old.euid, old.suid].contains(uid) || old.capable(Credentials.CAP_SETUID) else { return old }
        var n = old
        n.fsuid = uid
        n.fixFilesystemCapabilities(after: old.fsuid)
        return n
    }

    static func setfsgid(_ old: Credentials, _ gid: UInt32) -> Credentials {
        guard gid != unchanged, gid != old.fsgid,
              [old.gid, old.egid, old.sgid].contains(gid) || old.capable(Credentials.CAP_SETGID) else { return old }
        var n = old
        n.fsgid = gid
        return n
    }

    /// setgroups(size, list): CAP_SETGID (EPERM), at most NGROUPS_MAX
    /// (EINVAL, the size taken unsigned), the list readable (EFAULT), no -1 (EINVAL).
    static func setgroups(_ c: SyscallCall) throws -> Int64 {
        let thread = c.process.current
        guard thread.credentials.capable(Credentials.CAP_SETGID) else { throw Errno.perm }
        let size = Int(UInt32(bitPattern: c.int(0)))
        guard size <= NGROUPS_MAX else { throw Errno.inval }
        let bytes = size == 0 ? [] : try c.read(c.arg(1), count: size * 4)
        let list = (0..<size).map { Bytes.u32(bytes, at: $0 * 4) }
        guard !list.contains(unchanged) else { throw Errno.inval }
        var n = thread.credentials
        n.groups = list.sorted()
        apply(c.process, thread, n)
        return 0
    }

    /// getgroups(size, list): size counts gids; 0 asks how many; fewer than
    /// there are is EINVAL.
    static func getgroups(_ c: SyscallCall) throws -> Int64 {
        let size = c.int(0)
        guard size >= 0 else { throw Errno.inval }
        let groups = c.process.current.credentials.groups
        guard size > 0 else { return Int64(groups.count) }
        guard Int(size) >= groups.count else { throw Errno.inval }
        if !groups.isEmpty { try c.write(c.arg(1), groups.flatMap(Bytes.u32)) }
        return Int64(groups.count)
    }

    /// getresuid/getresgid: three separate stores, stopping at the first fault.
    static func getres(_ c: SyscallCall, _ ids: [UInt32]) throws -> Int64 {
        for (k, v) in ids.enumerated() { try c.writeValue(c.arg(k), v) }
        return 0
    }

    // MARK: capabilities

    static let versions: [UInt32: Int] = [0x1998_0330: 1, 0x2007_1026: 2, 0x2008_0522: 2]
    static var validMask: UInt64 { (1 << (ProcessControlSyscalls.lastCapability + 1)) - 1 }

    /// The capability header: the number of data structs its version
    /// takes, or EINVAL after writing the preferred version back (Linux's
    /// cap_validate_magic); and the thread it names (0: the caller).
    static func header(_ c: SyscallCall) throws(Errno) -> (count: Int, thread: GuestThread) {
        let version: UInt32 = try c.readValue(c.arg(0))
        let pid: Int32 = try c.readValue(c.arg(0) + 4)
        guard let count = versions[version] else {
            try c.writeValue(c.arg(0), UInt32(0x2008_0522))
            throw .inval
        }
        guard pid >= 0 else { throw .inval }
        if pid == 0 || pid == c.process.current.tid { return (count, c.process.current) }
        guard let (_, thread) = c.process.family.find(pid) else { throw .srch }
        return (count, thread)
    }

    static func capget(_ c: SyscallCall) throws -> Int64 {
        let (count, thread) = try header(c)
        guard c.arg(1) != 0 else { return 0 }
        let k = thread.credentials
        let sets = [k.effective, k.permitted, k.inheritable]
        let low = sets.flatMap { Bytes.u32(UInt32(truncatingIfNeeded: $0)) }
        let high = sets.flatMap { Bytes.u32(UInt32(truncatingIfNeeded: $0 >> 32)) }
        try c.write(c.arg(1), count == 1 ? low : low + high)
        return 0
    }

    /// capset: only the caller's own sets; the new inheritable within the
    /// old inheritable and permitted ones (unless CAP_SETPCAP) and the
    /// bounding set, the new permitted within the old, the effective
    /// within the new permitted; the ambient set keeps what is still both.
    static func capset(_ c: SyscallCall) throws -> Int64 {
        let (count, _) = try header(c)
        let pid: Int32 = try c.readValue(c.arg(0) + 4)
        if pid != 0 && pid != c.process.current.tid { throw Errno.perm }
        let data = try c.read(c.arg(1), count: 12 * count)
        func set(_ i: Int) -> UInt64 {
            let high = count == 2 ? UInt64(Bytes.u32(data, at: 12 + i * 4)) << 32 : 0
            return (UInt64(Bytes.u32(data, at: i * 4)) | high) & validMask
        }
        let effective = set(0), permitted = set(1), inheritable = set(2)
        let thread = c.process.current
        let old = thread.credentials
        if !old.capable(Credentials.CAP_SETPCAP) && inheritable & ~(old.inheritable | old.permitted) != 0 { throw Errno.perm }
        if inheritable & ~(old.inheritable | old.bounding) != 0 { throw Errno.perm }
        if permitted & ~old.permitted != 0 { throw Errno.perm }
        if effective & ~permitted != 0 { throw Errno.perm }
        var n = old
        n.effective = effective; n.permitted = permitted; n.inheritable = inheritable
        n.ambient &= permitted & inheritable
        apply(c.process, thread, n)
        return 0
    }

    static let PR_GET_KEEPCAPS: Int32 = 7, PR_SET_KEEPCAPS: Int32 = 8
    static let PR_CAPBSET_READ: Int32 = 23, PR_CAPBSET_DROP: Int32 = 24
    static let PR_GET_SECUREBITS: Int32 = 27, PR_SET_SECUREBITS: Int32 = 28
    static let PR_CAP_AMBIENT: Int32 = 47
    /// SECURE_ALL_BITS (noroot, no_setuid_fixup, keep_caps,
    /// no_cap_ambient_raise, exec_restrict_file, exec_deny_interactive) and their locks.
    static let secureAllBits: UInt32 = 0x555, secureAllLocks: UInt32 = 0xaaa

    /// The prctl options on credentials (commoncap's cap_task_prctl and
    /// sys_prctl's PR_CAPBSET_READ); nil for any other option.
    static func prctl(_ c: SyscallCall, _ option: Int32) throws(Errno) -> Int64? {
        let thread = c.process.current
        let old = thread.credentials
        let arg2 = c.arg(1)
        var n = old
        switch option {
        case PR_GET_KEEPCAPS:
            return old.keepCaps ? 1 : 0
        case PR_SET_KEEPCAPS:
            guard arg2 <= 1 else { throw .inval }
            guard old.securebits & Credentials.keepCapsLocked == 0 else { throw .perm }
            if arg2 == 1 { n.securebits |= Credentials.keepCapsBit } else { n.securebits &= ~Credentials.keepCapsBit }
        case PR_CAPBSET_READ:
            guard arg2 <= ProcessControlSyscalls.lastCapability else { throw .inval }
            return old.bounding & (1 << arg2) != 0 ? 1 : 0
        case PR_CAPBSET_DROP:
            guard old.capable(Credentials.CAP_SETPCAP) else { throw .perm }
            guard arg2 <= ProcessControlSyscalls.lastCapability else { throw .inval }
            n.bounding &= ~(1 << arg2)
        case PR_GET_SECUREBITS:
            return Int64(old.securebits)
        case PR_SET_SECUREBITS:
            let bits = old.securebits
            let wanted = UInt32(truncatingIfNeeded: arg2)
            if ((bits & secureAllLocks) >> 1) & (bits ^ wanted) != 0 || bits & secureAllLocks & ~wanted != 0
                || arg2 & ~UInt64(secureAllLocks | secureAllBits) != 0 || !old.capable(Credentials.CAP_SETPCAP) { throw .perm }
            n.securebits = wanted
        case PR_CAP_AMBIENT:
            let arg3 = c.arg(2), arg4 = c.arg(3), arg5 = c.arg(4)
            if arg2 == 4 {   // CLEAR_ALL
                guard arg3 | arg4 | arg5 == 0 else { throw .inval }
                n.ambient = 0
                break
            }
            guard arg3 <= ProcessControlSyscalls.lastCapability, arg4 | arg5 == 0 else { throw .inval }
            let bit: UInt64 = 1 << arg3
            switch arg2 {
            case 1: return old.ambient & bit != 0 ? 1 : 0          // IS_SET
            case 2:                                                 // RAISE
                guard old.permitted & bit != 0, old.inheritable & bit != 0, old.securebits & 1 << 6 == 0 else { throw .perm }
                n.ambient |= bit
            case 3: n.ambient &= ~bit                               // LOWER
            default: throw .inval
            }
        default:
            return nil
        }
        apply(c.process, thread, n)
        return 0
    }

    /// kill_ok_by_cred: the sender's real or effective uid is the target's
    /// real or saved one, or the sender has CAP_KILL.
    static func maySignal(_ sender: Credentials, _ target: Credentials) -> Bool {
        let mine = [sender.euid, sender.uid]
        return mine.contains(target.suid) || mine.contains(target.uid) || sender.capable(Credentials.CAP_KILL)
    }

    /// __ptrace_may_access with real credentials (process_vm_*, pidfd_getfd,
    /// /proc/PID/mem): the same real, effective and saved ids, or CAP_SYS_PTRACE;
    /// and a dumpable target unless CAP_SYS_PTRACE.
    static func mayAccess(_ caller: Process, _ target: Process) -> Bool {
        guard caller !== target else { return true }
        let me = caller.current.credentials, them = target.current.credentials
        let privileged = me.capable(Credentials.CAP_SYS_PTRACE)
        let same = [them.uid, them.euid, them.suid].allSatisfy { $0 == me.uid }
            && [them.gid, them.egid, them.sgid].allSatisfy { $0 == me.gid }
        guard same || privileged else { return false }
        return target.control.dumpable == 1 || privileged
    }
}

extension Process {
    /// The real uid (siginfo's si_uid), of the thread on the vCPU.
    public var uid: UInt32 { current.credentials.uid }
}
