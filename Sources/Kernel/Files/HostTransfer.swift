import CHost
import Glibc

/// Writes to pipes, FIFOs, sockets and ttys while recording, without
/// blocking detrec while another guest thread could run: a descriptor in
/// blocking mode is written without waiting (RWF_NOWAIT, or MSG_DONTWAIT
/// for a socket), and what did not fit is written in later attempts, after
/// the thread parked until the descriptor had room (`SyscallOutcome.partial`),
/// so the guest sees what Linux returns for a blocking descriptor: all of
/// it, or what was written before a signal.
enum HostTransfer {
    static let RWF_NOWAIT = 0x8

    /// What kind of file a host descriptor is, looked up once per open file.
    enum Kind { case regular, waits, socket }

    static func kind(_ file: OpenFile) -> Kind {
        if let k = file.hostKind { return k }
        var st = stat()
        var k = Kind.waits
        if let fd = file.hostFD, fstat(fd, &st) == 0 {
            switch st.st_mode & S_IFMT {
            case S_IFREG, S_IFDIR, S_IFBLK: k = .regular
            case S_IFSOCK: k = .socket
            default: k = .waits
            }
        }
        file.hostKind = k
        return k
    }

    /// Whether a host call on `file` may wait: not a regular file, and
    /// the descriptor is in blocking mode (recording only).
    static func mayWait(_ file: OpenFile) -> Bool {
        guard let fd = file.hostFD, kind(file) != .regular else { return false }
        return fcntl(fd, F_GETFL) & O_NONBLOCK == 0
    }

    /// Ready for `events` now (recording only; true without a host side).
    static func ready(_ file: OpenFile, _ events: Int16) -> Bool {
        guard let fd = file.hostFD else { return true }
        return HostReadiness(fd: fd, events: events).isReady()
    }

    /// Writes `bytes` without waiting for room: how many were written, or
    /// -errno (-EAGAIN when there was none).
    /// `flags`: a socket's send flags (never a SIGPIPE for detrec: the
    /// guest's comes from `write`).
    static func writeWithoutWaiting(_ file: OpenFile, _ bytes: UnsafeRawBufferPointer, flags: Int32 = 0) -> Int64 {
        guard let fd = file.hostFD else { return Errno.badf.result }
        if kind(file) == .socket {
            return hostSyscall(SYS.sendto, Int(fd), Int(bitPattern: bytes.baseAddress), bytes.count,
                               Int(flags | SocketSyscalls.MSG_DONTWAIT | SocketSyscalls.MSG_NOSIGNAL), 0, 0)
        }
        var vector = iovec(iov_base: UnsafeMutableRawPointer(mutating: bytes.baseAddress), iov_len: bytes.count)
        let r = hostSyscall(SYS.pwritev2, Int(fd), Int(bitPattern: withUnsafeMutablePointer(to: &vector) { $0 }), 1, -1, -1, RWF_NOWAIT)
        guard r == -Int64(EOPNOTSUPP) else { return r }
        // A descriptor without RWF_NOWAIT (a tty): as much as poll says fits
        // without waiting, PIPE_BUF at most.
        guard ready(file, Int16(POLLOUT)) else { return Errno.again.result }
        let n = Glibc.write(fd, bytes.baseAddress, min(bytes.count, 4096))
        return n < 0 ? -Int64(errno) : Int64(n)
    }

    /// The shared shape of write, writev and send on a descriptor that may
    /// wait. While other threads could run (recording), what fits is
    /// written without waiting, and the thread parks until there is room
    /// for the rest (a `blocked` event each time); the attempt that writes
    /// the last part, or fails, completes the call with everything written,
    /// as Linux's blocking write does. Replay parks where the recording did
    /// and takes that result. When nothing else could run, detrec itself
    /// waits for room (`alone`), until a timer's signal or a host signal;
    /// `plain` writes a descriptor that never waits. A signal that ends a
    /// wait returns what was written, or EINTR. `flags`: the guest's send
    /// flags (EPIPE sends SIGPIPE unless MSG_NOSIGNAL is among them).
    /// `part`, when given, writes a part without waiting in place of
    /// `writeWithoutWaiting` (sendmsg: its address and ancillary data go
    /// with the first part, `first`).
    static func write(_ c: SyscallCall, _ file: OpenFile, _ bytes: [UInt8], flags: Int32 = 0,
                      part: ((_ fd: Int32, _ bytes: UnsafeRawBufferPointer, _ first: Bool) -> Int64)? = nil,
                      plain: @escaping (Int32, UnsafeRawBufferPointer) -> Int64) throws -> SyscallOutcome {
        let thread = c.process.current
        func written() -> Int { Int(clamping: max(0, min(thread.transferred, Int64(bytes.count)))) }
        let attempt: (UnsafeRawBufferPointer, Bool) -> Int64 = { b, first in
            guard let part else { return writeWithoutWaiting(file, b, flags: flags) }
            guard let fd = file.hostFD else { return Errno.badf.result }
            return part(fd, b, first)
        }
        var finished: Int64?
        if c.interrupted {
            finished = thread.transferred > 0 ? Int64(written()) : Errno.intr.result
        } else {
            let readiness = HostReadiness(fd: file.hostFD ?? -1, events: Int16(POLLOUT))
            let parked = c.park(.host(readiness)) {
                guard mayWait(file) else { return true }
                let start = written()
                let n = bytes[start...].withUnsafeBytes { attempt($0, start == 0) }
                if n > 0 { thread.transferred += n }
                if n == Errno.again.result || (n >= 0 && written() < bytes.count) { return false }
                finished = n < 0 && written() == 0 ? n : Int64(written())
                return true
            }
            if let parked { return parked }
        }
        let process = c.process
        let terminal = TerminalSignals.mayRaise(file)
        let outcome = try c.hostOutcome { effects throws(Errno) -> Int64 in
            let r: Int64
            if let finished {
                r = finished
            } else {
                guard let fd = file.hostFD else { throw .badf }
                if mayWait(file) {
                    r = alone(process, fd, bytes, from: written(), attempt)
                } else {
                    let done = written()
                    let n = bytes[done...].withUnsafeBytes { plain(fd, $0) }
                    r = done > 0 ? Int64(done) + max(0, n) : n
                }
            }
            if terminal, r > 0, let fd = file.hostFD { TerminalSignals.note(fd, bytes.prefix(Int(r)), &effects) }
            return r
        }
        let r = outcome.result
        if terminal {
            try TerminalSignals.send(c, outcome)
        } else if !outcome.carried.isEmpty {
            // A write(2) the recording made into another process's /proc/<pid>/mem
            // (replay does not know the descriptor is one): its bytes go there again.
            try ProcMemoryCalls.replayWrite(c, outcome, bytes: bytes)
        }
        try FileSyscalls.echo(c, file, bytes, r)
        if r == Errno.pipe.result && flags & SocketSyscalls.MSG_NOSIGNAL == 0 { brokenPipe(c) }
        return .result(r)
    }

    /// A blocking write when no other thread could run (recording, inside
    /// the host call): what fits is written, then detrec waits for room, but
    /// no longer than until a timer of the process would interrupt the wait
    /// (as a read's wait does, `TimerSyscalls.waitReady`), so an alarm ends
    /// a write nobody reads as Linux's signal does: with what was written,
    /// or EINTR when nothing was. Before, one blocking host write hung
    /// detrec and the guest's timer never fired.
    static func alone(_ p: Process, _ fd: Int32, _ bytes: [UInt8], from start: Int,
                      _ attempt: (UnsafeRawBufferPointer, Bool) -> Int64) -> Int64 {
        var done = start
        while true {
            let n = bytes[done...].withUnsafeBytes { attempt($0, done == 0) }
            if n > 0 {
                done += Int(n)
                if done >= bytes.count { return Int64(done) }
                continue
            }
            if n != Errno.again.result { return done > 0 ? Int64(done) : n }
            guard TimerSyscalls.waitReady(p, fd: fd, events: Int16(POLLOUT)) else {
                return done > 0 ? Int64(done) : Errno.intr.result
            }
        }
    }

    /// A call with a form that does not wait (flock's LOCK_NB, F_SETLK for
    /// F_SETLKW, a non-blocking connect). While other threads could run
    /// (recording), `attempt` tries that form: its result, or nil when the
    /// call would have to wait; the thread then parks on `condition` and
    /// tries again when it holds. `plain` is the call itself, for when
    /// nothing else could run (it may block detrec; a host signal
    /// interrupts it). Replay parks where the recording did and takes the
    /// result from the trace.
    static func withoutWaiting(_ c: SyscallCall, on condition: @escaping () -> WaitCondition,
                               attempt: @escaping () -> Int64?, plain: @escaping () -> Int64) throws -> SyscallOutcome {
        var finished: Int64?
        if let parked = c.park(condition(), unless: {
            finished = attempt()
            return finished != nil
        }) { return parked }
        return .result(try c.host { _ in finished ?? plain() })
    }

    /// How often a wait with nothing to poll (a lock) looks again.
    static let retry = Nanoseconds.milliseconds(10)
    static func retryLater() -> WaitCondition { .host(HostReadiness([], deadline: .now() + retry)) }

    /// EPIPE on a write also sends the writer SIGPIPE, as Linux does.
    static func brokenPipe(_ c: SyscallCall) {
        SignalDelivery.generate(c.process, signal: Signals.SIGPIPE,
                                info: SignalDelivery.siginfo(signal: Signals.SIGPIPE, code: Signals.SI_USER,
                                                             pid: c.process.pid, uid: c.process.uid),
                                to: c.process.current)
    }
}
