/// unshare(2): the calling process stops sharing what clone shared with
/// it, as ksys_unshare: the working directory and umask (CLONE_FS), the
/// descriptor table (CLONE_FILES) and the semaphore adjustments
/// (CLONE_SYSVSEM, whose adjustments apply as at exit). The threads of a
/// process share one of each here, so these are refused by name in a
/// process with several threads, where Linux would give the calling
/// thread alone a copy. CLONE_THREAD, CLONE_SIGHAND and CLONE_VM change
/// nothing in a process that shares none of them (and are EINVAL
/// otherwise, as on Linux). Namespaces are refused by name.
enum Unshare {
    static func register(_ t: inout SyscallTable) {
        t.add(SYS.unshare, .emulated,
              note: "CLONE_FS, CLONE_FILES, CLONE_SYSVSEM (single-threaded); CLONE_THREAD/SIGHAND/VM as Linux's checks; namespaces refused (EINVAL, reported)",
              unshare)
    }

    static let CLONE_NEWTIME: UInt64 = 0x80, CLONE_FS: UInt64 = 0x200, CLONE_FILES: UInt64 = 0x400
    static let CLONE_SIGHAND: UInt64 = 0x800, CLONE_VM: UInt64 = 0x100, CLONE_THREAD: UInt64 = 0x10000
    static let CLONE_NEWNS: UInt64 = 0x20000, CLONE_SYSVSEM: UInt64 = 0x40000, CLONE_NEWCGROUP: UInt64 = 0x200_0000
    static let CLONE_NEWUTS: UInt64 = 0x400_0000, CLONE_NEWIPC: UInt64 = 0x800_0000, CLONE_NEWUSER: UInt64 = 0x1000_0000
    static let CLONE_NEWPID: UInt64 = 0x2000_0000, CLONE_NEWNET: UInt64 = 0x4000_0000

    static let namespaces: [(flag: UInt64, name: String)] = [
        (CLONE_NEWNS, "CLONE_NEWNS"), (CLONE_NEWCGROUP, "CLONE_NEWCGROUP"), (CLONE_NEWUTS, "CLONE_NEWUTS"),
        (CLONE_NEWIPC, "CLONE_NEWIPC"), (CLONE_NEWUSER, "CLONE_NEWUSER"), (CLONE_NEWPID, "CLONE_NEWPID"),
        (CLONE_NEWNET, "CLONE_NEWNET"), (CLONE_NEWTIME, "CLONE_NEWTIME"),
    ]
    /// Every flag unshare knows (check_unshare_flags).
    static let known = namespaces.reduce(CLONE_THREAD | CLONE_FS | CLONE_SIGHAND | CLONE_VM | CLONE_FILES | CLONE_SYSVSEM) { $0 | $1.flag }

    static func unshare(_ c: SyscallCall) throws -> Int64 {
        let p = c.process
        var flags = c.arg(0)
        guard flags & ~known == 0 else { throw Errno.inval }
        // What each flag implies (ksys_unshare).
        if flags & CLONE_NEWUSER != 0 { flags |= CLONE_THREAD | CLONE_FS }
        if flags & CLONE_VM != 0 { flags |= CLONE_SIGHAND }
        if flags & CLONE_SIGHAND != 0 { flags |= CLONE_THREAD }
        if flags & CLONE_NEWNS != 0 { flags |= CLONE_FS }
        // check_unshare_flags: a thread cannot leave its group, nor a process
        // its memory while another process shares it (signal handlers are
        // never shared between processes here).
        if flags & (CLONE_THREAD | CLONE_SIGHAND | CLONE_VM) != 0, p.threads.count > 1 { throw Errno.inval }
        if flags & CLONE_VM != 0, p.family.processes.contains(where: { $0 !== p && $0.zombieStatus == nil && $0.mm === p.mm }) {
            throw Errno.inval
        }
        if let refused = namespaces.first(where: { flags & $0.flag != 0 }) {
            p.report("unshare with \(refused.name) (a new namespace) is not supported; returning EINVAL", key: SYS.unshare | refused.flag << 32, rip: c.rip)
            throw Errno.inval
        }
        let perThread = [(CLONE_FS, "CLONE_FS"), (CLONE_FILES, "CLONE_FILES"), (CLONE_SYSVSEM, "CLONE_SYSVSEM")]
        if p.threads.count > 1, let (flag, name) = perThread.first(where: { flags & $0.0 != 0 }) {
            p.report("unshare with \(name) in a process with several threads is not supported (its threads share one copy here); returning EINVAL",
                     key: SYS.unshare | flag << 32, rip: c.rip)
            throw Errno.inval
        }
        if flags & CLONE_FS != 0 { p.fs = p.fs.copy() }
        if flags & CLONE_FILES != 0 { p.fileTable = SharedFileTable(p.files) }
        // The last holder of the adjustments (each process has its own
        // here) applies them, and starts without (exit_sem).
        if flags & CLONE_SYSVSEM != 0 { Semaphores.processEnded(p) }
        return 0
    }
}
