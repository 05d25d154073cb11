import Glibc

/// chroot(2). Linux's checks come first and in its order (ksys_chroot):
/// the path must lead to a directory (ENOENT, ENOTDIR, ELOOP...), which
/// must be searchable (EACCES), and the caller needs CAP_SYS_CHROOT in its
/// emulated credentials (EPERM). An unprivileged caller, or a bad path,
/// thus gets Linux's answer. A permitted chroot to the root the process
/// already has (the host's "/", which every recorded process keeps) changes
/// nothing and succeeds, as on Linux.
///
/// Any other root is refused by name: detrec resolves every guest path,
/// absolute symlink, /proc/PID/root, getcwd and exec interpreter against
/// the host's root, and a per-process root would have to rebase them all
/// (RESOLVE_IN_ROOT for each lookup). What debootstrap or a build sandbox
/// needs from chroot is that, so it is ENOSYS with a report instead of a
/// success that would leave the process outside its new root.
enum ChangeRoot {
    static func register(_ t: inout SyscallTable) {
        t.add(SYS.chroot, .host, note: "Linux's checks (ENOENT, ENOTDIR, EACCES, EPERM without CAP_SYS_CHROOT); chroot to the current root succeeds; any other root is ENOSYS (per-process roots are not emulated)", chroot)
    }

    static func chroot(_ c: SyscallCall) throws -> Int64 {
        let name = try c.cString(0, limit: SyscallCall.pathMax)
        let cwd = c.process.cwd
        // 0 or -errno; the trace carries whether it is the current root.
        let outcome = try c.hostOutcome { effects throws(Errno) -> Int64 in
            let fd = Int32(truncatingIfNeeded: (name + [0]).withUnsafeBytes { p in
                hostSyscall(SYS.openat, Int(cwd.hostFD), Int(bitPattern: p.baseAddress),
                            Int(WorkingDirectorySyscalls.O_PATH | O_DIRECTORY | O_CLOEXEC))
            })
            guard fd >= 0 else { return Int64(fd) }
            defer { Glibc.close(fd) }
            let ok = WorkingDirectorySyscalls.searchable(fd)
            guard ok == 0 else { return ok }
            var target = stat(), root = stat()
            guard fstat(fd, &target) == 0, lstat("/", &root) == 0 else { return -Int64(errno) }
            effects.carry([target.st_dev == root.st_dev && target.st_ino == root.st_ino ? 1 : 0])
            return 0
        }
        guard outcome.result == 0 else { return outcome.result }
        guard c.process.current.credentials.capable(Credentials.CAP_SYS_CHROOT) else { throw Errno.perm }
        if outcome.carried.first == [1] { return 0 }
        c.process.report("chroot to \(String(decoding: name, as: UTF8.self)): a root other than the host's is not emulated (paths, symlinks and /proc/PID/root resolve against the host's root); returning ENOSYS",
                         key: SYS.chroot, rip: c.rip)
        throw Errno.nosys
    }
}
