import Glibc

/// Where a guest path leads, decided before the host sees the path.
///
/// detrec runs as root and performs the guest's path calls itself, so a
/// path that the host would resolve into detrec's own /proc entries
/// (`/proc/self`, `/proc/<detrec's pid>`, a symlink to either, `..` tricks,
/// a descriptor of a /proc directory) must never be handed to the host.
/// `GuestPath.resolve` walks the path the way the kernel does, one
/// component at a time, following symlinks by reading them on the host,
/// but with every procfs mount's `self`, `thread-self` and `<pid>` entries
/// interpreted for the guest: the guest's pids lead into `ProcFS`, detrec's
/// own pid and thread ids lead nowhere (ENOENT), other host processes stay
/// the host's.
public enum PathTarget: Equatable {
    /// Outside every procfs: the host may resolve the guest's path as given.
    case host
    /// Inside a procfs but not in any guest's or detrec's pid directory
    /// (/proc/meminfo, /proc/sys, another host process): read-only.
    case hostProc
    /// A node of the guest's /proc.
    case proc(ProcFS.Location)
    /// No such node for the guest (detrec's own entries), or a loop.
    case denied(Errno)
}

public enum GuestPath {
    /// The process's working directory, absolute: where its directory
    /// descriptor leads now (it may have been renamed), else the path its
    /// chdir calls named.
    static func currentDirectory(_ process: Process) -> String {
        let cwd = process.cwd
        if let fd = cwd.file.hostFD, let target = hostReadlink("/proc/self/fd/\(fd)"), target.hasPrefix("/"),
           !target.hasSuffix(" (deleted)") {
            return target
        }
        return cwd.path
    }

    /// The absolute path a guest directory descriptor stands for; nil when
    /// it has none (not a directory, deleted: the host then decides).
    static func directoryPath(_ dir: OpenFile) -> String? {
        if let location = dir.procLocation { return location.path }
        guard let fd = dir.hostFD else { return nil }
        guard let target = hostReadlink("/proc/self/fd/\(fd)"), target.hasPrefix("/"),
              !target.hasSuffix(" (deleted)") else { return nil }
        return target
    }

    /// Resolves `path` (relative to `dir`, or to the working directory when
    /// nil) for `process`. `follow`: whether a symlink in the last
    /// component is followed (open without O_NOFOLLOW, stat; not lstat).
    /// Recording only: it reads the host's file system.
    public static func resolve(_ path: [UInt8], from dir: OpenFile?, process: Process, follow: Bool) -> PathTarget {
        resolveWithPath(path, from: dir, process: process, follow: follow).target
    }

    /// `resolve`, and the absolute path the walk ended on (the one to hand
    /// the host when `dir` is a directory of the guest's /proc, which the
    /// host cannot resolve relative paths against).
    static func resolveWithPath(_ path: [UInt8], from dir: OpenFile?, process: Process,
                                follow: Bool) -> (target: PathTarget, canonical: String, rewritten: Bool) {
        let text = String(decoding: path, as: UTF8.self)
        var full = text
        if !text.hasPrefix("/") {
            let base: String
            if let dir {
                guard let p = directoryPath(dir) else {
                    // A descriptor with no path of its own (a pipe, a deleted
                    // directory): the host answers, and can only fail or stay there.
                    return (.host, text, false)
                }
                base = p
            } else {
                base = currentDirectory(process)
            }
            full = base + "/" + text
        }
        var walk = Walk(process: process, procMounts: procMountPoints)
        let target = walk.run(full, follow: follow)
        return (target, walk.joined, walk.rewritten)
    }

    /// The path and directory descriptor to give the host for a path that
    /// `resolve` sent there.
    static func hostArguments(_ path: [UInt8], from dir: OpenFile?, process: Process,
                              follow: Bool) -> (PathTarget, [UInt8], OpenFile?) {
        let (target, canonical, rewritten) = resolveWithPath(path, from: dir, process: process, follow: follow)
        // The host must not read the guest's /proc names (self, a guest pid,
        // exe) as its own: a path the walk rewrote goes as where it led.
        if dir?.procLocation != nil || rewritten { return (target, Array(canonical.utf8), nil) }
        return (target, path, dir)
    }

    struct Walk {
        let process: Process
        let procMounts: Set<String>
        var stack: [String] = []
        var links = 0
        /// Whether the walk went through the guest's /proc names (self,
        /// thread-self, a link of a guest pid directory).
        var rewritten = false
        /// The guest pid directories entered (a process's, then maybe one
        /// of its task/<tid>): the index in `stack` of the directory's
        /// component, and which process/thread it names.
        var frames: [(index: Int, pid: Int32, tid: Int32?)] = []
        var guest: (index: Int, pid: Int32, tid: Int32?)? { frames.last }

        init(process: Process, procMounts: Set<String>) {
            self.process = process
            self.procMounts = procMounts
        }

        var joined: String { "/" + stack.joined(separator: "/") }

        /// How many components of `stack` are a procfs mount point (the
        /// deepest one that is a prefix), if any.
        func procDepth() -> Int? {
            var depth: Int?
            var prefix = ""
            if procMounts.contains("/") { depth = 0 }
            for (i, c) in stack.enumerated() {
                prefix += "/" + c
                if procMounts.contains(prefix) { depth = i + 1 }
            }
            return depth
        }

        mutating func run(_ full: String, follow: Bool) -> PathTarget {
            var pending = full.split(separator: "/", omittingEmptySubsequences: true).map(String.init).reversed() as [String]
            var trailingSlash = full.hasSuffix("/")
            while let comp = pending.popLast() {
                if comp == "." { continue }
                if comp == ".." {
                    if !stack.isEmpty { stack.removeLast() }
                    while let g = guest, stack.count <= g.index { frames.removeLast() }
                    continue
                }
                let last = pending.isEmpty
                let followThis = !last || follow || trailingSlash
                stack.append(comp)
                if let g = guest {
                    // Inside a guest pid directory: ProcFS decides.
                    let location = ProcFS.Location(pid: g.pid, tid: g.tid, rest: Array(stack[(g.index + 1)...]))
                    switch ProcFS.step(location, process: process, follow: followThis, last: last) {
                    case .node:
                        continue
                    case .missing(let e):
                        return .denied(e)
                    case .jump(let target):
                        guard bumpLinks() else { return .denied(Errno(ELOOP)) }
                        rewritten = true
                        stack = []
                        frames = []
                        pending.append(contentsOf: target.split(separator: "/").map(String.init).reversed())
                        if last { trailingSlash = target.hasSuffix("/") }
                        continue
                    case .enter(let pid, let tid):
                        // task/<tid>: the thread's directory under its process.
                        frames.append((stack.count - 1, pid, tid))
                        continue
                    }
                }
                if let depth = procDepth(), stack.count == depth + 1 {
                    // The component right under a procfs root.
                    switch pidEntry(comp, follow: followThis) {
                    case .guest(let pid, let tid):
                        frames.append((stack.count - 1, pid, tid))
                        continue
                    case .replace(let components):
                        guard bumpLinks() else { return .denied(Errno(ELOOP)) }
                        rewritten = true
                        stack.removeLast()
                        pending.append(contentsOf: components.reversed())
                        continue
                    case .link(let location):
                        return .proc(location)
                    case .detrec:
                        return .denied(.noent)
                    case .host:
                        break
                    }
                }
                guard followThis else { break }
                var st = stat()
                guard lstat(joined, &st) == 0 else {
                    // Missing or unreadable: the host fails the same way at
                    // the same component (what follows cannot be reached).
                    return classify()
                }
                guard st.st_mode & S_IFMT == S_IFLNK else { continue }
                guard let target = hostReadlink(joined) else { return classify() }
                if !target.hasPrefix("/"), procDepth() != nil {
                    // A magic link of another host process (pipe:[..],
                    // anon_inode:..): the host opens that object itself.
                    if last { return .hostProc }
                    return .denied(.notdir)
                }
                guard bumpLinks() else { return .denied(Errno(ELOOP)) }
                stack.removeLast()
                if target.hasPrefix("/") { stack = []; frames = [] }
                if last { trailingSlash = target.hasSuffix("/") }
                pending.append(contentsOf: target.split(separator: "/").map(String.init).reversed())
            }
            return classify()
        }

        mutating func bumpLinks() -> Bool {
            links += 1
            return links <= 40
        }

        func classify() -> PathTarget {
            if let g = guest {
                return .proc(ProcFS.Location(pid: g.pid, tid: g.tid, rest: Array(stack[(g.index + 1)...])))
            }
            return procDepth() != nil ? .hostProc : .host
        }

        enum PidEntry {
            case guest(pid: Int32, tid: Int32?)
            case replace([String])
            case link(ProcFS.Location)
            case detrec
            case host
        }

        /// What a name directly under a procfs root means for the guest.
        func pidEntry(_ name: String, follow: Bool) -> PidEntry {
            let me = process.pid
            let tid = process.current.tid == 0 ? me : process.current.tid
            switch name {
            case "self":
                return follow ? .replace([String(me)]) : .link(ProcFS.Location(pid: me, tid: nil, rest: [], selfLink: "\(me)"))
            case "thread-self":
                return follow ? .replace([String(me), "task", String(tid)])
                    : .link(ProcFS.Location(pid: me, tid: nil, rest: [], selfLink: "\(me)/task/\(tid)"))
            default:
                guard let n = Int32(name), n > 0, String(n) == name else { return .host }
                if let (p, t) = process.family.find(n) {
                    return .guest(pid: p.pid, tid: t.tid == p.pid || t.tid == 0 ? nil : t.tid)
                }
                if let p = process.family.processes.first(where: { $0.pid == n && $0.zombieStatus == nil }) {
                    return .guest(pid: p.pid, tid: nil)
                }
                // Handed out by the recording but gone, or one of detrec's own threads.
                if process.family.allocated(n) || GuestPath.detrecThreads().contains(n) { return .detrec }
                return .host
            }
        }
    }

    /// The host's procfs mount points, read once: the guest cannot mount,
    /// and detrec's own mounts do not change while it runs.
    nonisolated(unsafe) static let procMountPoints: Set<String> = procMounts()

    /// The host's procfs mount points (usually just /proc).
    static func procMounts() -> Set<String> {
        var out: Set<String> = ["/proc"]
        guard let f = fopen("/proc/self/mounts", "re") else { return out }
        defer { fclose(f) }
        var line: UnsafeMutablePointer<CChar>?
        var cap = 0
        while getline(&line, &cap, f) > 0, let line {
            let fields = String(cString: line).split(separator: " ")
            if fields.count >= 3, fields[2] == "proc" {
                out.insert(String(fields[1]))   // a mount point with spaces ("\\040") is not matched
            }
        }
        free(line)
        return out
    }

    /// detrec's own thread ids (its pid among them), from the host.
    static func detrecThreads() -> Set<Int32> {
        var out: Set<Int32> = [getpid()]
        guard let d = opendir("/proc/self/task") else { return out }
        defer { closedir(d) }
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if let n = Int32(name) { out.insert(n) }
        }
        return out
    }

    static func hostReadlink(_ path: String) -> String? {
        var buf = [CChar](repeating: 0, count: 4097)
        let n = Glibc.readlink(path, &buf, buf.count - 1)
        guard n >= 0 else { return nil }
        return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// How a path-based syscall treats its path argument `index`: whether it
/// is a path at all (symlink's target is only a string), whether a final
/// symlink is followed, and whether the call changes what the path names.
struct PathRule {
    var isPath = true
    var follow = true
    var modifying = false

    static func of(_ number: UInt64, argument index: Int, args: [UInt64]) -> PathRule {
        let nofollowFlag = { (i: Int) -> Bool in args[i] & 0x100 == 0 }   // AT_SYMLINK_NOFOLLOW
        switch number {
        case SYS.stat, SYS.statfs, SYS.access, SYS.faccessat, SYS.chdir:
            return PathRule()
        case SYS.lstat:
            return PathRule(follow: false)
        case SYS.newfstatat: return PathRule(follow: nofollowFlag(3))
        case SYS.statx: return PathRule(follow: nofollowFlag(2))
        case SYS.faccessat2: return PathRule(follow: nofollowFlag(3))
        case SYS.fchownat: return PathRule(follow: nofollowFlag(4), modifying: true)
        case SYS.utimensat: return PathRule(follow: nofollowFlag(3), modifying: true)
        case SYS.chmod, SYS.fchmodat, SYS.chown, SYS.truncate, SYS.utime, SYS.utimes, SYS.futimesat:
            return PathRule(modifying: true)
        case SYS.lchown, SYS.unlink, SYS.unlinkat, SYS.rmdir, SYS.mkdir, SYS.mkdirat,
             SYS.rename, SYS.renameat, SYS.renameat2, SYS.link:
            return PathRule(follow: false, modifying: true)
        case SYS.linkat:
            return PathRule(follow: index == 1 && args[4] & 0x400 != 0, modifying: true)   // AT_SYMLINK_FOLLOW
        case SYS.symlink, SYS.symlinkat:
            return index == 0 ? PathRule(isPath: false) : PathRule(follow: false, modifying: true)
        // The xattr calls: the path, then the attribute's name (no path).
        case SYS.getxattr, SYS.listxattr:
            return index == 0 ? PathRule() : PathRule(isPath: false)
        case SYS.lgetxattr, SYS.llistxattr:
            return index == 0 ? PathRule(follow: false) : PathRule(isPath: false)
        case SYS.setxattr, SYS.removexattr:
            return index == 0 ? PathRule(modifying: true) : PathRule(isPath: false)
        case SYS.lsetxattr, SYS.lremovexattr:
            return index == 0 ? PathRule(follow: false, modifying: true) : PathRule(isPath: false)
        case SYS.fgetxattr, SYS.fsetxattr, SYS.fremovexattr:
            return PathRule(isPath: false)
        default:
            // A path call not listed here: resolved as if followed, and
            // treated as a change (the safe side for /proc).
            return PathRule(modifying: true)
        }
    }
}
