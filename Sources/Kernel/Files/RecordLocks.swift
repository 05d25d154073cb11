import Glibc

/// fcntl's record locks (F_GETLK, F_SETLK, F_SETLKW and the OFD forms).
///
/// Every recorded process is one host process, detrec, so the host cannot
/// keep POSIX locks apart: two recorded processes' locks would never
/// conflict, and one process's close would drop another's. detrec keeps
/// them itself, per guest process, as Linux's posix_lock_inode does: byte
/// ranges per file (device and inode), read or write, a new lock replacing
/// and splitting the owner's old ones and merging with adjacent ones of its
/// type, released when the process closes any descriptor of the file and
/// when it ends, not inherited by fork, and EDEADLK for a wait that would
/// close a cycle of POSIX waiters (posix_locks_deadlock). F_GETLK reports
/// the holder's guest pid.
///
/// Each process's POSIX locks are also OFD locks, on the host, of a
/// description detrec opens for it (a mirror), so processes outside the
/// recording see them, and theirs are in the way.
///
/// OFD locks belong to an open file description, and a guest description
/// is one host description, so the host keeps those exactly (also between
/// recorded processes); a POSIX lock and an OFD lock always conflict, so
/// each side also looks at the other: an OFD request at the emulated POSIX
/// locks, a POSIX request at the host's locks (F_GETLK on the host shows
/// OFD locks of every description and the POSIX locks of processes
/// outside the recording, never detrec's own). flock(2) is per description
/// too and stays on the host.
///
/// Everything here is recording only: the table is filled and read inside
/// `SyscallCall.host` and parking checks, so replay takes every answer
/// from the trace and never touches a host file.
final class RecordLocks {
    static let F_RDLCK: Int16 = 0, F_WRLCK: Int16 = 1, F_UNLCK: Int16 = 2
    static let F_GETLK: Int32 = 5, F_SETLK: Int32 = 6, F_SETLKW: Int32 = 7
    static let F_OFD_GETLK: Int32 = 36, F_OFD_SETLK: Int32 = 37, F_OFD_SETLKW: Int32 = 38
    static let commands: Set<Int32> = [F_GETLK, F_SETLK, F_SETLKW, F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW]

    /// A file, as the host names it.
    struct FileKey: Hashable {
        let device: UInt64
        let inode: UInt64
    }

    /// A locked byte range, both ends included (`end` Int64.max: to the end
    /// of any file, l_len 0).
    struct Lock: Equatable {
        var pid: Int32
        var write: Bool
        var start: Int64
        var end: Int64
    }

    /// A POSIX F_SETLKW waiting for a lock: what the deadlock check follows.
    struct Waiter {
        let pid: Int32
        let key: FileKey
        let lock: Lock
    }

    private var locks: [FileKey: [Lock]] = [:] { didSet { generation &+= 1 } }
    /// Bumped by every change of the table and every lock call that
    /// completed (an OFD lock or unlock on the host): a parked F_SETLKW
    /// tries again at once, instead of at its next 10 ms retry, which
    /// remains for holders outside the recording.
    private(set) var generation: UInt64 = 0
    func changed() { generation &+= 1 }
    private var waiters: [Int32: Waiter] = [:]     // by tid
    /// Per guest process and file, a host description of detrec's own
    /// whose OFD locks mirror the process's POSIX locks there, so that
    /// processes outside the recording see them (and are in their way).
    private var mirrors: [Mirror: Int32] = [:]
    private struct Mirror: Hashable {
        let pid: Int32
        let key: FileKey
    }

    var isEmpty: Bool { locks.isEmpty && waiters.isEmpty && mirrors.isEmpty }

    /// The mirror description of `pid`'s locks on a file, opened again
    /// from `hostFD` (read-write if it may, else as `hostFD` is).
    func mirror(pid: Int32, key: FileKey, hostFD: Int32) -> Int32? {
        let m = Mirror(pid: pid, key: key)
        if let fd = mirrors[m] { return fd }
        let path = "/proc/self/fd/\(hostFD)"
        var fd = Glibc.open(path, O_RDWR | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)
        if fd < 0 { fd = Glibc.open(path, (Glibc.fcntl(hostFD, F_GETFL) & O_ACCMODE) | O_NONBLOCK | O_NOCTTY | O_CLOEXEC) }
        guard fd >= 0 else { return nil }
        mirrors[m] = fd
        return fd
    }

    private func dropMirrors(_ keep: (Mirror) -> Bool) {
        for (m, fd) in mirrors where !keep(m) {
            Glibc.close(fd)
            mirrors[m] = nil
        }
    }

    static func key(_ hostFD: Int32) -> FileKey? {
        var st = stat()
        guard fstat(hostFD, &st) == 0 else { return nil }
        return FileKey(device: UInt64(st.st_dev), inode: UInt64(st.st_ino))
    }

    /// A lock of another process that `wanted` conflicts with.
    func conflict(_ key: FileKey, _ wanted: Lock, ownerless: Bool = false) -> Lock? {
        locks[key]?.first { l in
            (ownerless || l.pid != wanted.pid) && l.start <= wanted.end && wanted.start <= l.end && (l.write || wanted.write)
        }
    }

    /// Sets (or, with `type` F_UNLCK, clears) `pid`'s lock on a range:
    /// its old locks there go (split at the range's ends), and the new one
    /// merges with its locks of the same kind that overlap or touch it.
    func set(_ key: FileKey, pid: Int32, type: Int16, start: Int64, end: Int64) {
        var all = locks[key] ?? []
        var kept: [Lock] = []
        var new = Lock(pid: pid, write: type == Self.F_WRLCK, start: start, end: end)
        for l in all {
            guard l.pid == pid else { kept.append(l); continue }
            let touches = type != Self.F_UNLCK && l.write == new.write
                && l.start <= (new.end == .max ? .max : new.end + 1) && new.start <= (l.end == .max ? .max : l.end + 1)
            if touches {
                new.start = min(new.start, l.start)
                new.end = max(new.end, l.end)
                continue
            }
            guard l.start <= end && start <= l.end else { kept.append(l); continue }
            if l.start < start { kept.append(Lock(pid: pid, write: l.write, start: l.start, end: start - 1)) }
            if l.end > end { kept.append(Lock(pid: pid, write: l.write, start: end + 1, end: l.end)) }
        }
        if type != Self.F_UNLCK { kept.append(new) }
        all = kept.sorted { ($0.start, $0.pid) < ($1.start, $1.pid) }
        locks[key] = all.isEmpty ? nil : all
    }

    /// A process closed a descriptor of the file: its POSIX locks there go.
    func closed(pid: Int32, _ key: FileKey) {
        dropMirrors { $0.pid != pid || $0.key != key }
        guard let all = locks[key] else { return }
        let kept = all.filter { $0.pid != pid }
        locks[key] = kept.isEmpty ? nil : kept
    }

    /// A process ended (or its threads went, on exec): its locks and waits go.
    func ended(pid: Int32) {
        for (key, all) in locks {
            let kept = all.filter { $0.pid != pid }
            locks[key] = kept.isEmpty ? nil : kept
        }
        waiters = waiters.filter { $0.value.pid != pid }
        dropMirrors { $0.pid != pid }
    }

    func waiting(_ tid: Int32, _ waiter: Waiter?) { waiters[tid] = waiter }

    /// Whether `pid` waiting for a lock `holder` holds would close a cycle:
    /// the holder waits for a lock whose holder waits ... for `pid`'s.
    /// As Linux, the chain is followed for at most 10 steps.
    func deadlocks(_ pid: Int32, waitingFor holder: Int32) -> Bool {
        var next = holder
        for _ in 0..<10 {
            guard let w = waiters.values.first(where: { $0.pid == next }),
                  let blocker = conflict(w.key, w.lock) else { return false }
            if blocker.pid == pid { return true }
            next = blocker.pid
        }
        return false
    }
}

/// The fcntl lock commands on a guest descriptor (see `RecordLocks`).
enum RecordLockSyscalls {
    /// A guest's struct flock, turned into a byte range as Linux's
    /// flock_to_posix_lock does.
    struct Request {
        var type: Int16
        var whence: Int16
        var start: Int64
        var length: Int64
        var pid: Int32

        init(_ raw: [UInt8]) {
            type = Int16(truncatingIfNeeded: Bytes.u32(raw, at: 0) & 0xffff)
            whence = Int16(truncatingIfNeeded: Bytes.u32(raw, at: 0) >> 16)
            start = Int64(bitPattern: Bytes.u64(raw, at: 8))
            length = Int64(bitPattern: Bytes.u64(raw, at: 16))
            pid = Int32(bitPattern: Bytes.u32(raw, at: 24))
        }

        /// The range, from the descriptor's offset or size for SEEK_CUR
        /// and SEEK_END (recording: a host lseek or fstat).
        func range(_ hostFD: Int32) -> Result<(Int64, Int64), Errno> {
            var base: Int64 = 0
            switch whence {
            case 0: base = 0
            case 1: base = Int64(lseek(hostFD, 0, SEEK_CUR))
            case 2:
                var st = stat()
                base = fstat(hostFD, &st) == 0 ? Int64(st.st_size) : -1
            default: return .failure(.inval)
            }
            guard base >= 0 else { return .failure(.inval) }
            var (from, overflow) = base.addingReportingOverflow(start)
            guard !overflow else { return .failure(.overflow) }
            guard from >= 0 else { return .failure(.inval) }
            var to = Int64.max
            if length > 0 {
                let (last, o) = from.addingReportingOverflow(length - 1)
                guard !o else { return .failure(.overflow) }
                to = last
            } else if length < 0 {
                to = from - 1
                (from, overflow) = from.addingReportingOverflow(length)
                guard !overflow, from >= 0 else { return .failure(.inval) }
            }
            return .success((from, to))
        }
    }

    static func fcntl(_ c: SyscallCall) throws -> SyscallOutcome {
        let command = c.int(1)
        let file = try c.file(0)
        let raw = try c.read(c.arg(2), count: 32)
        let request = Request(raw)
        let ofd = command >= RecordLocks.F_OFD_GETLK
        // OFD requests must say l_pid 0 (fcntl(2)).
        if ofd && request.pid != 0 { throw Errno.inval }
        if command == RecordLocks.F_GETLK || command == RecordLocks.F_OFD_GETLK {
            return .result(try getLock(c, file, raw, request, ofd: ofd))
        }
        guard [RecordLocks.F_RDLCK, RecordLocks.F_WRLCK, RecordLocks.F_UNLCK].contains(request.type) else { throw Errno.inval }
        let waits = command == RecordLocks.F_SETLKW || command == RecordLocks.F_OFD_SETLKW
        let p = c.process, tid = p.current.tid, table = p.family.recordLocks
        if c.interrupted { table.waiting(tid, nil) }
        // One attempt (recording): the result, or nil while a lock is in the way.
        let attempt: () -> Int64? = {
            let r = setLock(c, file, raw, request, ofd: ofd, waits: waits)
            if r != nil { table.waiting(tid, nil); table.changed() }
            return r
        }
        // Woken by a release in the recording, or at the retry for others' locks.
        let seen = table.generation
        let condition = { () -> WaitCondition in
            .guestUntil(ready: { table.generation != seen }, deadline: .now() + HostTransfer.retry)
        }
        return try HostTransfer.withoutWaiting(c, on: condition, attempt: attempt, plain: {
            // Nothing else could run: wait here, looking again every 10 ms,
            // until a timer that would interrupt is due or a host signal.
            while true {
                if let r = attempt() { return r }
                let timer = TimerSyscalls.nextInterruption(p).map { MonotonicInstant(doubleSeconds: $0) }
                var none: [pollfd] = []
                let woken = HostWake.wait(&none, until: min(.now() + HostTransfer.retry, timer ?? .never))
                if case .hostSignal = woken { break }
                if let timer, timer.hasPassed { break }
            }
            table.waiting(tid, nil)
            return Errno.intr.result
        })
    }

    /// F_SETLK and F_OFD_SETLK (the attempts of the waiting forms): the
    /// result, or nil when a waiting form must wait (recording only).
    static func setLock(_ c: SyscallCall, _ file: OpenFile, _ raw: [UInt8], _ request: Request,
                        ofd: Bool, waits: Bool) -> Int64? {
        guard let hostFD = file.hostFD, let key = RecordLocks.key(hostFD) else { return Errno.badf.result }
        let (start, end): (Int64, Int64)
        switch request.range(hostFD) {
        case .failure(let e): return e.result
        case .success(let r): (start, end) = r
        }
        // A read lock needs a descriptor open for reading, a write lock one for writing.
        let mode = Glibc.fcntl(hostFD, F_GETFL) & O_ACCMODE
        if request.type == RecordLocks.F_RDLCK && mode == O_WRONLY { return Errno.badf.result }
        if request.type == RecordLocks.F_WRLCK && mode == O_RDONLY { return Errno.badf.result }
        let p = c.process, table = p.family.recordLocks
        let wanted = RecordLocks.Lock(pid: p.pid, write: request.type == RecordLocks.F_WRLCK, start: start, end: end)
        if request.type != RecordLocks.F_UNLCK, let holder = table.conflict(key, wanted, ownerless: ofd) {
            guard waits else { return Errno.again.result }
            if !ofd {
                if table.deadlocks(p.pid, waitingFor: holder.pid) { return -Int64(EDEADLK) }
                table.waiting(p.current.tid, RecordLocks.Waiter(pid: p.pid, key: key, lock: wanted))
            }
            return nil
        }
        if ofd {
            // The host keeps OFD locks, and sees the other descriptions'.
            let r = hostLock(hostFD, RecordLocks.F_OFD_SETLK, raw)
            return r == Errno.again.result && waits ? nil : r
        }
        // On the host the lock is an OFD lock of the process's mirror
        // description: OFD locks of any description and POSIX locks outside
        // the recording are in its way, and outside processes see it. (The
        // other mirrors hold the emulated locks, which were not in the way.)
        let absolute = flockBytes(type: request.type, start: start, end: end)
        let mirror = table.mirror(pid: p.pid, key: key, hostFD: hostFD)
        var mirrored = false
        if let mirror {
            let r = hostLock(mirror, RecordLocks.F_OFD_SETLK, absolute)
            if r == Errno.again.result { return waits ? nil : r }
            mirrored = r == 0
        }
        if !mirrored && request.type != RecordLocks.F_UNLCK {
            // No mirror for this kind of lock (its access mode): look only.
            var seen = absolute
            let r = hostTest(hostFD, mirror: mirror, absolute, result: &seen)
            if r < 0 { return r }
            if RecordLocks.Lock.type(of: seen) != RecordLocks.F_UNLCK { return waits ? nil : Errno.again.result }
        }
        table.set(key, pid: p.pid, type: request.type, start: start, end: end)
        return 0
    }

    /// A struct flock for the absolute range `start...end`.
    static func flockBytes(type: Int16, start: Int64, end: Int64) -> [UInt8] {
        let length: Int64 = end == .max ? 0 : end - start + 1
        return Bytes.u32(UInt32(UInt16(bitPattern: type))) + Bytes.u32(0) + Bytes.u64(UInt64(start)) + Bytes.u64(UInt64(length))
            + Bytes.u64(0)
    }

    /// F_GETLK and F_OFD_GETLK: the first emulated POSIX lock in the way
    /// (its holder's guest pid), else what the host sees in the way, else
    /// l_type F_UNLCK and the rest as given.
    static func getLock(_ c: SyscallCall, _ file: OpenFile, _ raw: [UInt8], _ request: Request, ofd: Bool) throws -> Int64 {
        guard request.type == RecordLocks.F_RDLCK || request.type == RecordLocks.F_WRLCK else { throw Errno.inval }
        try c.checkWritable(c.arg(2), count: 32)
        let p = c.process, address = c.arg(2)
        return try c.host { effects throws(Errno) -> Int64 in
            guard let hostFD = file.hostFD, let key = RecordLocks.key(hostFD) else { throw .badf }
            let (start, end) = try request.range(hostFD).get()
            let wanted = RecordLocks.Lock(pid: p.pid, write: request.type == RecordLocks.F_WRLCK, start: start, end: end)
            var out = raw
            if let l = p.family.recordLocks.conflict(key, wanted, ownerless: ofd) {
                out.replaceSubrange(0..<2, with: Bytes.u32(UInt32(l.write ? 1 : 0)).prefix(2))
                out.replaceSubrange(2..<4, with: [0, 0])   // SEEK_SET
                out.replaceSubrange(8..<16, with: Bytes.u64(UInt64(l.start)))
                out.replaceSubrange(16..<24, with: Bytes.u64(l.end == .max ? 0 : UInt64(l.end - l.start + 1)))
                out.replaceSubrange(24..<28, with: Bytes.i32(l.pid))
            } else if ofd {
                let r = hostLock(hostFD, RecordLocks.F_OFD_GETLK, raw, result: &out)
                if r < 0 { return r }
            } else {
                // What is in the way on the host, leaving out this process's own mirror.
                let mirror = p.family.recordLocks.mirror(pid: p.pid, key: key, hostFD: hostFD)
                var seen = raw
                let r = hostTest(hostFD, mirror: mirror, flockBytes(type: request.type, start: start, end: end), result: &seen)
                if r < 0 { return r }
                if RecordLocks.Lock.type(of: seen) == RecordLocks.F_UNLCK {
                    out.replaceSubrange(0..<2, with: [UInt8(RecordLocks.F_UNLCK), 0])
                } else {
                    out.replaceSubrange(0..<4, with: seen[0..<4])
                    out.replaceSubrange(8..<28, with: seen[8..<28])
                }
            }
            try effects.write(address, out)
            return 0
        }
    }

    /// What the host has in the way of `absolute` (a struct flock with
    /// l_pid 0), through the process's mirror (F_OFD_GETLK, which leaves
    /// the mirror's own locks out) or else the descriptor (F_GETLK).
    private static func hostTest(_ hostFD: Int32, mirror: Int32?, _ absolute: [UInt8], result: inout [UInt8]) -> Int64 {
        if let mirror { return hostLock(mirror, RecordLocks.F_OFD_GETLK, absolute, result: &result) }
        return hostLock(hostFD, RecordLocks.F_GETLK, absolute, result: &result)
    }

    private static func hostLock(_ hostFD: Int32, _ command: Int32, _ raw: [UInt8]) -> Int64 {
        var out = raw
        return hostLock(hostFD, command, raw, result: &out)
    }

    private static func hostLock(_ hostFD: Int32, _ command: Int32, _ raw: [UInt8], result: inout [UInt8]) -> Int64 {
        result = raw
        return result.withUnsafeMutableBytes { hostSyscall(SYS.fcntl, Int(hostFD), Int(command), Int(bitPattern: $0.baseAddress)) }
    }

    /// A process closed `file`: its POSIX locks on the file go (recording).
    static func closed(_ p: Process, _ file: OpenFile) {
        let table = p.family.recordLocks
        guard !table.isEmpty, let fd = file.hostFD, let key = RecordLocks.key(fd) else { return }
        table.closed(pid: p.pid, key)
    }
}

extension RecordLocks.Lock {
    static func type(of raw: [UInt8]) -> Int16 { Int16(truncatingIfNeeded: Bytes.u32(raw, at: 0) & 0xffff) }
}
