/// The CPU-time clocks a clock id can name (CLOCK_PROCESS_CPUTIME_ID,
/// CLOCK_THREAD_CPUTIME_ID, clock_getcpuclockid, pthread_getcpuclockid):
/// ~pid << 3 | which, with bit 2 for a thread, and ~fd << 3 | 3 for a
/// dynamic clock behind a descriptor. The pids and tids the guest puts
/// there are the recording's, which the host does not know (or that name
/// some other host process), and every recorded thread runs on detrec's
/// one host thread, so the host cannot tell them apart: the time of a
/// recorded process or thread is the one `UsageAccounting` charged to it
/// (what getrusage shows). A thread clock of another process's thread is
/// EINVAL, as Linux's; a pid the recording never had is the host's to answer.
enum CPUClocks {
    static let CLOCK_PROCESS_CPUTIME_ID: Int32 = 2, CLOCK_THREAD_CPUTIME_ID: Int32 = 3
    /// The `which` of a CPU clock id (posix-cpu-timers.h): user+system,
    /// user only, and the scheduler's run time (user+system here).
    static let CPUCLOCK_PROF: Int32 = 0, CPUCLOCK_VIRT: Int32 = 1, CPUCLOCK_SCHED: Int32 = 2

    /// What a clock id reads.
    enum Source {
        /// A clock the host answers, under this id.
        case host(Int32)
        /// A recorded process's (thread nil) or thread's CPU time.
        case guest(Process, GuestThread?, which: Int32)
    }

    static func source(_ c: SyscallCall, _ id: Int32) throws(Errno) -> Source {
        let p = c.process
        // The two fixed ids are the caller's own process and thread clocks
        // (MAKE_PROCESS_CPUCLOCK(0, SCHED), MAKE_THREAD_CPUCLOCK(0, SCHED)).
        if id == CLOCK_PROCESS_CPUTIME_ID { return .guest(p, nil, which: CPUCLOCK_SCHED) }
        if id == CLOCK_THREAD_CPUTIME_ID { return .guest(p, p.current, which: CPUCLOCK_SCHED) }
        guard id < 0 else { return .host(id) }
        let which = id & 7
        if which == 7 { throw .inval }
        if which == 3 {
            // A clock descriptor: the guest's number becomes detrec's host one.
            guard let file = p.files[~(id >> 3)] else { throw .inval }
            return .host(~((file.hostFD ?? 0) << 3) | 3)
        }
        let pid = ~(id >> 3)
        let family: ProcessFamily = p.family
        if which & 4 != 0 {
            // lookup_task: a thread of the caller's own process (0: the caller).
            if pid == 0 { return .guest(p, p.current, which: which & 3) }
            if let t = p.threads.first(where: { $0.tid == pid || ($0.tid == 0 && pid == p.pid) }) {
                return .guest(p, t, which: which & 3)
            }
            if family.allocated(pid) { throw .inval }
            return .host(id)
        }
        if pid == 0 { return .guest(p, nil, which: which) }
        if let other = family.processes.first(where: { $0.pid == pid && $0.zombieStatus == nil }) {
            return .guest(other, nil, which: which)
        }
        if family.allocated(pid) { throw .inval }
        return .host(id)
    }

    /// The id to give the host for calls that only need the clock to exist
    /// (clock_getres, clock_settime's checks): a recorded process's or
    /// thread's clock becomes detrec's own of the same kind.
    static func hostClock(_ c: SyscallCall, _ id: Int32) throws(Errno) -> Int32 {
        switch try source(c, id) {
        case .host(let host): return host
        case .guest(_, let thread, let which): return ~Int32(0) << 3 | (thread != nil ? 4 : 0) | which
        }
    }

    /// A recorded process's or thread's CPU time in nanoseconds, charged up
    /// to now (recording only: replay takes the result from the trace).
    static func nanoseconds(_ p: Process, _ thread: GuestThread?, which: Int32) -> Int64 {
        p.family.accounting.bringUpToDate()
        let u = thread?.usage ?? p.ownUsage()
        return which == CPUCLOCK_VIRT ? u.userNanoseconds : u.userNanoseconds &+ u.systemNanoseconds
    }

    /// clock_gettime: the host's clocks through the passthrough, the
    /// recorded processes' CPU clocks from the accounting, stored as the
    /// call's host part so the trace carries them.
    static func gettime(_ c: SyscallCall) throws -> Int64 {
        switch try source(c, c.int(0)) {
        case .host(let host):
            return try performPassthrough(c.withArgument(0, UInt64(UInt32(bitPattern: host))), [.value, .out(16)])
        case .guest(let p, let thread, let which):
            let address = c.arg(1)
            try c.checkWritable(address, count: 16)
            return try c.host { effects throws(Errno) -> Int64 in
                let ns = nanoseconds(p, thread, which: which)
                try effects.write(address, Bytes.u64(UInt64(ns / 1_000_000_000)) + Bytes.u64(UInt64(ns % 1_000_000_000)))
                return 0
            }
        }
    }
}
