import Glibc

/// eventfd and eventfd2: a host eventfd while recording, so its counter,
/// EFD_SEMAPHORE's one-at-a-time reads, EFD_NONBLOCK's EAGAIN and its
/// readiness for poll and epoll are the host kernel's; reads and writes go
/// through read(2) and write(2) like a pipe's (a blocking read parks its
/// thread while others can run). Replay takes every result from the trace.
enum EventFD {
    static let EFD_SEMAPHORE: Int32 = 1, EFD_CLOEXEC: Int32 = 0o2000000, EFD_NONBLOCK: Int32 = 0o4000

    static func register(_ t: inout SyscallTable) {
        // The old call takes no flags.
        t.add(SYS.eventfd) { c in try create(c, flags: 0) }
        t.add(SYS.eventfd2) { c in try create(c, flags: c.int(1)) }
    }

    static func create(_ c: SyscallCall, flags: Int32) throws -> Int64 {
        guard flags & ~(EFD_SEMAPHORE | EFD_CLOEXEC | EFD_NONBLOCK) == 0 else { throw Errno.inval }
        let initial = UInt32(truncatingIfNeeded: c.arg(0))
        return try c.newDescriptor(name: "anon_inode:[eventfd]", closeOnExec: flags & EFD_CLOEXEC != 0) { _ in
            hostSyscall(SYS.eventfd2, Int(initial), Int(flags | EFD_CLOEXEC))
        }
    }
}
