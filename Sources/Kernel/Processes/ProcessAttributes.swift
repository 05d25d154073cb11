import Glibc

/// The per-process kernel state a child inherits: fork copies this value
/// as a whole (`Process.init(sharing:thread:from:)`), and each field says
/// what exec does to it. Kept by the emulation, never the host's
/// process-wide state, so one recorded process changing it leaves the
/// others and detrec alone.
public struct ProcessAttributes {
    /// The path the program was started with (AT_EXECFN, /proc/self/exe);
    /// exec sets it.
    public var executablePath: String
    /// The file the last exec opened, as the host named it (symbolic links
    /// resolved): what /proc/self/exe shows, as Linux's d_path of the
    /// file. Nil for the first program and for traces recorded without it:
    /// /proc/self/exe then names `executablePath`.
    public var openedExecutable: String?
    /// Resource limits the guest set (prlimit64), by resource number; exec keeps them.
    public var limits: [Int32: (soft: UInt64, hard: UInt64)] = [:]
    /// Set by `detrec record --chaos`: randomized scheduling (recording only).
    public var chaos: Scheduler.Chaos?
    /// The auxiliary vector as built (for /proc/self/auxv), argv and envp; exec sets them.
    public var auxv: [UInt8] = []
    public var argv: [[UInt8]] = []
    public var envp: [[UInt8]] = []
    /// The task's name (/proc/<pid>/comm): the last part of the path it was
    /// executed by, at most 15 bytes.
    public var commandName = ""

    // The working directory and umask are the process's `fs`
    // (`FileSystemContext`), which clone(CLONE_FS) shares.
    /// The process group and session; exec keeps them.
    public var processGroup: Int32
    public var session: Int32
    /// The nice value (-20 to 19); exec keeps it.
    public var nice: Int32
    /// The I/O priority ioprio_set gave (class << 13 | data); 0 is
    /// IOPRIO_CLASS_NONE, what a process has until it sets one. Fork and
    /// exec keep it.
    public var ioPriority: Int32 = 0
    /// TIOCNOTTY gave up the controlling terminal (fork keeps that; a new
    /// session has none anyway).
    public var leftTerminal = false

    public init(executablePath: String, inherited: InheritedState = InheritedState()) {
        self.executablePath = executablePath
        processGroup = inherited.processGroup
        session = inherited.session
        nice = inherited.nice
    }
}

/// What the first process inherits from detrec's own process besides its
/// ids and signals, as a program exec'd in detrec's place would: the
/// umask, process group, session and nice value. Recording reads them from
/// the host; the trace header's extras carry them to replay.
public struct InheritedState: Equatable {
    public var umask: UInt32 = 0o022
    public var processGroup: Int32 = 0
    public var session: Int32 = 0
    public var nice: Int32 = 0
    /// RLIMIT_NOFILE (soft, hard): the guest's descriptor table has the
    /// limit detrec was started with, as an exec'd program would.
    public var openFiles: (soft: UInt64, hard: UInt64)?
    /// The first thread's credentials (nil: a trace from before they were
    /// kept, which derives them from the auxv ids).
    public var credentials: Credentials?
    /// fs.suid_dumpable (0 when it cannot be read).
    public var suidDumpable: Int32 = 0

    public init() {}

    public static func == (a: InheritedState, b: InheritedState) -> Bool {
        a.umask == b.umask && a.processGroup == b.processGroup && a.session == b.session && a.nice == b.nice
            && a.openFiles?.soft == b.openFiles?.soft && a.openFiles?.hard == b.openFiles?.hard
            && a.credentials == b.credentials && a.suidDumpable == b.suidDumpable
    }

    /// detrec's own, now.
    public static func ofThisProcess() -> InheritedState {
        var s = InheritedState()
        let mask = Glibc.umask(0o022)
        Glibc.umask(mask)
        s.umask = UInt32(mask)
        s.processGroup = getpgrp()
        s.session = getsid(0)
        errno = 0
        let prio = Int32(truncatingIfNeeded: hostSyscall(SYS.getpriority, 0, 0))
        s.nice = prio > 0 ? 20 - prio : 0
        var nofile = rlimit()
        if getrlimit(__rlimit_resource_t(7), &nofile) == 0 { s.openFiles = (UInt64(nofile.rlim_cur), UInt64(nofile.rlim_max)) }
        s.credentials = Credentials.ofThisThread()
        let fd = Glibc.open("/proc/sys/fs/suid_dumpable", O_RDONLY | O_CLOEXEC)
        if fd >= 0 {
            var buf = [UInt8](repeating: 0, count: 16)
            let n = buf.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            Glibc.close(fd)
            if n > 0, let v = Int32(String(decoding: buf.prefix(n), as: UTF8.self).filter(\.isNumber)) { s.suidDumpable = v }
        }
        return s
    }

    /// As the trace header's extras keep them.
    public var extra: [String: String] {
        var e = ["umask": String(umask), "pgid": String(processGroup), "sid": String(session), "nice": String(nice)]
        if let openFiles { e["nofile"] = "\(openFiles.soft):\(openFiles.hard)" }
        if let credentials { e["credentials"] = credentials.encoded }
        e["suidDumpable"] = String(suidDumpable)
        return e
    }

    /// From the header's extras; a trace from before they were kept gets
    /// the first process as leader of its own group and session.
    public init(extra: [String: String], pid: Int32) {
        umask = extra["umask"].flatMap { UInt32($0) } ?? 0o022
        processGroup = extra["pgid"].flatMap { Int32($0) } ?? pid
        session = extra["sid"].flatMap { Int32($0) } ?? pid
        nice = extra["nice"].flatMap { Int32($0) } ?? 0
        // A trace from before the limit was kept: the table's old fixed 1024.
        if let parts = extra["nofile"]?.split(separator: ":"), parts.count == 2,
           let soft = UInt64(parts[0]), let hard = UInt64(parts[1]) {
            openFiles = (soft, hard)
        }
        credentials = extra["credentials"].flatMap { Credentials(encoded: $0) }
        suidDumpable = extra["suidDumpable"].flatMap { Int32($0) } ?? 0
    }
}
