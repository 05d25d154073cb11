import Glibc

/// Calls that create, copy and close descriptors, and the ones that look
/// at several at once (poll) or at a device (ioctl). The guest's table is
/// kept by detrec (lowest free number, close-on-exec per descriptor); the
/// host descriptor behind each is detrec's own and never seen by the guest.
enum DescriptorSyscalls {
    static func register(_ t: inout SyscallTable) {
        t.addOutcome(SYS.open, .host, note: fifoNote) { c in try open(c, dir: nil, path: 0, flags: c.int(1), mode: c.int(2)) }
        t.addOutcome(SYS.openat, .host, note: fifoNote) { c in try open(c, dir: 0, path: 1, flags: c.int(2), mode: c.int(3)) }
        t.addOutcome(SYS.creat, .host, note: fifoNote) { c in
            try open(c, dir: nil, path: 0, flags: O_CREAT | O_WRONLY | O_TRUNC, mode: c.int(1))
        }
        t.add(SYS.close, .emulated, close)
        t.add(SYS.dup, .emulated, dup)
        t.add(SYS.dup2, .emulated) { c in try dup3(c, flags: 0, sameIsError: false) }
        t.add(SYS.dup3, .emulated) { c in try dup3(c, flags: c.int(2), sameIsError: true) }
        t.addOutcome(SYS.fcntl, .host, note: "POSIX record locks kept per guest process (F_SETLKW parks, trying again every 10 ms); O_ASYNC/F_SETOWN/F_SETSIG signal the recorded owner; F_SETLEASE and F_NOTIFY refused (EINVAL, reported)") { c in
            RecordLocks.commands.contains(c.int(1)) ? try RecordLockSyscalls.fcntl(c) : .result(try fcntl(c))
        }
        t.add(SYS.pipe) { c in try pipe(c, flags: 0) }
        t.add(SYS.pipe2) { c in try pipe(c, flags: c.int(1)) }
        t.addOutcome(SYS.poll, .host) { c in try poll(c, milliseconds: c.int(2)) }
        t.addOutcome(SYS.ppoll, .host, note: "signal mask; timespec written back", ppoll)
        t.add(SYS.memfd_create, memfdCreate)
    }

    static let fifoNote = "a FIFO's open parks until its other end is open"

    static func open(_ c: SyscallCall, dir: Int?, path: Int, flags: Int32, mode: Int32) throws -> SyscallOutcome {
        let directory = try dir.flatMap { i throws(Errno) in try c.directory(i) }
        let name = try c.cString(path, limit: SyscallCall.pathMax)
        guard let fd = c.process.files.lowestFree() else { throw Errno.mfile }
        var made: ProcFS.Opened?
        let process = c.process
        let follow = flags & O_NOFOLLOW == 0 && !(flags & O_CREAT != 0 && flags & O_EXCL != 0)
        let cwd = process.cwd, umask = process.umask
        // A FIFO's open that would wait for its other end parks (FIFOOpen);
        // recording resolves the path once for that look and the open.
        let thread = process.current
        var resolved: (PathTarget, [UInt8], OpenFile?)?
        var fifo = FIFOOpen.Attempt.plain
        var c = c
        // A signal ended the wait, but a reader had opened a waiting
        // writer's end before it: the open succeeds (replay: as recorded).
        if c.interrupted, FIFOOpen.mayWait(flags: flags), !c.world.signalEndsWait({ !FIFOOpen.partnerCame(thread) }) {
            c.interrupted = false
        }
        if c.interrupted { FIFOOpen.abandon(thread) }
        if !c.world.isReplaying, !c.interrupted, FIFOOpen.mayWait(flags: flags) {
            let found = GuestPath.hostArguments(name, from: directory, process: process, follow: follow)
            resolved = found
            if case .host = found.0 {
                let dirFD = found.2.map { $0.hostFD ?? -1 } ?? cwd.hostFD
                fifo = FIFOOpen.attempt(thread, of: process.family, dirFD: dirFD, name: found.1, flags: flags, mode: mode, follow: follow)
            }
        }
        if let parked = c.park(FIFOOpen.condition(thread), unless: { !fifo.waits }) { return parked }
        let r = try c.host { _ throws(Errno) -> Int64 in
            let (target, hostName, hostDir) = resolved ?? GuestPath.hostArguments(name, from: directory, process: process, follow: follow)
            switch target {
            case .denied(let e):
                throw e
            case .proc(let location):
                made = try ProcFS.open(location, flags: flags, family: process.family, caller: process, fd: fd)
                return Int64(fd)
            case .hostProc:
                // Other processes and the system's files: visible, not changeable.
                guard flags & O_ACCMODE == O_RDONLY, flags & (O_CREAT | O_TRUNC) == 0 else { throw .acces }
            case .host:
                break
            }
            let dirFD = hostDir.map { $0.hostFD ?? -1 } ?? cwd.hostFD
            let creates = flags & O_CREAT != 0 || flags & __O_TMPFILE == __O_TMPFILE
            let h: Int64
            switch fifo {
            case .opened(let end): h = Int64(end)
            case .failed(let e): h = e
            case .waiting:
                h = FIFOOpen.waitOnHost(c, dirFD: dirFD, name: hostName, flags: flags, mode: mode, follow: follow)
            case .plain:
                h = FileCreationMask.applying(creates ? umask : nil) {
                    (hostName + [0]).withUnsafeBytes { p in
                        hostSyscall(SYS.openat, Int(dirFD), Int(bitPattern: p.baseAddress), Int(flags | O_CLOEXEC), Int(mode))
                    }
                }
            }
            guard h >= 0 else { return h }
            if case .plain = fifo, flags & O_ACCMODE != O_WRONLY { FIFOOpen.readerOpened(process.family, Int32(h)) }
            made = ProcFS.Opened(hostFD: Int32(h))
            if case .hostProc = target, flags & O_DIRECTORY != 0 || flags & O_ACCMODE == O_RDONLY {
                made?.listing = ProcFS.rootListing(Int32(h), family: process.family)
            }
            if case .hostProc = target, let ipc = SystemVIPCProcFiles.replacing(Int32(h), family: process.family) {
                // /proc/sysvipc/*: the recording's IPC objects, not the host's.
                made = ProcFS.Opened(hostFD: ipc, generated: true)
            }
            return Int64(fd)
        }
        guard r >= 0 else { return .result(r) }
        let file = OpenFile(hostFD: made?.hostFD, path: made?.path ?? String(decoding: name, as: UTF8.self))
        file.listing = made?.listing
        file.procLocation = made?.location
        file.procMemory = made?.memory
        file.generated = made?.generated ?? false
        c.process.files.install(file, at: fd, closeOnExec: flags & O_CLOEXEC != 0)
        return .result(Int64(fd))
    }

    static func close(_ c: SyscallCall) throws -> Int64 {
        guard let file = c.process.files.remove(c.int(0)) else { throw Errno.badf }
        RecordLockSyscalls.closed(c.process, file)
        return 0
    }

    static func dup(_ c: SyscallCall) throws -> Int64 {
        let file = try c.file(0)
        return Int64(try c.process.files.install(file, closeOnExec: false))
    }

    static func dup3(_ c: SyscallCall, flags: Int32, sameIsError: Bool) throws -> Int64 {
        guard flags & ~O_CLOEXEC == 0 else { throw Errno.inval }
        let file = try c.file(0)
        let old = c.int(0), new = c.int(1)
        if old == new {
            if sameIsError { throw Errno.inval }
            return Int64(new)
        }
        guard new >= 0, new < c.process.files.limit else { throw Errno.badf }
        if let replaced = c.process.files.remove(new) { RecordLockSyscalls.closed(c.process, replaced) }
        c.process.files.install(file, at: new, closeOnExec: flags & O_CLOEXEC != 0)
        return Int64(new)
    }

    static let F_DUPFD: Int32 = 0, F_GETFD: Int32 = 1, F_SETFD: Int32 = 2, F_GETFL: Int32 = 3, F_SETFL: Int32 = 4
    static let F_DUPFD_CLOEXEC: Int32 = 1030

    static func fcntl(_ c: SyscallCall) throws -> Int64 {
        let fd = c.int(0)
        let file = try c.file(0)
        switch c.int(1) {
        case F_DUPFD, F_DUPFD_CLOEXEC:
            let start = c.int(2)
            guard start >= 0 else { throw Errno.inval }
            return Int64(try c.process.files.install(file, closeOnExec: c.int(1) == F_DUPFD_CLOEXEC, from: start))
        case F_GETFD:
            return c.process.files.closeOnExec(fd) ? 1 : 0
        case F_SETFD:
            c.process.files.setCloseOnExec(fd, c.arg(2) & 1 != 0)
            return 0
        case 5, 6, 7, 36, 37, 38:
            // GETLK/SETLK and the OFD variants: a struct flock in and out.
            return try performPassthrough(c, [.fd, .value, .inOut(32)])
        default:
            // Flags, owners, signals, pipe sizes, seals, leases: FcntlCommands.
            guard let r = try FcntlCommands.perform(c, file) else { throw Errno.inval }
            return r
        }
    }

    /// memfd_create: a host memfd (sealing with F_ADD_SEALS/F_GET_SEALS
    /// goes to it); its MAP_SHARED mappings are shared memory (`SharedMemory`).
    static func memfdCreate(_ c: SyscallCall) throws -> Int64 {
        let name = try c.cString(0, limit: 250)
        guard name.count <= 249 else { throw Errno.inval }
        let flags = c.int(1)
        let MFD_CLOEXEC: Int32 = 1, MFD_ALLOW_SEALING: Int32 = 2, MFD_NOEXEC_SEAL: Int32 = 8, MFD_EXEC: Int32 = 0x10
        guard flags & ~(MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_NOEXEC_SEAL | MFD_EXEC) == 0 else { throw Errno.inval }
        return try c.newDescriptor(name: "memfd:" + String(decoding: name, as: UTF8.self), closeOnExec: flags & MFD_CLOEXEC != 0) { _ in
            (name + [0]).withUnsafeBytes { hostSyscall(SYS.memfd_create, Int(bitPattern: $0.baseAddress), Int(flags | MFD_CLOEXEC)) }
        }
    }

    static func pipe(_ c: SyscallCall, flags: Int32) throws -> Int64 {
        guard flags & ~(O_CLOEXEC | O_NONBLOCK | 0o40000) == 0 else { throw Errno.inval }
        return try c.newDescriptorPair(name: "pipe:", closeOnExec: flags & O_CLOEXEC != 0, at: 0, fedByRecordingOnly: true) { pair in
            let rc = hostSyscall(SYS.pipe2, Int(bitPattern: pair), Int(flags | O_CLOEXEC))
            return rc < 0 ? rc : 0
        }
    }

    /// ppoll: poll with a timespec timeout (EINVAL unless valid), written
    /// back as the time left, and a signal mask in force during the wait
    /// (EINVAL unless sigsetsize is 8; see `DescriptorWait.setMask`).
    static func ppoll(_ c: SyscallCall) throws -> SyscallOutcome {
        let timeout = try DescriptorWait.timespec(c, at: c.arg(2))
        try DescriptorWait.setMask(c, at: c.arg(3), size: c.arg(4))
        return try DescriptorWait.withMask(c) {
            try poll(c, timeout: timeout, writeBack: c.arg(2) == 0 ? nil : c.arg(2))
        }
    }

    static func poll(_ c: SyscallCall, milliseconds ms: Int32) throws -> SyscallOutcome {
        try poll(c, timeout: ms < 0 ? nil : .milliseconds(Int64(ms)), writeBack: nil)
    }

    /// poll and ppoll: `timeout` in seconds (nil: none); `writeBack`, where
    /// ppoll's timespec gets the time left.
    static func poll(_ c: SyscallCall, timeout: Nanoseconds?, writeBack: UInt64?) throws -> SyscallOutcome {
        // The kernel takes nfds as an unsigned int.
        let nfds = UInt32(truncatingIfNeeded: c.arg(1))
        guard nfds <= UInt32(max(0, c.process.files.limit)) else { throw Errno.inval }
        let count = Int(nfds)
        let raw = try c.read(c.arg(0), count: count * 8)
        try c.checkWritable(c.arg(0), count: count * 8)
        var entries: [(fd: Int32, events: Int16, file: OpenFile?)] = []
        for k in 0..<count {
            let fd = Int32(bitPattern: Bytes.u32(raw, at: k * 8))
            let events = Int16(truncatingIfNeeded: Bytes.u32(raw, at: k * 8 + 4) & 0xffff)
            entries.append((fd, events, fd >= 0 ? c.process.files[fd] : nil))
        }
        let address = c.arg(0)
        // A timer may end the wait (recording): its signal interrupts it, or
        // makes a polled signalfd readable (the poll then runs again).
        let process = c.process
        let signalfds = entries.reduce(UInt64(0)) { $0 | ($1.file?.signalMask ?? 0) }
        let interrupting = SignalWait.deliverable(process, mask: process.signals.mask)
        let pendingInterrupt = process.pendingSignals() & interrupting != 0
        let zero = timeout == .zero
        let deadline = DescriptorWait.deadline(c, timeout: timeout)
        let restart = SignalWait.restart(c)
        // While other threads could run, a poll that would wait parks until
        // a descriptor is ready or its timeout (from the first attempt) ends.
        if !zero, !pendingInterrupt, !entries.contains(where: { $0.fd >= 0 && $0.file == nil }) {
            let waited = entries.compactMap { e in e.fd >= 0 ? e.file?.hostFD.map { (fd: $0, events: e.events) } : nil }
            let readiness = HostReadiness(waited, deadline: deadline)
            let unwaitable = entries.contains { $0.fd >= 0 && $0.file?.hostFD == nil }
            if let parked = c.park(.host(readiness), unless: { unwaitable || readiness.isReady() }) { return parked }
        }
        let r = try c.host { effects throws(Errno) -> Int64 in
            // ppoll writes the time left back whatever the outcome, unless
            // the timeout was zero (poll_select_finish).
            func finish(_ r: Int64) throws(Errno) -> Int64 {
                if let address = writeBack, !zero, (try? c.checkWritable(address, count: 16)) != nil {
                    let (sec, nsec) = DescriptorWait.remaining(until: deadline ?? .never)
                    try effects.write(address, Bytes.u64(UInt64(sec)) + Bytes.u64(UInt64(nsec)))
                }
                return r
            }
            var host = entries.map { e -> pollfd in
                // A closed descriptor polls as POLLNVAL; a negative one is ignored.
                pollfd(fd: e.fd < 0 ? -1 : (e.file?.hostFD ?? Int32.max), events: e.events, revents: 0)
            }
            let invalid = entries.indices.filter { entries[$0].fd >= 0 && entries[$0].file == nil }
            for i in invalid { host[i].fd = -1 }
            let n: Int32
            if invalid.isEmpty {
                switch DescriptorWait.hostWait(c, &host, deadline: deadline, zeroTimeout: zero, signalfds: signalfds,
                                               interrupting: interrupting, pendingInterrupt: pendingInterrupt) {
                case .ready(let k): n = k
                case .timedOut: n = 0
                case .interrupted: return try finish(Errno.intr.result)
                // Only with fewer descriptors than the call's number can a
                // restart not read as a count.
                case .restart: return count < c.number ? restart : try finish(Errno.intr.result)
                case .failed(let r): return try finish(r)
                }
            } else {
                n = Glibc.poll(&host, nfds_t(count), 0)
            }
            guard n >= 0 else { return try finish(-Int64(errno)) }
            for i in invalid { host[i].revents = Int16(POLLNVAL) }
            var out = raw
            var ready = 0
            for i in 0..<count {
                let rev = UInt16(bitPattern: host[i].revents)
                out[i * 8 + 6] = UInt8(rev & 0xff)
                out[i * 8 + 7] = UInt8(rev >> 8)
                if rev != 0 { ready += 1 }
            }
            try effects.write(address, out)
            return try finish(Int64(ready))
        }
        return count < c.number && r == SignalWait.restart(c) ? .restart : .result(r)
    }
}
