import Glibc

/// inotify_init, inotify_init1, inotify_add_watch and inotify_rm_watch:
/// a host inotify instance while recording. Watch descriptors are the
/// host's and come back from the trace on replay, as do the events a read
/// returns (read(2) parks a blocking read while other threads can run);
/// poll, select and epoll see the host descriptor's readiness. Paths
/// resolve as the other path calls do.
enum InotifySyscalls {
    static let IN_CLOEXEC: Int32 = 0o2000000, IN_NONBLOCK: Int32 = 0o4000

    static func register(_ t: inout SyscallTable) {
        t.add(SYS.inotify_init) { c in try create(c, flags: 0) }
        t.add(SYS.inotify_init1) { c in try create(c, flags: c.int(0)) }
        t.add(SYS.inotify_add_watch, passthrough(.fd, .path, .value))
        t.add(SYS.inotify_rm_watch, passthrough(.fd, .value))
    }

    static func create(_ c: SyscallCall, flags: Int32) throws -> Int64 {
        guard flags & ~(IN_CLOEXEC | IN_NONBLOCK) == 0 else { throw Errno.inval }
        return try c.newDescriptor(name: "anon_inode:inotify", closeOnExec: flags & IN_CLOEXEC != 0) { _ in
            hostSyscall(SYS.inotify_init1, Int(flags | IN_CLOEXEC))
        }
    }
}
