import Glibc

/// fcntl's commands other than the locks (DescriptorSyscalls keeps
/// F_DUPFD, F_GETFD/F_SETFD and the lock commands). Flags, pipe sizes,
/// seals and write hints are the host descriptor's; O_ASYNC, the owner and
/// the I/O signal are kept per open file by detrec (`AsyncNotification`),
/// since on the host they would signal detrec. Leases and F_NOTIFY are
/// refused (EINVAL, as a kernel without them answers, with a report): a
/// lease break or directory notification would signal detrec and, for a
/// lease, block the opener inside the host's open for lease-break-time.
enum FcntlCommands {
    static let F_GETFL: Int32 = 3, F_SETFL: Int32 = 4, F_SETOWN: Int32 = 8, F_GETOWN: Int32 = 9
    static let F_SETSIG: Int32 = 10, F_GETSIG: Int32 = 11, F_SETOWN_EX: Int32 = 15, F_GETOWN_EX: Int32 = 16
    static let F_SETLEASE: Int32 = 1024, F_GETLEASE: Int32 = 1025, F_NOTIFY: Int32 = 1026, F_DUPFD_QUERY: Int32 = 1027
    static let F_SETPIPE_SZ: Int32 = 1031, F_GETPIPE_SZ: Int32 = 1032, F_ADD_SEALS: Int32 = 1033, F_GET_SEALS: Int32 = 1034
    static let F_GET_RW_HINT: Int32 = 1035, F_SET_RW_HINT: Int32 = 1036
    static let F_GET_FILE_RW_HINT: Int32 = 1037, F_SET_FILE_RW_HINT: Int32 = 1038
    static let F_UNLCK: Int64 = 2
    /// The flags F_SETFL may change (SETFL_MASK): O_APPEND, O_NONBLOCK, O_NDELAY, O_DIRECT, O_NOATIME, and O_ASYNC.
    static let O_ASYNC: Int32 = 0o20000

    /// The commands this file answers; nil for one it does not know.
    static func perform(_ c: SyscallCall, _ file: OpenFile) throws -> Int64? {
        switch c.int(1) {
        case F_GETFL:
            let r = try performPassthrough(c, [.fd, .value, .value])
            return r < 0 ? r : r | (file.async ? Int64(O_ASYNC) : 0)
        case F_SETFL:
            return try setFlags(c, file)
        case F_SETPIPE_SZ, F_GETPIPE_SZ, F_ADD_SEALS, F_GET_SEALS:
            return try performPassthrough(c, [.fd, .value, .value])
        case F_GET_RW_HINT, F_GET_FILE_RW_HINT:
            return try performPassthrough(c, [.fd, .value, .out(8)])
        case F_SET_RW_HINT, F_SET_FILE_RW_HINT:
            return try performPassthrough(c, [.fd, .value, .input(8)])
        case F_GETOWN:
            // A group owner reads as its negated id.
            return Int64(file.owner.type == FileOwner.group ? -file.owner.pid : file.owner.pid)
        case F_SETOWN:
            let who = c.int(2)
            let owner = who < 0 ? FileOwner(type: FileOwner.group, pid: who == Int32.min ? 0 : -who)
                                : FileOwner(type: FileOwner.process, pid: who)
            if who == Int32.min { throw Errno.inval }
            return try setOwner(c, file, owner)
        case F_GETOWN_EX:
            try c.write(c.arg(2), Bytes.i32(file.owner.type) + Bytes.i32(file.owner.pid))
            return 0
        case F_SETOWN_EX:
            let raw = try c.read(c.arg(2), count: 8)
            let owner = FileOwner(type: Int32(bitPattern: Bytes.u32(raw, at: 0)), pid: Int32(bitPattern: Bytes.u32(raw, at: 4)))
            guard [FileOwner.tid, FileOwner.process, FileOwner.group].contains(owner.type) else { throw Errno.inval }
            return try setOwner(c, file, owner)
        case F_GETSIG:
            return Int64(file.ioSignal)
        case F_SETSIG:
            // valid_signal of the int argument: 0 (SIGIO) to _NSIG.
            let signal = c.int(2)
            guard signal >= 0, signal <= 64 else { throw Errno.inval }
            file.ioSignal = signal
            return 0
        case F_GETLEASE:
            // No recorded process can hold one (F_SETLEASE is refused).
            return F_UNLCK
        case F_SETLEASE:
            c.process.report("fcntl F_SETLEASE: leases are not emulated (a lease break would signal detrec and block the opener on the host); returning EINVAL",
                             key: 0x2_0000_0000 | UInt64(F_SETLEASE), rip: c.rip)
            throw Errno.inval
        case F_NOTIFY:
            c.process.report("fcntl F_NOTIFY: directory notification is not emulated (its signal would go to detrec); returning EINVAL",
                             key: 0x2_0000_0000 | UInt64(F_NOTIFY), rip: c.rip)
            throw Errno.inval
        case F_DUPFD_QUERY:
            // 1 when the other descriptor is the same open file description.
            guard let other = c.process.files[c.int(2)] else { throw Errno.badf }
            return other === file ? 1 : 0
        default:
            return nil
        }
    }

    /// F_SETFL: O_ASYNC here, the rest (O_APPEND, O_NONBLOCK, O_DIRECT,
    /// O_NOATIME) on the host, which refuses O_DIRECT where the filesystem
    /// has none (EINVAL) and O_NOATIME on another's file (EPERM).
    static func setFlags(_ c: SyscallCall, _ file: OpenFile) throws -> Int64 {
        let flags = c.int(2)
        let r = try performPassthrough(c.withArgument(2, UInt64(UInt32(bitPattern: flags & ~O_ASYNC))), [.fd, .value, .value])
        guard r == 0 else { return r }
        return try setAsync(c, file, on: flags & O_ASYNC != 0)
    }

    /// O_ASYNC by F_SETFL or FIOASYNC.
    static func setAsync(_ c: SyscallCall, _ file: OpenFile, on: Bool) throws -> Int64 {
        AsyncNotification.set(c.process.family, file, on: on)
        return 0
    }

    /// F_SETOWN and F_SETOWN_EX: a process, thread or group of the
    /// recording (ESRCH for any other; 0 clears the owner).
    static func setOwner(_ c: SyscallCall, _ file: OpenFile, _ owner: FileOwner) throws -> Int64 {
        let family: ProcessFamily = c.process.family
        if owner.pid != 0 {
            let exists: Bool
            switch owner.type {
            case FileOwner.tid: exists = family.find(owner.pid) != nil
            case FileOwner.group: exists = !ProcessGroups.members(family, owner.pid).isEmpty
            default: exists = family.processes.contains { $0.zombieStatus == nil && $0.pid == owner.pid }
            }
            guard exists else { throw Errno.srch }
        }
        file.owner = owner
        return 0
    }
}

extension SyscallCall {
    /// The same call with argument `i` replaced.
    func withArgument(_ i: Int, _ value: UInt64) -> SyscallCall {
        var args = self.args
        args[i] = value
        var call = SyscallCall(number: number, args: args, rip: rip, process: process, world: world)
        call.interrupted = interrupted
        call.resumedStart = resumedStart
        return call
    }
}
