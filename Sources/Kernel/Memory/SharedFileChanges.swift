import Glibc

/// Which host calls can change what a mapped file holds, other than
/// detrec's own write-back of mapped pages: after one, the MAP_SHARED
/// views of that file are read again from it (`SharedMemory.refresh`);
/// after any other call they cannot have changed, so none is (reading
/// every page back after every call made postgres's initdb 100 times
/// slower than natively). Writers outside the recording are not seen
/// either way (docs/architecture.md).
enum SharedFileChanges {
    enum Target: Equatable {
        /// Nothing a mapping shows.
        case none
        /// The file open on this guest descriptor, if it is a regular one.
        case descriptor(Int32)
        /// Any file: a path, or a call whose targets detrec does not decode.
        case any
    }

    static func target(number: UInt64, args: [UInt64]) -> Target {
        func arg(_ i: Int) -> UInt64 { i < args.count ? args[i] : 0 }
        func fd(_ i: Int) -> Target { .descriptor(Int32(truncatingIfNeeded: arg(i))) }
        /// An open whose flags, argument `i`, may truncate whatever file it opens.
        func opening(flags i: Int) -> Target { Int32(truncatingIfNeeded: arg(i)) & O_TRUNC != 0 ? .any : .none }
        switch SyscallNumber.dispatched(number) {
        case SYS.write, SYS.pwrite64, SYS.writev, SYS.pwritev, SYS.pwritev2,
             SYS.ftruncate, SYS.fallocate, SYS.ioctl, SYS.sendfile:
            return fd(0)
        case SYS.copy_file_range, SYS.splice:
            return fd(2)
        case SYS.truncate, SYS.creat, SYS.openat2, SYS.io_uring_enter, SYS.io_submit:
            return .any
        case SYS.open:
            return opening(flags: 1)
        case SYS.openat, SYS.open_by_handle_at:
            return opening(flags: 2)
        default:
            return .none
        }
    }

    /// Marks the file objects the call may have changed as due for a
    /// refresh in every view (recording only: after the call's host work).
    static func note(number: UInt64, args: [UInt64], process p: Process) {
        let objects = p.family.sharedObjects.values.filter { $0.file != nil }
        guard !objects.isEmpty else { return }
        switch target(number: number, args: args) {
        case .none:
            return
        case .any:
            for o in objects { o.fileEpoch &+= 1 }
        case .descriptor(let fd):
            guard let host = p.files[fd]?.hostFD, let inode = SharedObject.inode(of: host) else { return }
            for o in objects where o.hostInode == inode { o.fileEpoch &+= 1 }
        }
    }
}
