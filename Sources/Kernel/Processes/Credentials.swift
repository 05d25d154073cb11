import Glibc

/// A thread's credentials, as Linux's `struct cred` keeps them: real,
/// effective, saved and filesystem ids, the supplementary groups (sorted, as
/// groups_sort leaves them), the capability sets and the securebits. Each
/// guest thread has its own (glibc's set*id broadcast changes every thread
/// one by one); fork and clone copy the caller's, exec applies its rules.
/// Deterministic: the first process starts with detrec's own (kept in the
/// trace header), every change is emulated, so replay computes the same.
public struct Credentials: Equatable, Sendable {
    public var uid: UInt32, euid: UInt32, suid: UInt32, fsuid: UInt32
    public var gid: UInt32, egid: UInt32, sgid: UInt32, fsgid: UInt32
    public var groups: [UInt32]
    public var inheritable: UInt64, permitted: UInt64, effective: UInt64, bounding: UInt64, ambient: UInt64
    public var securebits: UInt32

    public static let CAP_CHOWN = 0, CAP_DAC_OVERRIDE = 1, CAP_FOWNER = 3, CAP_KILL = 5
    public static let CAP_SETGID = 6, CAP_SETUID = 7, CAP_SETPCAP = 8, CAP_SYS_CHROOT = 18, CAP_SYS_PTRACE = 19
    public static let CAP_SYS_ADMIN = 21, CAP_SYS_NICE = 23, CAP_SYS_RESOURCE = 24
    /// CAP_FS_MASK: CHOWN, DAC_OVERRIDE, DAC_READ_SEARCH, FOWNER, FSETID,
    /// LINUX_IMMUTABLE (9) and MAC_OVERRIDE (32), which follow the fsuid.
    public static let filesystemCapabilities: UInt64 = 0x1f | 1 << 9 | 1 << 32
    /// SECURE_KEEP_CAPS (bit 4) and its lock (bit 5).
    public static let keepCapsBit: UInt32 = 1 << 4, keepCapsLocked: UInt32 = 1 << 5
    static let root: UInt32 = 0

    public init(uid: UInt32, euid: UInt32, suid: UInt32, fsuid: UInt32,
                gid: UInt32, egid: UInt32, sgid: UInt32, fsgid: UInt32, groups: [UInt32],
                inheritable: UInt64, permitted: UInt64, effective: UInt64, bounding: UInt64, ambient: UInt64,
                securebits: UInt32) {
        self.uid = uid; self.euid = euid; self.suid = suid; self.fsuid = fsuid
        self.gid = gid; self.egid = egid; self.sgid = sgid; self.fsgid = fsgid
        self.groups = groups.sorted()
        self.inheritable = inheritable; self.permitted = permitted; self.effective = effective
        self.bounding = bounding; self.ambient = ambient; self.securebits = securebits
    }

    /// A process started by exec with these ids and no more (tests, and
    /// traces from before the credentials were kept): root gets every
    /// capability up to CAP_LAST_CAP, as the kernel's init does.
    public init(uid: UInt32, euid: UInt32, gid: UInt32, egid: UInt32) {
        let all: UInt64 = (1 << (ProcessControlSyscalls.lastCapability + 1)) - 1
        self.init(uid: uid, euid: euid, suid: euid, fsuid: euid, gid: gid, egid: egid, sgid: egid, fsgid: egid, groups: [],
                  inheritable: 0, permitted: uid == 0 || euid == 0 ? all : 0, effective: euid == 0 ? all : 0,
                  bounding: all, ambient: 0, securebits: 0)
    }

    public func capable(_ bit: Int) -> Bool { bit >= 0 && bit < 64 && effective & (1 << UInt64(bit)) != 0 }

    public var keepCaps: Bool { securebits & Credentials.keepCapsBit != 0 }

    /// in_group_p: the fsgid or a supplementary group.
    public func inGroup(_ gid: UInt32) -> Bool { gid == fsgid || groups.contains(gid) }

    /// cap_emulate_setxuid: capabilities follow a change of the real,
    /// effective or saved uid (unless SECURE_NO_SETUID_FIXUP, bit 2).
    mutating func fixCapabilities(after old: Credentials) {
        guard securebits & 1 << 2 == 0 else { return }
        let hadRoot = old.uid == Self.root || old.euid == Self.root || old.suid == Self.root
        let hasRoot = uid == Self.root || euid == Self.root || suid == Self.root
        if hadRoot && !hasRoot {
            if !keepCaps { permitted = 0; effective = 0 }
            ambient = 0
        }
        if old.euid == Self.root && euid != Self.root { effective = 0 }
        if old.euid != Self.root && euid == Self.root { effective = permitted }
    }

    /// LSM_SETID_FS: the filesystem capabilities follow a change of fsuid to or from root.
    mutating func fixFilesystemCapabilities(after oldFSUID: UInt32) {
        guard securebits & 1 << 2 == 0 else { return }
        if oldFSUID == Self.root && fsuid != Self.root { effective &= ~Self.filesystemCapabilities }
        if oldFSUID != Self.root && fsuid == Self.root { effective |= permitted & Self.filesystemCapabilities }
    }

    /// What exec makes of them (cap_bprm_creds_from_file for a file without
    /// set-id bits or file capabilities, which detrec never honours): the
    /// saved and filesystem ids become the effective ones; root (real or
    /// effective) gets the bounding set plus the inheritable one as
    /// permitted, effective if the euid is root; others keep the ambient
    /// set. SECURE_KEEP_CAPS does not survive.
    public func afterExec() -> Credentials {
        var n = self
        n.suid = euid; n.fsuid = euid
        n.sgid = egid; n.fsgid = egid
        let privileged = securebits & 1 == 0   // SECURE_NOROOT
        if privileged && (euid == Self.root || uid == Self.root) {
            n.permitted = bounding | inheritable
        } else {
            n.permitted = 0
        }
        n.permitted |= n.ambient
        n.effective = privileged && euid == Self.root ? n.permitted : n.ambient
        n.securebits &= ~Credentials.keepCapsBit
        return n
    }

    /// As the trace header's extras keep them: one line of numbers.
    public var encoded: String {
        let ids = [uid, euid, suid, fsuid, gid, egid, sgid, fsgid].map { String($0) }
        let caps = [inheritable, permitted, effective, bounding, ambient].map { String($0, radix: 16) }
        return (ids + caps + [String(securebits)]).joined(separator: " ") + ";" + groups.map { String($0) }.joined(separator: " ")
    }

    public init?(encoded: String) {
        let halves = encoded.split(separator: ";", omittingEmptySubsequences: false)
        guard halves.count == 2 else { return nil }
        let f = halves[0].split(separator: " ")
        guard f.count == 14 else { return nil }
        let ids = f[0..<8].compactMap { UInt32($0) }
        let caps = f[8..<13].compactMap { UInt64($0, radix: 16) }
        let groups = halves[1].split(separator: " ").compactMap { UInt32($0) }
        guard ids.count == 8, caps.count == 5, let bits = UInt32(f[13]) else { return nil }
        self.init(uid: ids[0], euid: ids[1], suid: ids[2], fsuid: ids[3], gid: ids[4], egid: ids[5], sgid: ids[6], fsgid: ids[7],
                  groups: groups, inheritable: caps[0], permitted: caps[1], effective: caps[2], bounding: caps[3],
                  ambient: caps[4], securebits: bits)
    }

    /// detrec's own host thread's, now (recording only).
    public static func ofThisThread() -> Credentials {
        func three(_ n: UInt64) -> [UInt32] {
            var v = [UInt32](repeating: 0, count: 3)
            v.withUnsafeMutableBufferPointer { p in
                guard let b = p.baseAddress else { return }
                _ = hostSyscall(n, Int(bitPattern: b), Int(bitPattern: b + 1), Int(bitPattern: b + 2))
            }
            return v
        }
        let u = three(SYS.getresuid), g = three(SYS.getresgid)
        let fsuid = UInt32(truncatingIfNeeded: hostSyscall(SYS.setfsuid, -1))
        let fsgid = UInt32(truncatingIfNeeded: hostSyscall(SYS.setfsgid, -1))
        let count = max(0, Int(getgroups(0, nil)))
        var list = [gid_t](repeating: 0, count: count)
        let n = count == 0 ? 0 : max(0, Int(getgroups(Int32(count), &list)))
        var header: [UInt32] = [0x2008_0522, 0]
        var data = [UInt32](repeating: 0, count: 6)
        _ = header.withUnsafeMutableBufferPointer { h in
            data.withUnsafeMutableBufferPointer { d in hostSyscall(SYS.capget, Int(bitPattern: h.baseAddress), Int(bitPattern: d.baseAddress)) }
        }
        func set(_ i: Int) -> UInt64 { UInt64(data[i]) | UInt64(data[i + 3]) << 32 }
        var bounding: UInt64 = 0, ambient: UInt64 = 0
        for bit in 0...ProcessControlSyscalls.lastCapability {
            if hostSyscall(SYS.prctl, 23, Int(bit)) == 1 { bounding |= 1 << bit }          // PR_CAPBSET_READ
            if hostSyscall(SYS.prctl, 47, 1, Int(bit), 0, 0) == 1 { ambient |= 1 << bit }   // PR_CAP_AMBIENT_IS_SET
        }
        let bits = UInt32(truncatingIfNeeded: max(0, hostSyscall(SYS.prctl, 27)))          // PR_GET_SECUREBITS
        return Credentials(uid: u[0], euid: u[1], suid: u[2], fsuid: fsuid, gid: g[0], egid: g[1], sgid: g[2], fsgid: fsgid,
                           groups: Array(list.prefix(n)), inheritable: set(2), permitted: set(1), effective: set(0),
                           bounding: bounding, ambient: ambient, securebits: bits)
    }
}
