import Glibc

/// select and pselect6 (glibc's select and pselect both use pselect6 on
/// x86-64; the old select is still called directly by some programs).
///
/// The fd_sets are read and checked against the guest's table as Linux's
/// core_sys_select does (nfds capped at the table's size, EBADF for a set
/// bit naming a closed descriptor); the wait is a host poll of the host
/// descriptors behind them (recording), its result sets and the remaining
/// time Linux writes back (timeval or timespec) logged as the call's
/// writes. pselect6's signal mask is in force during the wait and stays
/// for the handler when the call ends with EINTR (`DescriptorWait`).
///
/// The wait happens on the host with the other threads held (as poll's
/// does); a timer ends it as it ends poll.
enum SelectSyscalls {
    static func register(_ t: inout SyscallTable) {
        t.addOutcome(SYS.select, .host, note: "timeval written back") { c in
            var timeout: Nanoseconds?
            if c.arg(4) != 0 {
                let raw = try c.read(c.arg(4), count: 16)
                let sec = Int64(bitPattern: Bytes.u64(raw, at: 0)), usec = Int64(bitPattern: Bytes.u64(raw, at: 8))
                // Linux folds whole seconds of tv_usec into tv_sec, then
                // refuses a negative time.
                let (total, overflow) = sec.addingReportingOverflow(usec / 1_000_000)
                let nsec = (usec % 1_000_000) * 1000
                guard !overflow, total >= 0, nsec >= 0 else { throw Errno.inval }
                timeout = Nanoseconds(seconds: total, nanoseconds: nsec)
            }
            return try select(c, timeout: timeout, writeBack: c.arg(4) == 0 ? nil : (c.arg(4), .timeval))
        }
        t.addOutcome(SYS.pselect6, .host, note: "signal mask; timespec written back") { c in
            let timeout = try DescriptorWait.timespec(c, at: c.arg(4))
            // The sixth argument points at { const sigset_t *ss; size_t ss_len; }.
            if c.arg(5) != 0 {
                let pack = try c.read(c.arg(5), count: 16)
                try DescriptorWait.setMask(c, at: Bytes.u64(pack, at: 0), size: Bytes.u64(pack, at: 8))
            }
            return try DescriptorWait.withMask(c) {
                try select(c, timeout: timeout, writeBack: c.arg(4) == 0 ? nil : (c.arg(4), .timespec))
            }
        }
    }

    enum TimeLayout { case timeval, timespec }

    // Linux's POLLIN_SET, POLLOUT_SET and POLLEX_SET (fs/select.c).
    static let inSet = Int16(POLLIN | POLLRDNORM | POLLRDBAND | POLLHUP | POLLERR)
    static let outSet = Int16(POLLOUT | POLLWRNORM | POLLWRBAND | POLLERR)
    static let exSet = Int16(POLLPRI)

    /// The table size Linux's fdtable would have (max_fds): 64 slots, grown
    /// as alloc_fdtable does for the highest descriptor open.
    static func tableSize(_ files: FileTable) -> Int {
        guard let highest = files.entries.keys.max(), highest >= 64 else { return 64 }
        var slots = 1
        while slots < Int(highest) / 128 + 1 { slots *= 2 }
        return slots * 128
    }

    static func select(_ c: SyscallCall, timeout: Nanoseconds?, writeBack: (UInt64, TimeLayout)?) throws -> SyscallOutcome {
        let requested = c.int(0)
        guard requested >= 0 else { throw Errno.inval }
        let n = min(Int(requested), tableSize(c.process.files))
        let words = (n + 63) / 64
        // Each set, or nil for a NULL pointer (EFAULT when unreadable).
        var sets: [[UInt64]?] = []
        for i in 1...3 {
            guard c.arg(i) != 0 else { sets.append(nil); continue }
            let raw = try c.read(c.arg(i), count: words * 8)
            sets.append((0..<words).map { Bytes.u64(raw, at: $0 * 8) })
        }
        func isSet(_ k: Int, _ fd: Int) -> Bool {
            guard let s = sets[k] else { return false }
            return s[fd / 64] & (1 << UInt64(fd % 64)) != 0
        }
        var polled: [(fd: Int, file: OpenFile?, events: Int16, wants: [Bool])] = []
        var badDescriptor = false
        for fd in 0..<n {
            let want = (isSet(0, fd), isSet(1, fd), isSet(2, fd))
            guard want.0 || want.1 || want.2 else { continue }
            let file = c.process.files[Int32(fd)]
            if file == nil { badDescriptor = true; break }
            polled.append((fd, file, (want.0 ? inSet : 0) | (want.1 ? outSet : 0) | (want.2 ? exSet : 0), [want.0, want.1, want.2]))
        }

        let p = c.process
        let zero = timeout == .zero
        let deadline = DescriptorWait.deadline(c, timeout: timeout)
        let interrupting = SignalWait.deliverable(p, mask: p.signals.mask)
        let pendingInterrupt = p.pendingSignals() & interrupting != 0
        let signalfds = polled.reduce(UInt64(0)) { $0 | ($1.file?.signalMask ?? 0) }
        let number = Int64(c.number)
        // While other threads could run, a select that would wait parks until
        // a descriptor is ready or its timeout (from the first attempt) ends.
        if !zero, !pendingInterrupt, !badDescriptor {
            let waited = polled.compactMap { e in e.file?.hostFD.map { (fd: $0, events: e.events) } }
            let readiness = HostReadiness(waited, deadline: deadline)
            let unwaitable = polled.contains { $0.file?.hostFD == nil }
            if let parked = c.park(.host(readiness), unless: { unwaitable || readiness.isReady() }) { return parked }
        }
        let r = try c.host { effects throws(Errno) -> Int64 in
            // The time left goes back whatever the outcome (poll_select_finish),
            // unless the timeout was zero.
            func finish(_ r: Int64) throws(Errno) -> Int64 {
                if let (address, layout) = writeBack, !zero {
                    // A timeout too long for the clock is never left with less.
                    let deadline = deadline ?? .never
                    let (sec, nsec) = DescriptorWait.remaining(until: deadline)
                    let second = layout == .timeval ? nsec / 1000 : nsec
                    // A read-only timeout is not an error (Linux ignores the failed copy).
                    if (try? c.checkWritable(address, count: 16)) != nil {
                        try effects.write(address, Bytes.u64(UInt64(sec)) + Bytes.u64(UInt64(second)))
                    }
                }
                return r
            }
            if badDescriptor { return try finish(Errno.badf.result) }
            var host: [pollfd] = []
            for e in polled {
                guard let h = e.file?.hostFD else { throw .badf }
                host.append(pollfd(fd: h, events: e.events, revents: 0))
            }
            let outcome = DescriptorWait.hostWait(c, &host, deadline: deadline, zeroTimeout: zero, signalfds: signalfds,
                                                  interrupting: interrupting, pendingInterrupt: pendingInterrupt)
            switch outcome {
            case .failed(let r): return try finish(r)
            case .interrupted: return try finish(Errno.intr.result)
            case .restart: return number
            case .timedOut where pendingInterrupt:
                // Nothing ready and a signal pending: EINTR even for a zero
                // timeout (core_sys_select's ERESTARTNOHAND).
                return try finish(Errno.intr.result)
            case .timedOut, .ready:
                var results: [[UInt64]] = Array(repeating: Array(repeating: 0, count: words), count: 3)
                var count: Int64 = 0
                for (i, e) in polled.enumerated() {
                    let got = host[i].revents
                    for (k, kind) in [inSet, outSet, exSet].enumerated() where e.wants[k] && got & kind != 0 {
                        // A count equal to the call's number would read as a
                        // restart: with a signalfd polled, one ready bit waits
                        // for the next call (Linux would report it now).
                        if count + 1 == number && signalfds != 0 { continue }
                        results[k][e.fd / 64] |= 1 << UInt64(e.fd % 64)
                        count += 1
                    }
                }
                for k in 0..<3 where sets[k] != nil {
                    try effects.write(c.arg(k + 1), results[k].flatMap { Bytes.u64($0) })
                }
                return try finish(count)
            }
        }
        // Only with a signalfd polled can a count equal to the call's number mean a restart.
        return r == number && signalfds != 0 ? .restart : .result(r)
    }
}
