import Glibc

/// The umask, each process's own (`ProcessAttributes.umask`). The host
/// applies it where it creates files, as Linux does (so a default ACL
/// still overrides it): detrec's own umask is set to the guest's around
/// each host call that creates something, and put back after.
enum FileCreationMask {
    static func register(_ t: inout SyscallTable) {
        t.add(SYS.umask) { c in
            let old = c.process.umask
            c.process.umask = UInt32(truncatingIfNeeded: c.arg(0)) & 0o777
            return Int64(old)
        }
    }

    /// The calls that create files with a mode the umask applies to.
    static let creating: Set<UInt64> = [SYS.mkdir, SYS.mkdirat, SYS.mknod, SYS.mknodat, SYS.bind]

    /// Runs a host call with detrec's umask set to `mask`, when there is
    /// one (recording only).
    static func applying<T, E: Error>(_ mask: UInt32?, _ body: () throws(E) -> T) throws(E) -> T {
        guard let mask else { return try body() }
        let saved = Glibc.umask(mode_t(mask))
        defer { Glibc.umask(saved) }
        return try body()
    }
}
