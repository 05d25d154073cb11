import Glibc
import Kernel
import KVMUser

/// One replay checkpoint: a copy of the whole replayer process (guest
/// memory, every machine's registers, the emulated kernel, the trace
/// position) made by `fork`, blocked on its control socket until it is
/// asked to answer a question (a probe) or to become the replayer gdb
/// talks to (a hand-over). Copy-on-write makes it cheap to keep.
struct ReplayCheckpoint {
    /// `monitor checkpoints` numbers (user ones) or an automatic one's id.
    let id: Int
    let pid: pid_t
    /// This process's end of the checkpoint's control socket.
    let socket: Int32
    /// Where the replay stood when it was taken.
    let position: ReplayPosition
    /// Taken by `monitor checkpoint`: kept until deleted.
    let user: Bool
    /// At a slice's start (what probes and hand-overs start from).
    var atSliceStart: Bool { position == ReplayPosition(event: position.event) }
}

/// The processes of a replay with checkpoints (docs/gdb.md "Checkpoints"):
///
/// - the **supervisor**, the process the shell (or gdb's `--gdb` parent)
///   waits on: the first replayer. Once it hands the session over it
///   only waits for the final status, reaps, and exits with it
///   (PR_SET_CHILD_SUBREAPER, so orphaned checkpoints become its children).
/// - the **active** replayer: the one talking to gdb (the supervisor
///   until the first hand-over).
/// - **checkpoints**, blocked in `wait` on their control socket and on
///   the lifeline, a pipe whose only write end the supervisor holds: when
///   it exits, every checkpoint sees the hang-up and exits too.
/// - **probe workers**, forked by a checkpoint to answer one question and exit.
final class ReplayProcesses {
    let supervisor: pid_t
    private let lifelineRead: Int32
    /// Only in the supervisor.
    private var lifelineWrite: Int32
    /// The final status travels from the active replayer to the supervisor.
    private let statusRead: Int32
    private let statusWrite: Int32

    /// What a restored process does with a request: set by the timeline.
    /// A probe answers bytes; a hand-over never returns.
    var answerProbe: (([UInt8]) -> [UInt8])?
    var takeOver: (([UInt8], [Int32]) -> Never)?
    /// Run by the supervisor before it exits (wait for gdb, remove temporary files).
    var beforeExit: () -> Void = {}

    /// This process may take checkpoints (not a probe worker).
    private(set) var mayCheckpoint = true
    /// Time spent in fork for checkpoints and restores (ns), for `monitor stats`.
    private(set) var forkNanoseconds: UInt64 = 0
    private(set) var forks = 0
    private(set) var rebuildNanoseconds: UInt64 = 0

    init() throws(WireError) {
        supervisor = getpid()
        var l: [Int32] = [-1, -1], s: [Int32] = [-1, -1]
        guard pipe(&l) == 0, pipe(&s) == 0 else {
            throw WireError("pipe: \(String(cString: strerror(errno)))")
        }
        for fd in l + s { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        (lifelineRead, lifelineWrite, statusRead, statusWrite) = (l[0], l[1], s[0], s[1])
        // PR_SET_CHILD_SUBREAPER (36): orphaned checkpoints become ours.
        _ = hostSyscall(SYS.prctl, 36, 1)
    }

    var isSupervisor: Bool { getpid() == supervisor }

    /// For `monitor stats`: what forks and restores cost this process.
    var costs: String {
        func ms(_ ns: UInt64) -> String {
            let tenths = (ns + 50_000) / 100_000
            return "\(tenths / 10).\(tenths % 10) ms"
        }
        var out = "; this process forked \(forks) checkpoint\(forks == 1 ? "" : "s")"
        if forks > 0 { out += ", \(ms(forkNanoseconds / UInt64(forks))) each" }
        if rebuildNanoseconds > 0 { out += "; it was restored from one, its machines rebuilt in \(ms(rebuildNanoseconds))" }
        return out
    }

    static func now() -> UInt64 {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return UInt64(t.tv_sec) * 1_000_000_000 + UInt64(t.tv_nsec)
    }

    /// Forks a checkpoint of this process. In the parent: its pid and
    /// socket. The child never returns from this call: it waits for
    /// requests (`serveAsCheckpoint`). `others` are sockets the child must
    /// not keep (other checkpoints', the gdb connection).
    func fork(closingInChild others: [Int32]) throws -> (pid: pid_t, socket: Int32) {
        try MachineFork.prepare()
        let (mine, theirs) = try WireSocket.pair()
        let t0 = ReplayProcesses.now()
        let pid = Glibc.fork()
        if pid < 0 {
            close(mine); close(theirs)
            throw WireError("fork: \(String(cString: strerror(errno)))")
        }
        if pid == 0 {
            close(mine)
            for fd in others { close(fd) }
            if lifelineWrite >= 0 { close(lifelineWrite); lifelineWrite = -1 }
            // Nobody waits for a checkpoint's workers but the checkpoint,
            // and orphans go to the supervisor.
            signal(SIGCHLD, SIG_IGN)
            signal(SIGIO, SIG_IGN)
            serveAsCheckpoint(theirs)
        }
        close(theirs)
        forkNanoseconds += ReplayProcesses.now() - t0
        forks += 1
        return (pid, mine)
    }

    /// Request kinds on a control socket.
    enum Request: UInt64 { case quit = 0, probe = 1, takeOver = 2 }

    private func serveAsCheckpoint(_ socket: Int32) -> Never {
        while true {
            var p = [pollfd(fd: socket, events: Int16(POLLIN), revents: 0), pollfd(fd: lifelineRead, events: Int16(POLLIN), revents: 0)]
            let n = poll(&p, 2, -1)
            if n < 0 { if errno == EINTR { continue }; _exit(0) }
            if p[1].revents != 0 { _exit(0) }
            guard let (payload, fds) = (try? WireSocket.receive(socket)) ?? nil else { _exit(0) }
            var r = WireReader(payload)
            guard let kind = (try? r.word()).flatMap(Request.init(rawValue:)), kind != .quit else { _exit(0) }
            let body = Array(payload.dropFirst(8))
            let worker = Glibc.fork()
            if worker == 0 {
                signal(SIGCHLD, SIG_DFL)
                let t0 = ReplayProcesses.now()
                do {
                    try MachineFork.rebuild()
                } catch {
                    GDBStub.say("detrec: a checkpoint could not be restored: \(error)")
                    if kind == .probe { _exit(70) }
                    _ = finish(status: 70)
                }
                rebuildNanoseconds = ReplayProcesses.now() - t0
                if kind == .probe {
                    // The answer goes on the probe's own socket: if this
                    // worker dies, the asker sees it closed.
                    mayCheckpoint = false
                    let answer = answerProbe?(body) ?? failure("no probe handler")
                    if let reply = fds.first { _ = try? WireSocket.send(reply, answer) }
                    _exit(0)
                }
                close(socket)
                guard let takeOver else { _exit(70) }
                takeOver(body, fds)
            }
            for fd in fds { close(fd) }
            if worker < 0 { continue }
            if kind == .probe {
                var status: Int32 = 0
                // SIGCHLD ignored: waitpid returns (ECHILD) once the worker is gone.
                while waitpid(worker, &status, 0) < 0 && errno == EINTR {}
            }
        }
    }

    /// A probe's answer: ok, then the job's bytes.
    static func success(_ bytes: [UInt8]) -> [UInt8] {
        var w = WireWriter()
        w.put(true)
        return w.bytes + bytes
    }

    private func failure(_ message: String) -> [UInt8] {
        var w = WireWriter()
        w.put(false)
        w.put(message)
        return w.bytes
    }

    /// Asks checkpoint `c` a question; the answer's bytes (after the ok flag).
    func probe(_ c: ReplayCheckpoint, _ job: [UInt8]) throws -> [UInt8] {
        var w = WireWriter()
        w.put(Request.probe.rawValue)
        let (mine, theirs) = try WireSocket.pair()
        defer { close(mine) }
        do {
            defer { close(theirs) }
            try WireSocket.send(c.socket, w.bytes + job, fds: [theirs])
        }
        guard let (answer, fds) = try WireSocket.receive(mine) else { throw WireError("checkpoint \(c.id)'s probe ended without an answer") }
        for fd in fds { close(fd) }
        var r = WireReader(answer)
        guard try r.bool() else { throw WireError("checkpoint \(c.id): \(try r.string())") }
        return Array(answer.dropFirst(8))
    }

    /// Hands the session to a process restored from `c`, with `fds`
    /// (the gdb connection, the checkpoints' sockets); this process then
    /// steps down and never returns.
    func handOver(to c: ReplayCheckpoint, _ message: [UInt8], fds: [Int32]) throws -> Never {
        var w = WireWriter()
        w.put(Request.takeOver.rawValue)
        // Before the request: the supervisor hears it before the new one's pid.
        if !isSupervisor { tell(.handingOver, getpid()) }
        try WireSocket.send(c.socket, w.bytes + message, fds: fds)
        stepDown(closing: fds)
    }

    /// Ends one checkpoint.
    func release(_ c: ReplayCheckpoint) {
        var w = WireWriter()
        w.put(Request.quit.rawValue)
        _ = try? WireSocket.send(c.socket, w.bytes)
        close(c.socket)
        var status: Int32 = 0
        // Our child (else the supervisor reaps it): wait, so none is left behind.
        while waitpid(c.pid, &status, 0) < 0 && errno == EINTR {}
    }

    /// In a process that took the session over: when the supervisor dies
    /// (killed, say), the lifeline's hang-up ends this process too
    /// (SIGTERM through O_ASYNC on the lifeline, F_SETSIG), so no replayer
    /// is left serving a session nobody waits for.
    func watchLifeline() {
        _ = fcntl(lifelineRead, F_SETOWN, getpid())
        _ = fcntl(lifelineRead, 10 /* F_SETSIG */, SIGTERM)
        _ = fcntl(lifelineRead, F_SETFL, fcntl(lifelineRead, F_GETFL) | O_ASYNC)
    }

    /// The active replayer is done: the supervisor exits with `status`
    /// after the checkpoints; any other process tells the supervisor.
    func finish(status: Int32) -> Int32 {
        if isSupervisor {
            shutDown()
            return status
        }
        _ = fcntl(lifelineRead, F_SETOWN, 0)
        tell(.status, status)
        _exit(0)
    }

    /// What the supervisor hears on the status pipe.
    enum Notice: Int32 { case active = 1, status = 2, handingOver = 3 }

    /// One notice (8 bytes: less than PIPE_BUF, so writes never interleave).
    func tell(_ notice: Notice, _ value: Int32) {
        var m: (Int32, Int32) = (notice.rawValue, value)
        _ = withUnsafeBytes(of: &m) { write(statusWrite, $0.baseAddress, 8) }
    }

    /// Not the active replayer any more.
    private func stepDown(closing fds: [Int32]) -> Never {
        for fd in fds { close(fd) }
        guard isSupervisor else {
            _ = fcntl(lifelineRead, F_SETOWN, 0)
            _exit(0)
        }
        signal(SIGIO, SIG_IGN)
        let status = awaitStatus()
        beforeExit()
        shutDown()
        exit(status)
    }

    /// The supervisor, once it handed the session over: the final status
    /// the active replayer sends. Each active one says its pid when it
    /// takes over; if that one is gone with no hand-over under way (it
    /// crashed), the session is over with the internal-error status.
    private func awaitStatus() -> Int32 {
        var active: pid_t?
        while true {
            var p = pollfd(fd: statusRead, events: Int16(POLLIN), revents: 0)
            let n = poll(&p, 1, 500)
            if n < 0 && errno != EINTR { return 70 }
            if n <= 0 {
                if let a = active, !ReplayProcesses.alive(a) {
                    GDBStub.say("detrec: the replay process \(a) ended without a status")
                    return 70
                }
                continue
            }
            var m: (Int32, Int32) = (0, 0)
            let got = withUnsafeMutableBytes(of: &m) { read(statusRead, $0.baseAddress, 8) }
            guard got == 8 else { if got < 0 && errno == EINTR { continue }; return 70 }
            switch Notice(rawValue: m.0) {
            case .active?: active = m.1
            case .handingOver?: active = nil
            case .status?: return m.1
            case nil: return 70
            }
        }
    }

    /// Whether `pid` runs (not gone, not a zombie).
    static func alive(_ pid: pid_t) -> Bool {
        let fd = open("/proc/\(pid)/stat", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 512)
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n > 0, let close = buffer[0..<n].lastIndex(of: UInt8(ascii: ")")), close + 2 < n else { return false }
        return buffer[close + 2] != UInt8(ascii: "Z")
    }

    /// The supervisor's end: the lifeline goes, every checkpoint with it,
    /// and every descendant is reaped (none is left when detrec exits).
    func shutDown() {
        guard isSupervisor else { return }
        if lifelineWrite >= 0 { close(lifelineWrite); lifelineWrite = -1 }
        var status: Int32 = 0
        while true {
            let r = waitpid(-1, &status, __WALL)
            if r < 0 && errno == EINTR { continue }
            if r < 0 { break }
        }
    }
}
