import Glibc
import KVMUser

/// Reads, writes and the path-based file calls. Most are performed on the
/// host as they are (see `passthrough`); reads and writes add the iovec
/// handling and the replay echo of stdout/stderr.
enum FileSyscalls {
    static func register(_ t: inout SyscallTable) {
        t.addOutcome(SYS.read, .host) { c in
            if let mask = try c.file(0).signalMask { return try SignalFD.read(c, try c.file(0), mask: mask) }
            if let parked = c.waitUntilReady(try c.file(0), events: Int16(POLLIN)) { return parked }
            return .result(try performPassthrough(c, [.fd, .outFilled(sizeArg: 2), .value], waitOn: (0, Int16(POLLIN))))
        }
        t.add(SYS.pread64, passthrough(.fd, .outFilled(sizeArg: 2), .value, .value))
        t.addOutcome(SYS.write, .host, note: "a blocking pipe or socket is written in parts while other threads run", write)
        t.add(SYS.pwrite64, passthrough(.fd, .inputSized(sizeArg: 2), .value, .value))
        t.addOutcome(SYS.readv, .host) { c in
            if let parked = c.waitUntilReady(try c.file(0), events: Int16(POLLIN)) { return parked }
            return .result(try readv(c, positioned: false))
        }
        t.add(SYS.preadv, { c in try readv(c, positioned: true) })
        t.addOutcome(SYS.writev, .host) { c in try writev(c) }
        t.add(SYS.pwritev) { c in try pwritev(c) }
        t.add(SYS.lseek, passthrough(.fd, .value, .value))
        t.add(SYS.getdents64) { c in try getdents64(c) }
        t.add(SYS.getdents) { c in try getdents64(c, legacy: true) }
        t.add(SYS.fstat, passthrough(.fd, .out(144)))
        t.add(SYS.stat, passthrough(.path, .out(144)))
        t.add(SYS.lstat, passthrough(.path, .out(144)))
        t.add(SYS.newfstatat, passthrough(.dirfd, .path, .out(144), .value))
        t.add(SYS.statx, passthrough(.dirfd, .path, .value, .value, .out(256)))
        t.add(SYS.statfs, passthrough(.path, .out(120)))
        t.add(SYS.fstatfs, passthrough(.fd, .out(120)))
        t.add(SYS.access, passthrough(.path, .value))
        t.add(SYS.faccessat, passthrough(.dirfd, .path, .value))
        t.add(SYS.faccessat2, passthrough(.dirfd, .path, .value, .value))
        t.add(SYS.readlink) { c in try readlink(c, directory: nil, path: 0, buffer: 1, size: 2) }
        t.add(SYS.readlinkat) { c in try readlink(c, directory: try c.directory(0), path: 1, buffer: 2, size: 3) }
        t.add(SYS.mkdir, passthrough(.path, .value))
        t.add(SYS.mkdirat, passthrough(.dirfd, .path, .value))
        t.add(SYS.mknod, passthrough(.path, .value, .value))
        t.add(SYS.mknodat, passthrough(.dirfd, .path, .value, .value))
        t.add(SYS.rmdir, passthrough(.path))
        t.add(SYS.unlink, passthrough(.path))
        t.add(SYS.unlinkat, passthrough(.dirfd, .path, .value))
        t.add(SYS.rename, passthrough(.path, .path))
        t.add(SYS.renameat, passthrough(.dirfd, .path, .dirfd, .path))
        t.add(SYS.renameat2, passthrough(.dirfd, .path, .dirfd, .path, .value))
        t.add(SYS.symlink, passthrough(.string, .path))
        t.add(SYS.symlinkat, passthrough(.string, .dirfd, .path))
        t.add(SYS.link, passthrough(.path, .path))
        t.add(SYS.linkat, passthrough(.dirfd, .path, .dirfd, .path, .value))
        t.add(SYS.chmod, passthrough(.path, .value))
        t.add(SYS.fchmod, passthrough(.fd, .value))
        t.add(SYS.fchmodat, passthrough(.dirfd, .path, .value))
        t.add(SYS.chown, passthrough(.path, .value, .value))
        t.add(SYS.lchown, passthrough(.path, .value, .value))
        t.add(SYS.fchown, passthrough(.fd, .value, .value))
        t.add(SYS.fchownat, passthrough(.dirfd, .path, .value, .value, .value))
        t.add(SYS.truncate, passthrough(.path, .value))
        t.add(SYS.ftruncate, passthrough(.fd, .value))
        t.add(SYS.fsync, passthrough(.fd))
        t.add(SYS.fdatasync, passthrough(.fd))
        t.add(SYS.fadvise64, passthrough(.fd, .value, .value, .value))
        t.add(SYS.fallocate, passthrough(.fd, .value, .value, .value))
        t.addOutcome(SYS.flock, .host, note: "a lock held elsewhere: the thread parks, trying again every 10 ms", flock)
        t.add(SYS.utimensat, passthrough(.dirfd, .pathOrNull, .inputOrNull(32), .value))
        // The older forms: struct utimbuf (two longs) and struct timeval[2];
        // futimesat's NULL path means the directory descriptor itself.
        t.add(SYS.utime, passthrough(.path, .inputOrNull(16)))
        t.add(SYS.utimes, passthrough(.path, .inputOrNull(32)))
        t.add(SYS.futimesat, passthrough(.dirfd, .pathOrNull, .inputOrNull(32)))
        t.add(SYS.readahead, passthrough(.fd, .value, .value))
    }

    static let LOCK_NB: Int32 = 4

    /// flock(2): LOCK_NB is the form that does not wait.
    static func flock(_ c: SyscallCall) throws -> SyscallOutcome {
        let file = try c.file(0)
        let op = c.int(1)
        let fd = file.hostFD ?? -1   // none on replay, which never calls the host
        let call = { (op: Int32) -> Int64 in hostSyscall(SYS.flock, Int(fd), Int(op)) }
        if op & LOCK_NB != 0 { return .result(try c.host { _ in call(op) }) }
        return try HostTransfer.withoutWaiting(c, on: HostTransfer.retryLater, attempt: {
            let r = call(op | LOCK_NB)
            return r == -Int64(EWOULDBLOCK) ? nil : r
        }, plain: { call(op) })
    }

    /// readlink: the host answers, except for the links of the guest's
    /// /proc (exe, cwd, fd/N, self), which describe the guest.
    static func readlink(_ c: SyscallCall, directory: OpenFile?, path: Int, buffer: Int, size: Int) throws -> Int64 {
        let name = try c.cString(path, limit: SyscallCall.pathMax)
        let count = min(try c.size(size), maxTransfer)
        guard Int64(bitPattern: c.arg(size)) > 0 else { throw Errno.inval }
        try c.checkWritable(c.arg(buffer), count: count)
        let process = c.process
        let address = c.arg(buffer)
        let cwd = process.cwd
        return try c.host { effects throws(Errno) -> Int64 in
            let (target, hostName, hostDir) = GuestPath.hostArguments(name, from: directory, process: process, follow: false)
            switch target {
            case .denied(let e): throw e
            case .proc(let location):
                guard ProcFS.kind(location, family: process.family) == .link else { throw .inval }
                guard let target = ProcFS.link(location, family: process.family) else { throw .noent }
                let bytes = Array(target.utf8.prefix(count))
                try effects.write(address, bytes)
                return Int64(bytes.count)
            case .host, .hostProc:
                break
            }
            var out = [UInt8](repeating: 0, count: count)
            let dirFD = hostDir.map { Int($0.hostFD ?? -1) } ?? Int(cwd.hostFD)
            let n = (hostName + [0]).withUnsafeBytes { p in
                out.withUnsafeMutableBytes { o in
                    hostSyscall(SYS.readlinkat, dirFD, Int(bitPattern: p.baseAddress), Int(bitPattern: o.baseAddress), count)
                }
            }
            if n > 0 { try effects.write(address, out[0..<Int(n)]) }
            return n
        }
    }

    /// getdents64: the host's listing, or detrec's own for a directory of
    /// the guest's /proc. `legacy`: getdents, whose struct linux_dirent has
    /// the type in the record's last byte (LeakSanitizer lists threads so).
    static func getdents64(_ c: SyscallCall, legacy: Bool = false) throws -> Int64 {
        let file = try c.file(0)
        let count = min(try c.size(2), maxTransfer)
        try c.checkWritable(c.arg(1), count: count)
        let address = c.arg(1)
        return try c.host { effects throws(Errno) -> Int64 in
            if file.listing == nil, let fd = file.hostFD {
                var buffer = [UInt8](repeating: 0, count: count)
                let n = buffer.withUnsafeMutableBytes {
                    hostSyscall(legacy ? SYS.getdents : SYS.getdents64, Int(fd), Int(bitPattern: $0.baseAddress), count)
                }
                if n > 0 { try effects.write(address, buffer[0..<Int(n)]) }
                return n
            }
            let entries = [(".", UInt8(4)), ("..", UInt8(4))] + (file.listing ?? [])
            var out: [UInt8] = []
            while file.listingCursor < entries.count {
                let (name, type) = entries[file.listingCursor]
                let nameBytes = Array(name.utf8) + [0]
                // Both: the name's offset (19, or 18 with d_type after the name) plus the name and NUL, aligned.
                let length = (19 + nameBytes.count + 7) & ~7
                guard out.count + length <= count else { break }
                var record = Bytes.u64(UInt64(file.listingCursor + 1000)) + Bytes.u64(UInt64(file.listingCursor + 1))
                if legacy {
                    // d_reclen, d_name, padding, d_type last (fs/readdir.c filldir).
                    record += [UInt8(length & 0xff), UInt8(length >> 8)] + nameBytes
                    record += [UInt8](repeating: 0, count: length - 1 - record.count) + [type]
                } else {
                    record += [UInt8(length & 0xff), UInt8(length >> 8), type] + nameBytes
                    record += [UInt8](repeating: 0, count: length - record.count)
                }
                out += record
                file.listingCursor += 1
            }
            if out.isEmpty && file.listingCursor < entries.count { throw .inval }
            try effects.write(address, out)
            return Int64(out.count)
        }
    }

    /// write(2): performed on the host; replay re-emits what went to the
    /// inherited stdout/stderr. A pipe or socket waits as `HostTransfer` says.
    static func write(_ c: SyscallCall) throws -> SyscallOutcome {
        let file = try c.file(0)
        let count = try c.transferSize(buffer: 1, size: 2, write: false)
        let bytes = try c.read(c.arg(1), count: count)
        return try write(c, file, bytes)
    }

    /// write(2) and writev(2) of `bytes`. Into a /proc/<pid>/mem the
    /// recording writes the memory (at the file offset); replay, which
    /// sees a plain file, writes the carried bytes again in
    /// `HostTransfer.write` (`ProcMemoryCalls.replayWrite`).
    static func write(_ c: SyscallCall, _ file: OpenFile, _ bytes: [UInt8]) throws -> SyscallOutcome {
        if let comm = ProcCommFile.location(of: file) { return try ProcCommFile.write(c, comm, bytes) }
        if let mem = file.procMemory {
            let process = c.process
            let r = try c.host { effects throws(Errno) -> Int64 in
                ProcMemoryCalls.write(mem, at: mem.offset, bytes, advance: true, effects: &effects, process: process, others: true)
            }
            try echo(c, file, bytes, r)
            return .result(r)
        }
        return try HostTransfer.write(c, file, bytes, plain: plainWrite)
    }

    static func plainWrite(_ fd: Int32, _ b: UnsafeRawBufferPointer) -> Int64 {
        let n = Glibc.write(fd, b.baseAddress, b.count)
        return n < 0 ? -Int64(errno) : Int64(n)
    }

    /// After a write: the data is checked against the recording, and
    /// what went to the inherited stdout/stderr is re-emitted on replay.
    static func echo(_ c: SyscallCall, _ file: OpenFile, _ bytes: [UInt8], _ r: Int64) throws {
        guard r > 0 else { return }
        let written = bytes.prefix(Int(r))
        try c.world.checkData(written)
        if c.world.isReplaying, let fd = file.echo {
            c.world.echo(Array(written), to: fd)
        }
    }

    /// The (base, length) pairs of an iovec array, checked.
    static func iovecs(_ c: SyscallCall, _ i: Int, count: Int) throws(Errno) -> [(UInt64, Int)] {
        guard count >= 0, count <= 1024 else { throw .inval }
        let raw = try c.read(c.arg(i), count: count * 16)
        var out: [(UInt64, Int)] = []
        var total = 0
        for k in 0..<count {
            let base = Bytes.u64(raw, at: k * 16)
            let len = Bytes.u64(raw, at: k * 16 + 8)
            guard len <= UInt64(Int.max), total <= Int.max - Int(len) else { throw .inval }
            total += Int(len)
            out.append((base, Int(len)))
        }
        return out
    }

    /// The part of an iovec list a transfer can move: every vector must lie
    /// below TASK_SIZE (rw_copy_check_uvector, EFAULT), and the copy stops
    /// at the first page the guest may not access (a short count; EFAULT
    /// when nothing at all can move).
    static func reachable(_ c: SyscallCall, _ vectors: [(UInt64, Int)], write: Bool) throws(Errno) -> [(UInt64, Int)] {
        for (base, len) in vectors where len > 0 {
            let (end, overflow) = base.addingReportingOverflow(UInt64(len))
            guard !overflow, end <= GuestMemory.userLimit else { throw .fault }
        }
        var out: [(UInt64, Int)] = []
        var budget = maxTransfer
        for (base, len) in vectors {
            let wanted = min(len, budget)
            let extent = c.memory.accessibleExtent(base, count: wanted, write: write)
            out.append((base, extent))
            budget -= extent
            if extent < wanted { break }
        }
        let requested = vectors.contains { $0.1 > 0 }
        if requested && !out.contains(where: { $0.1 > 0 }) { throw .fault }
        return out
    }

    static func readv(_ c: SyscallCall, positioned: Bool) throws -> Int64 {
        let file = try c.file(0)
        let vectors = try reachable(c, try iovecs(c, 1, count: Int(c.int(2))), write: true)
        let total = vectors.reduce(0) { $0 + $1.1 }
        let offset = c.long(3)
        if let mem = file.procMemory {
            // The memory at the file offset (or the given one), scattered.
            return try c.host { effects throws(Errno) -> Int64 in
                let bytes = try mem.read(at: positioned ? UInt64(bitPattern: offset) : mem.offset, count: total).get()
                try VectorTransfers.scatter(bytes, count: bytes.count, over: vectors, &effects)
                if !positioned { mem.offset &+= UInt64(bytes.count) }
                return Int64(bytes.count)
            }
        }
        return try c.host { effects throws(Errno) -> Int64 in
            guard let fd = file.hostFD else { throw .badf }
            var buffer = [UInt8](unsafeUninitializedCapacity: total) { _, n in n = total }
            let n = buffer.withUnsafeMutableBytes { b in
                positioned ? pread(fd, b.baseAddress, total, Int(offset)) : Glibc.read(fd, b.baseAddress, total)
            }
            guard n >= 0 else { return -Int64(errno) }
            try VectorTransfers.scatter(buffer, count: n, over: vectors, &effects)
            return Int64(n)
        }
    }

    /// The bytes an iovec array names, gathered (up to `maxTransfer`).
    static func gather(_ c: SyscallCall) throws -> [UInt8] {
        var bytes: [UInt8] = []
        for (base, len) in try reachable(c, try iovecs(c, 1, count: Int(c.int(2))), write: false) {
            bytes += try c.read(base, count: len)
        }
        return bytes
    }

    /// writev(2): the gathered bytes, written as `write` writes them.
    static func writev(_ c: SyscallCall) throws -> SyscallOutcome {
        let file = try c.file(0)
        return try write(c, file, try gather(c))
    }

    static func pwritev(_ c: SyscallCall) throws -> Int64 {
        let file = try c.file(0)
        let bytes = try gather(c)
        let offset = c.long(3)
        let process = c.process
        let outcome = try c.hostOutcome { effects throws(Errno) -> Int64 in
            if let mem = file.procMemory {
                return ProcMemoryCalls.write(mem, at: UInt64(bitPattern: offset), bytes, advance: false,
                                             effects: &effects, process: process, others: true)
            }
            guard let fd = file.hostFD else { throw .badf }
            let n = bytes.withUnsafeBytes { b in pwrite(fd, b.baseAddress, b.count, Int(offset)) }
            return n < 0 ? -Int64(errno) : Int64(n)
        }
        // Another process's memory, written again from what the recording carried.
        if !outcome.carried.isEmpty { try ProcMemoryCalls.replayWrite(c, outcome, bytes: bytes) }
        try echo(c, file, bytes, outcome.result)
        return outcome.result
    }
}
