import Glibc

/// What a pidfd names: a process of the recording, by pid (the number
/// stays after the process is reaped, when the pidfd names nothing).
public final class PidfdTarget {
    public let pid: Int32
    public weak var process: Process?
    /// Its host eventfd has been made readable (the process ended).
    var signalled = false
    /// PIDFD_NONBLOCK at pidfd_open (waitid(P_PIDFD) then does not wait).
    var nonBlocking = false
    init(_ process: Process) { pid = process.pid; self.process = process }

    /// The process while it exists: running or a zombie not yet reaped.
    var live: Process? {
        guard let p = process, p.family.processes.contains(where: { $0 === p }) else { return nil }
        return p
    }
}

/// pidfd_open, pidfd_send_signal, pidfd_getfd and waitid(P_PIDFD): a pidfd
/// is an emulated descriptor for a process of the recording. While
/// recording its host side is an eventfd made readable when the process
/// ends, so poll, select and epoll see it readable exactly then, as
/// pidfd_poll reports; replay answers those from the trace.
enum ProcessDescriptors {
    static let PIDFD_NONBLOCK = O_NONBLOCK, PIDFD_THREAD = O_EXCL
    static let SIGNAL_THREAD: UInt32 = 1, SIGNAL_THREAD_GROUP: UInt32 = 2, SIGNAL_PROCESS_GROUP: UInt32 = 4

    static func register(_ t: inout SyscallTable) {
        t.add(SYS.pidfd_open, .emulated, note: "processes of the recording; readable (poll, epoll) once it ends; no PIDFD_THREAD", open)
        t.add(SYS.pidfd_send_signal, .emulated, note: "kill's permission rules; thread, group and process-group scopes; a /proc/<pid> directory as the pidfd", sendSignal)
        t.add(SYS.pidfd_getfd, .emulated, note: "the same open file, O_CLOEXEC; PTRACE_MODE_ATTACH_REALCREDS", getfd)
    }

    /// A new pidfd for `target` in the caller's table (O_CLOEXEC always).
    static func install(_ c: SyscallCall, _ target: Process, nonBlocking: Bool) throws -> Int64 {
        let ended = target.zombieStatus != nil
        let r = try c.newDescriptor(name: "anon_inode:[pidfd]", closeOnExec: true) { _ in
            let fd = hostSyscall(SYS.eventfd2, ended ? 1 : 0, Int(O_CLOEXEC | (nonBlocking ? O_NONBLOCK : 0)))
            return fd
        }
        if r >= 0, let file = c.process.files[Int32(r)] {
            let named = PidfdTarget(target)
            named.signalled = ended
            named.nonBlocking = nonBlocking
            file.pidfd = named
        }
        return r
    }

    static func open(_ c: SyscallCall) throws -> Int64 {
        let pid = c.int(0), flags = UInt32(truncatingIfNeeded: c.arg(1))
        guard flags & ~UInt32(PIDFD_NONBLOCK | PIDFD_THREAD) == 0, pid > 0 else { throw Errno.inval }
        if flags & UInt32(PIDFD_THREAD) != 0 {
            c.process.report("pidfd_open with PIDFD_THREAD is not supported; returning EINVAL", key: SYS.pidfd_open, rip: c.rip)
            throw Errno.inval
        }
        let family: ProcessFamily = c.process.family
        let found = family.find(pid)?.0 ?? family.processes.first { $0.pid == pid && $0.zombieStatus != nil }
        guard let owner = found else {
            if family.allocated(pid) { throw Errno.srch }
            c.process.report("pidfd_open of a process outside the recording (\(pid)) is not supported; returning ESRCH",
                             key: SYS.pidfd_open, rip: c.rip)
            throw Errno.srch
        }
        // Only a thread-group leader without PIDFD_THREAD (pidfd_prepare).
        guard owner.pid == pid else { throw Errno.inval }
        return try install(c, owner, nonBlocking: flags & UInt32(PIDFD_NONBLOCK) != 0)
    }

    /// The pidfd a descriptor argument names: EBADF for no descriptor or another kind.
    static func pidfd(_ c: SyscallCall, _ i: Int) throws(Errno) -> PidfdTarget {
        guard let file = c.process.files[c.int(i)] else { throw .badf }
        guard let named = file.pidfd else { throw .badf }
        return named
    }

    /// What pidfd_send_signal's descriptor names: a pidfd's process, or a
    /// /proc/<pid> directory's (Linux's pidfd_to_pid also takes procfs's
    /// thread-group directory, not a task/<tid> one, nor another file):
    /// the pid, and the process while it exists (running or a zombie), or
    /// -errno. Replay does not know a descriptor is a /proc directory, so
    /// the trace carries its pid (4 bytes).
    static func signalTarget(_ c: SyscallCall) throws -> Result<(pid: Int32, process: Process?), Errno> {
        guard let file = c.process.files[c.int(0)] else { return .failure(.badf) }
        if let named = file.pidfd { return .success((named.pid, named.live)) }
        let outcome = try c.hostOutcome { effects throws(Errno) -> Int64 in
            guard let l = file.procLocation, l.tid == nil, l.rest.isEmpty, l.selfLink == nil else { throw .badf }
            // An O_PATH descriptor is no file to the call (fdget): EBADF.
            if let fd = file.hostFD, Glibc.fcntl(fd, F_GETFL) & ProcFS.O_PATH != 0 { throw .badf }
            effects.carry(Bytes.i32(l.pid))
            return 0
        }
        guard outcome.result == 0 else { return .failure(Errno(Int32(truncatingIfNeeded: -outcome.result))) }
        guard let raw = outcome.carried.first, raw.count == 4 else {
            throw RunStopped("the trace is damaged: pidfd_send_signal on a /proc directory carries no pid")
        }
        let pid = Int32(bitPattern: Bytes.u32(raw, at: 0))
        return .success((pid, c.process.family.processes.first { $0.pid == pid }))
    }

    static func sendSignal(_ c: SyscallCall) throws -> Int64 {
        let signal = c.int(1), infoAddress = c.arg(2), flags = UInt32(truncatingIfNeeded: c.arg(3))
        let scopes = SIGNAL_THREAD | SIGNAL_THREAD_GROUP | SIGNAL_PROCESS_GROUP
        guard flags & ~scopes == 0, flags.nonzeroBitCount <= 1 else { throw Errno.inval }
        let (pid, live) = try signalTarget(c).get()
        let p = c.process
        var info: [UInt8]
        if infoAddress != 0 {
            info = try c.read(infoAddress, count: 128)
            guard Int32(bitPattern: Bytes.u32(info, at: 0)) == signal else { throw Errno.inval }
            let code = Int32(bitPattern: Bytes.u32(info, at: 8))
            if (pid != p.pid || flags & (SIGNAL_THREAD | SIGNAL_PROCESS_GROUP) != 0)
                && (code >= 0 || code == Signals.SI_TKILL) { throw Errno.perm }
        } else {
            info = SignalDelivery.siginfo(signal: signal, code: flags & SIGNAL_THREAD != 0 ? Signals.SI_TKILL : Signals.SI_USER,
                                          pid: p.pid, uid: p.uid)
        }
        guard signal >= 0, signal <= 64 else { throw Errno.inval }
        guard let target = live else { throw Errno.srch }
        if flags & SIGNAL_PROCESS_GROUP != 0 {
            return try SignalSending.send(c, to: -target.processGroup, signal: signal, info: info)
        }
        guard SignalSending.permitted(c, target, thread: nil, signal: signal) else { throw Errno.perm }
        guard signal != 0, target.zombieStatus == nil else { return 0 }
        if flags & SIGNAL_THREAD != 0, let leader = target.thread(target.pid) {
            SignalDelivery.generate(target, signal: signal, info: info, to: leader)
        } else {
            SignalDelivery.generate(target, signal: signal, info: info)
        }
        return 0
    }

    static func getfd(_ c: SyscallCall) throws -> Int64 {
        guard c.arg(2) & 0xffff_ffff == 0 else { throw Errno.inval }
        let named = try pidfd(c, 0)
        guard let target = named.live else { throw Errno.srch }
        guard CredentialsSyscalls.mayAccess(c.process, target) else { throw Errno.perm }
        // A zombie's descriptors are closed.
        guard target.zombieStatus == nil, let file = target.files[c.int(1)] else { throw Errno.badf }
        return Int64(try c.process.files.install(file, closeOnExec: true))
    }

    /// `p` ended: the pidfds naming it become readable (recording: their
    /// host eventfds; replay has none).
    static func processEnded(_ p: Process) {
        for q in p.family.processes {
            for entry in q.files.entries.values {
                guard let named = entry.file.pidfd, named.process === p, !named.signalled else { continue }
                named.signalled = true
                if let fd = entry.file.hostFD {
                    var one: UInt64 = 1
                    _ = Glibc.write(fd, &one, 8)
                }
            }
        }
    }
}
