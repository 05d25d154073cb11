import Glibc

/// setuid, setgid and their relatives, as the recorded user gets them.
/// The recording runs as detrec's host identity and never changes it (a
/// recording run as root dropping to another user would leave detrec, which
/// performs every process's I/O, with the wrong rights, or the host without
/// a way back), so a call succeeds when Linux would allow it and it changes
/// nothing: an unprivileged user naming its own ids, as every call of this
/// kind an unprivileged program makes does. One Linux would refuse gets
/// Linux's EPERM; one Linux would allow but that changes the identity (only
/// a privileged caller can) gets EPERM with a report naming it.
enum Credentials {
    static let setUID: Int32 = 7, setGID: Int32 = 6   // CAP_SETUID, CAP_SETGID
    static let unchanged: UInt32 = 0xffff_ffff

    static func register(_ t: inout SyscallTable) {
        let note = "allowed when it changes nothing; EPERM otherwise (a change of identity with a report)"
        t.add(SYS.setuid, .host, note: note) { c in try set(c, group: false, real: nil, effective: c.arg(0), saved: nil, one: true) }
        t.add(SYS.setgid, .host, note: note) { c in try set(c, group: true, real: nil, effective: c.arg(0), saved: nil, one: true) }
        t.add(SYS.setreuid, .host, note: note) { c in try set(c, group: false, real: c.arg(0), effective: c.arg(1), saved: nil, one: false) }
        t.add(SYS.setregid, .host, note: note) { c in try set(c, group: true, real: c.arg(0), effective: c.arg(1), saved: nil, one: false) }
        t.add(SYS.setresuid, .host, note: note) { c in try set(c, group: false, real: c.arg(0), effective: c.arg(1), saved: c.arg(2), one: false) }
        t.add(SYS.setresgid, .host, note: note) { c in try set(c, group: true, real: c.arg(0), effective: c.arg(1), saved: c.arg(2), one: false) }
        t.add(SYS.setfsuid, .host, note: "returns the fsuid; never changes it (a change is reported)") { c in try setFS(c, group: false) }
        t.add(SYS.setfsgid, .host, note: "returns the fsgid; never changes it (a change is reported)") { c in try setFS(c, group: true) }
        t.add(SYS.setgroups, .host, note: "the current list again is allowed with CAP_SETGID; anything else EPERM", setgroups)
    }

    /// The host's real, effective and saved ids (recording only).
    static func hostIDs(group: Bool) -> [UInt32] {
        var r: UInt32 = 0, e: UInt32 = 0, s: UInt32 = 0
        withUnsafeMutablePointer(to: &r) { rp in
            withUnsafeMutablePointer(to: &e) { ep in
                withUnsafeMutablePointer(to: &s) { sp in
                    _ = hostSyscall(group ? SYS.getresgid : SYS.getresuid, Int(bitPattern: rp), Int(bitPattern: ep), Int(bitPattern: sp))
                }
            }
        }
        return [r, e, s]
    }

    /// The whole family but setfsuid: `real`/`effective`/`saved` are the
    /// arguments (nil: the call has none; -1: leave it). `one` is
    /// setuid/setgid, whose privileged form sets all three.
    static func set(_ c: SyscallCall, group: Bool, real: UInt64?, effective: UInt64?, saved: UInt64?, one: Bool) throws -> Int64 {
        let name = SyscallNames.name(c.number)
        let process = c.process
        let rip = c.rip
        let wanted = [real, effective, saved].map { $0.map { UInt32(truncatingIfNeeded: $0) } }
        // setuid(-1) names no valid id: EINVAL (make_kuid).
        if one, wanted[1] == unchanged { throw Errno.inval }
        return try c.host { _ in
            let ids = hostIDs(group: group)
            let privileged = ProcessSyscalls.hasCapability(Int(group ? setGID : setUID))
            var result = ids
            if one {
                guard let id = wanted[1] else { return Errno.inval.result }
                if privileged { result = [id, id, id] }
                else if id == ids[0] || id == ids[2] { result[1] = id }
                else { return Errno.perm.result }
            } else {
                // Unprivileged, each new id must be one the caller has:
                // setreuid's real id the real or effective one, the others any.
                let allowedReal = saved == nil ? [ids[0], ids[1]] : ids
                for (k, id) in wanted.enumerated() {
                    guard let id, id != unchanged else { continue }
                    if !privileged && !(k == 0 ? allowedReal : ids).contains(id) { return Errno.perm.result }
                    result[k] = id
                }
                // setreuid also sets the saved id to the new effective one
                // when the real id is set or the effective one differs from the old real.
                if saved == nil, let r = wanted[0], let e = wanted[1],
                   r != unchanged || (e != unchanged && e != ids[0]) { result[2] = result[1] }
            }
            guard result == ids else {
                process.report("\(name) would change the recording's \(group ? "group" : "user") ids \(ids) to \(result), which detrec does not do; returning EPERM",
                               key: 0x3_0000_0000 | c.number, rip: rip)
                return Errno.perm.result
            }
            return 0
        }
    }

    /// setfsuid/setfsgid: the previous value whatever happens (the
    /// filesystem id follows the effective one, which never changes here).
    static func setFS(_ c: SyscallCall, group: Bool) throws -> Int64 {
        let wanted = UInt32(truncatingIfNeeded: c.arg(0))
        let process = c.process
        let rip = c.rip
        let name = SyscallNames.name(c.number)
        return try c.host { _ in
            let current = UInt32(truncatingIfNeeded: hostSyscall(group ? SYS.setfsgid : SYS.setfsuid, Int(unchanged)))
            let ids = hostIDs(group: group) + [current]
            let privileged = ProcessSyscalls.hasCapability(Int(group ? setGID : setUID))
            if wanted != current, wanted != unchanged, privileged || ids.contains(wanted) {
                process.report("\(name)(\(wanted)) would change the filesystem id, which detrec does not do",
                               key: 0x3_0000_0000 | c.number, rip: rip)
            }
            return Int64(current)
        }
    }

    /// setgroups(size, list): CAP_SETGID or EPERM; more than NGROUPS_MAX
    /// (65536) is EINVAL. With the capability, only the current list again.
    static func setgroups(_ c: SyscallCall) throws -> Int64 {
        let size = c.int(0)
        let process = c.process
        let rip = c.rip
        let memory = c.memory
        let address = c.arg(1)
        // Linux's order: the capability, the size, then the list (EFAULT).
        return try c.host { _ in
            guard ProcessSyscalls.hasCapability(Int(setGID)) else { return Errno.perm.result }
            guard size >= 0, size <= 65536 else { return Errno.inval.result }
            guard let list = try? memory.read(address, count: Int(size) * 4) else { return Errno.fault.result }
            let count = Int(getgroups(0, nil))
            var current = [gid_t](repeating: 0, count: max(count, 0))
            let n = Int(getgroups(Int32(current.count), &current))
            let asked = (0..<Int(size)).map { Bytes.u32(list, at: $0 * 4) }
            // The kernel sorts the list: the same set in any order is no change.
            guard n >= 0, Set(asked) == Set(current.prefix(n)) else {
                process.report("setgroups would change the recording's supplementary groups, which detrec does not do; returning EPERM",
                               key: 0x3_0000_0000 | SYS.setgroups, rip: rip)
                return Errno.perm.result
            }
            return 0
        }
    }
}
