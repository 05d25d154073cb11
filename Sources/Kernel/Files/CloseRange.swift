/// close_range: closes, or marks close-on-exec, every guest descriptor
/// from `first` to `last`; the guest's table is detrec's own, so this is
/// the same in record and replay (host descriptors close when their last
/// guest descriptor does).
enum CloseRange {
    static let CLOSE_RANGE_UNSHARE: UInt32 = 2, CLOSE_RANGE_CLOEXEC: UInt32 = 4

    static func register(_ t: inout SyscallTable) {
        t.add(SYS.close_range) { c in
            let first = UInt32(truncatingIfNeeded: c.arg(0)), last = UInt32(truncatingIfNeeded: c.arg(1))
            let flags = UInt32(truncatingIfNeeded: c.arg(2))
            guard flags & ~(CLOSE_RANGE_UNSHARE | CLOSE_RANGE_CLOEXEC) == 0, first <= last else { throw Errno.inval }
            let p = c.process
            // Threads share one table here; a private copy for one of them
            // cannot be kept. With one thread, only processes clone(CLONE_FILES)
            // made can share it.
            if flags & CLOSE_RANGE_UNSHARE != 0, p.threads.count > 1 {
                p.report("close_range with CLOSE_RANGE_UNSHARE in a process with several threads is not supported; returning EINVAL", key: SYS.close_range, rip: c.rip)
                throw Errno.inval
            }
            // A table shared by CLONE_FILES is copied first (unshare_fd).
            if flags & CLOSE_RANGE_UNSHARE != 0 { p.fileTable = SharedFileTable(p.files) }
            for fd in p.files.entries.keys where fd >= 0 && UInt32(fd) >= first && UInt32(fd) <= last {
                if flags & CLOSE_RANGE_CLOEXEC != 0 {
                    p.files.setCloseOnExec(fd, true)
                } else if let f = p.files.remove(fd) {
                    RecordLockSyscalls.closed(p, f)
                }
            }
            return 0
        }
    }
}
