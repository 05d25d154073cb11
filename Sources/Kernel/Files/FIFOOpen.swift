import Glibc

/// open(2) of a FIFO for reading only or writing only, without O_NONBLOCK:
/// Linux waits in fifo_open until the other end is open (a reader for a
/// writer, a writer for a reader). Recording never waits in that host
/// open; the thread parks instead (or, when nothing else could run,
/// detrec waits on the host as the other calls do: a timer or a host
/// signal ends the wait with EINTR):
/// - a reader opens its end at once with O_NONBLOCK. Like Linux's waiting
///   reader it counts as a reader from then on, so a writer's open (a
///   recorded one's too) succeeds. It is done once a writer has come: the
///   pipe has data, or reports a hang-up (a writer came and went), or a
///   non-blocking `tee` of one byte says EAGAIN (empty, with a writer);
///   0 means empty with no writer.
/// - a writer tries O_WRONLY|O_NONBLOCK, which is ENXIO while no reader
///   has the FIFO open. Like Linux's waiting writer (fifo_open counts it
///   in pipe->writers before it waits) it counts as a writer: it keeps the
///   FIFO by an O_PATH descriptor, and a recorded reader's open (any mode,
///   O_NONBLOCK too) opens the waiting writers' ends on the host at once,
///   as Linux's reader wakes them. So the reader's read waits (EAGAIN if
///   non-blocking) instead of seeing end of file, and its poll sees no
///   hang-up; the writer's open then succeeds, even if a signal comes
///   before it runs again (Linux looks at the partner first).
/// The descriptor then loses O_NONBLOCK, as the guest opened it. Only a
/// reader's data or hang-up can be polled for, so the wait also looks
/// again every 10 ms. Replay never opens anything: it parks where the
/// recording parked and takes the recorded result.
enum FIFOOpen {
    /// What one attempt found (recording only).
    enum Attempt {
        /// Not a FIFO, or a mode that does not wait: the plain open.
        case plain
        /// The other end is not open yet.
        case waiting
        /// The FIFO is open, in blocking mode: the host descriptor.
        case opened(Int32)
        /// The open failed: -errno.
        case failed(Int64)

        var waits: Bool {
            if case .waiting = self { return true }
            return false
        }
    }

    /// Whether an open with `flags` may wait for a FIFO's other end.
    static func mayWait(flags: Int32) -> Bool {
        let access = flags & O_ACCMODE
        guard access == O_RDONLY || access == O_WRONLY else { return false }
        if flags & O_CREAT != 0 && flags & O_EXCL != 0 { return false }
        let O_PATH: Int32 = 0o10000000
        return flags & (O_NONBLOCK | O_PATH | O_DIRECTORY) == 0
    }

    /// A writer waiting in open: the FIFO it waits on (an O_PATH
    /// descriptor and its identity), and its end once a reader opened one.
    final class WaitingWriter {
        let path: Int32
        let device: UInt64, inode: UInt64
        var opened: Int32?

        init(path: Int32, device: UInt64, inode: UInt64) {
            self.path = path; self.device = device; self.inode = inode
        }

        /// O_WRONLY|O_NONBLOCK of the same FIFO again: the descriptor, or -errno.
        func reopen() -> Int64 {
            let name = Array("/proc/self/fd/\(path)".utf8) + [0]
            return name.withUnsafeBytes { p in
                hostSyscall(SYS.openat, Int(AT_FDCWD), Int(bitPattern: p.baseAddress), Int(O_WRONLY | O_NONBLOCK | O_CLOEXEC), 0)
            }
        }
    }

    /// One attempt at the open, in `dirFD` relative `name` (recording).
    static func attempt(_ thread: GuestThread, of family: ProcessFamily, dirFD: Int32, name: [UInt8], flags: Int32,
                        mode: Int32, follow: Bool) -> Attempt {
        if let reader = thread.fifoReader {
            return writerCame(reader) ? finish(thread, reader) : .waiting
        }
        if let writer = thread.fifoWriter {
            let r = writer.opened.map { Int64($0) } ?? writer.reopen()
            if r == -Int64(ENXIO) { return .waiting }
            writer.opened = nil
            abandon(thread)
            return r >= 0 ? finish(thread, Int32(r)) : .failed(r)
        }
        var st = stat()
        let path = name + [0]
        let found = path.withUnsafeBufferPointer { p in
            p.baseAddress.map { fstatat(dirFD, $0, &st, follow ? 0 : AT_SYMLINK_NOFOLLOW) } ?? -1
        }
        guard found == 0, st.st_mode & S_IFMT == S_IFIFO else { return .plain }
        let h = path.withUnsafeBytes { p in
            hostSyscall(SYS.openat, Int(dirFD), Int(bitPattern: p.baseAddress), Int(flags | O_NONBLOCK | O_CLOEXEC), Int(mode))
        }
        let reading = flags & O_ACCMODE == O_RDONLY
        guard h >= 0 else {
            guard !reading && h == -Int64(ENXIO) else { return .failed(h) }
            let kept = path.withUnsafeBytes { p in
                hostSyscall(SYS.openat, Int(dirFD), Int(bitPattern: p.baseAddress), Int(WorkingDirectorySyscalls.O_PATH | O_CLOEXEC | (follow ? 0 : O_NOFOLLOW)), 0)
            }
            if kept >= 0 { thread.fifoWriter = WaitingWriter(path: Int32(kept), device: UInt64(st.st_dev), inode: UInt64(st.st_ino)) }
            return .waiting
        }
        let fd = Int32(h)
        guard reading else { return finish(thread, fd) }
        thread.fifoReader = fd
        readerOpened(family, fd)
        return writerCame(fd) ? finish(thread, fd) : .waiting
    }

    /// A recorded open for reading (O_RDONLY or O_RDWR) of host descriptor
    /// `fd` succeeded: the writers waiting in open on the same FIFO get
    /// their ends now, as Linux's fifo_open wakes them (recording only).
    static func readerOpened(_ family: ProcessFamily, _ fd: Int32) {
        let waiting = family.threads.compactMap(\.fifoWriter).filter { $0.opened == nil }
        guard !waiting.isEmpty else { return }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFIFO else { return }
        for w in waiting where w.device == UInt64(st.st_dev) && w.inode == UInt64(st.st_ino) {
            let r = w.reopen()
            if r >= 0 { w.opened = Int32(r) }
        }
    }

    /// Whether a signal that ends the thread's wait comes too late: a
    /// reader has opened the writer's end already (recording only).
    static func partnerCame(_ thread: GuestThread) -> Bool { thread.fifoWriter?.opened != nil }

    /// What the thread parks on while it waits: its reader's data or
    /// hang-up, or 10 ms, when it looks again.
    static func condition(_ thread: GuestThread) -> WaitCondition {
        .host(HostReadiness(thread.fifoReader.map { [($0, Int16(POLLIN))] } ?? [],
                            deadline: .now() + HostTransfer.retry))
    }

    /// Waits on the host, when no other thread could run, until the other
    /// end is open (attempting again), a timer that would interrupt is
    /// due, or a host signal arrives (EINTR for both).
    static func waitOnHost(_ c: SyscallCall, dirFD: Int32, name: [UInt8], flags: Int32, mode: Int32, follow: Bool) -> Int64 {
        let thread = c.process.current
        while true {
            switch attempt(thread, of: c.process.family, dirFD: dirFD, name: name, flags: flags, mode: mode, follow: follow) {
            case .plain: return Errno.nosys.result     // cannot happen: it was a FIFO
            case .opened(let fd): return Int64(fd)
            case .failed(let r): return r
            case .waiting: break
            }
            let timer = TimerSyscalls.nextInterruption(c.process).map { MonotonicInstant(doubleSeconds: $0) }
            var set = thread.fifoReader.map { [pollfd(fd: $0, events: Int16(POLLIN), revents: 0)] } ?? []
            let until = min(.now() + HostTransfer.retry, timer ?? .never)
            if case .hostSignal = HostWake.wait(&set, until: until) {
                abandon(thread)
                return Errno.intr.result
            }
            if let timer, timer.hasPassed {
                abandon(thread)
                return Errno.intr.result
            }
        }
    }

    /// Closes the reader an unfinished open kept (a signal ended its wait,
    /// or the thread went on to another call or ended).
    static func abandon(_ thread: GuestThread) {
        if let fd = thread.fifoReader {
            thread.fifoReader = nil
            Glibc.close(fd)
        }
        if let writer = thread.fifoWriter {
            thread.fifoWriter = nil
            Glibc.close(writer.path)
            if let fd = writer.opened { Glibc.close(fd) }
        }
    }

    private static func finish(_ thread: GuestThread, _ fd: Int32) -> Attempt {
        if thread.fifoReader == fd { thread.fifoReader = nil }
        let flags = fcntl(fd, F_GETFL)
        if flags >= 0 { _ = fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) }
        return .opened(fd)
    }

    /// Whether a writer has had the FIFO open since `reader` opened it.
    private static func writerCame(_ reader: Int32) -> Bool {
        var p = pollfd(fd: reader, events: Int16(POLLIN), revents: 0)
        if Glibc.poll(&p, 1, 0) > 0, p.revents & Int16(POLLIN | POLLHUP) != 0 { return true }
        guard let probe = probePipe else { return false }
        let SPLICE_F_NONBLOCK = 2
        let r = hostSyscall(SYS.tee, Int(reader), Int(probe.write), 1, SPLICE_F_NONBLOCK)
        if r > 0 {
            var byte: UInt8 = 0
            _ = Glibc.read(probe.read, &byte, 1)
            return true
        }
        return r == Errno.again.result
    }

    /// A pipe `tee` copies a probed byte into (and it is read back at once).
    private static let probePipe: (read: Int32, write: Int32)? = {
        var fds: [Int32] = [-1, -1]
        let r = fds.withUnsafeMutableBufferPointer { hostSyscall(SYS.pipe2, Int(bitPattern: $0.baseAddress), Int(O_NONBLOCK | O_CLOEXEC)) }
        guard r == 0 else { return nil }
        return (fds[0], fds[1])
    }()
}
