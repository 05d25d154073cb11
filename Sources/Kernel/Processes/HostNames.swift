/// sethostname and setdomainname, as kernel/sys.c checks them. The
/// recording shares the host's UTS namespace (uname passes through), and
/// detrec never changes the host's names for it (replay must touch
/// nothing), so where Linux would set one the call is EPERM, as for a
/// caller without CAP_SYS_ADMIN, with a report; every error Linux finds
/// first is Linux's. As clock_settime is (`ClockSetting`).
enum HostNames {
    /// __NEW_UTS_LEN.
    static let maximumLength: Int64 = 64

    static func register(_ t: inout SyscallTable) {
        let note = "never sets the host's name: EPERM (reported with CAP_SYS_ADMIN) after Linux's checks"
        t.add(SYS.sethostname, .emulated, note: note) { c in try set(c, "the host name") }
        t.add(SYS.setdomainname, .emulated, note: note) { c in try set(c, "the NIS domain name") }
    }

    static func set(_ c: SyscallCall, _ what: String) throws -> Int64 {
        guard c.process.current.credentials.capable(Credentials.CAP_SYS_ADMIN) else { throw Errno.perm }
        let length = Int64(c.int(1))
        guard length >= 0, length <= maximumLength else { throw Errno.inval }
        _ = try c.read(c.arg(0), count: Int(length))
        c.process.report("\(SyscallNames.name(c.number)) would set \(what), which detrec does not do; returning EPERM",
                         key: 0x3_0000_0000 | c.number, rip: c.rip)
        throw Errno.perm
    }
}
