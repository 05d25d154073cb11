import Glibc

/// Host calls made on a guest thread's behalf run with its credentials, so
/// the host kernel's permission checks (open, creat, mkdir, unlink, chmod,
/// chown, a unix socket's bind...) and the owner of what it creates are
/// the guest's. Linux's raw setfsuid, setfsgid, setgroups and capset change
/// only the calling thread, so detrec's host thread takes the guest's
/// filesystem ids, groups and effective capabilities around the call and
/// goes back to its own after it. A guest with detrec's own credentials
/// (the common case) costs one comparison. Recording only: replay never
/// runs host calls.
enum CredentialsOnHost {
    /// detrec's host thread's own, as it started.
    static let own = Credentials.ofThisThread()
    /// Its dumpable flag: a change of fsuid or fsgid resets it (commit_creds), so it is put back.
    static let ownDumpable = Int(hostSyscall(SYS.prctl, 3))   // PR_GET_DUMPABLE

    /// Whether a host call of syscall `number` (arguments `args`) is
    /// checked with the real ids: access and faccessat, and faccessat2
    /// without AT_EACCESS (access_override_creds). The host kernel takes
    /// them from the host thread's real ids, so those follow the guest's.
    static func usesRealIDs(number: UInt64, args: [UInt64]) -> Bool {
        number == SYS.access || number == SYS.faccessat
            || (number == SYS.faccessat2 && args.count > 3 && args[3] & 0x200 == 0)
    }

    /// Whether a host call with `k` needs the host thread changed.
    @inline(__always)
    static func differs(_ k: Credentials, realIDs: Bool) -> Bool {
        let o = own
        return k.fsuid != o.fsuid || k.fsgid != o.fsgid || k.effective != o.effective || k.groups != o.groups
            || (realIDs && (k.uid != o.uid || k.gid != o.gid))
    }

    /// Runs `body` on the host thread with `k`'s filesystem ids, groups and
    /// effective capabilities.
    static func with<T>(_ k: Credentials, realIDs: Bool, _ body: () throws(Errno) -> T) throws(Errno) -> T {
        guard differs(k, realIDs: realIDs) else { return try body() }
        let o = own
        _ = ownDumpable
        // The real ids, for access: the effective and saved ones stay
        // detrec's, so its capabilities do not change.
        let realUID = realIDs && k.uid != o.uid, realGID = realIDs && k.gid != o.gid
        if realGID { _ = hostSyscall(SYS.setresgid, Int(k.gid), -1, -1) }
        if realUID { _ = hostSyscall(SYS.setresuid, Int(k.uid), -1, -1) }
        // Groups first and the filesystem ids next, while detrec still has
        // CAP_SETGID and CAP_SETUID; the effective set last (a change of
        // fsuid from root drops the filesystem capabilities, capset sets them all).
        if k.groups != o.groups { setGroups(k.groups) }
        if k.fsgid != o.fsgid { _ = hostSyscall(SYS.setfsgid, Int(k.fsgid)) }
        if k.fsuid != o.fsuid { _ = hostSyscall(SYS.setfsuid, Int(k.fsuid)) }
        setEffective(k.effective & o.permitted)
        defer {
            setEffective(o.effective)
            if realUID { _ = hostSyscall(SYS.setresuid, Int(o.uid), -1, -1) }
            if realGID { _ = hostSyscall(SYS.setresgid, Int(o.gid), -1, -1) }
            if k.groups != o.groups { setGroups(o.groups) }
            if k.fsgid != o.fsgid { _ = hostSyscall(SYS.setfsgid, Int(o.fsgid)) }
            if k.fsuid != o.fsuid {
                _ = hostSyscall(SYS.setfsuid, Int(o.fsuid))
                // Back to root raises the filesystem capabilities that are permitted.
                setEffective(o.effective)
            }
            if k.fsuid != o.fsuid || k.fsgid != o.fsgid, ownDumpable >= 0 { _ = hostSyscall(SYS.prctl, 4, ownDumpable) }
        }
        return try body()
    }

    static func setGroups(_ groups: [UInt32]) {
        var list = groups
        _ = list.withUnsafeMutableBufferPointer { hostSyscall(SYS.setgroups, $0.count, Int(bitPattern: $0.baseAddress)) }
    }

    static func setEffective(_ effective: UInt64) {
        let o = own
        var header: [UInt32] = [0x2008_0522, 0]
        var data: [UInt32] = [UInt32(truncatingIfNeeded: effective), UInt32(truncatingIfNeeded: o.permitted),
                              UInt32(truncatingIfNeeded: o.inheritable), UInt32(truncatingIfNeeded: effective >> 32),
                              UInt32(truncatingIfNeeded: o.permitted >> 32), UInt32(truncatingIfNeeded: o.inheritable >> 32)]
        _ = header.withUnsafeMutableBufferPointer { h in
            data.withUnsafeMutableBufferPointer { d in hostSyscall(SYS.capset, Int(bitPattern: h.baseAddress), Int(bitPattern: d.baseAddress)) }
        }
    }
}
