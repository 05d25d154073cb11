import Glibc
import KVMUser

/// The guest's /proc/<pid> directories (and /proc/self, /proc/thread-self,
/// task/<tid>): every file describes the guest, never detrec. While
/// recording a file is generated from the emulated state when opened (as a
/// memfd, so read, lseek, fstat and mmap work unchanged); replay gets what
/// the guest read from the trace, like any other file. `mem` reads and
/// writes guest memory through `GuestMemory` (`ProcMemory`), the same in
/// both. `GuestPath` decides which paths lead here.
///
/// Guest pids: the first process has detrec's own pid (the recorder's, read
/// from the trace on replay); every later process and thread gets the next
/// number of a counter (`ProcessFamily.allocateID`). So /proc/<detrec's pid>
/// is the first guest process's directory, and detrec's other thread ids,
/// when not handed out to the guest, name nothing.
public enum ProcFS {
    /// A node under a guest pid directory: `rest` below /proc/<pid>, or
    /// below /proc/<pid>/task/<tid> when `tid` is set. `selfLink` marks the
    /// /proc/self or /proc/thread-self link itself (lstat, readlink).
    public struct Location: Equatable, Sendable {
        public var pid: Int32
        public var tid: Int32?
        public var rest: [String]
        public var selfLink: String?

        public init(pid: Int32, tid: Int32?, rest: [String], selfLink: String? = nil) {
            self.pid = pid; self.tid = tid; self.rest = rest; self.selfLink = selfLink
        }

        /// The path the guest would see for it (/proc/<pid>/...).
        public var path: String {
            if selfLink != nil { return "/proc/self" }
            return "/proc/\(pid)" + (tid.map { "/task/\($0)" } ?? "") + rest.map { "/" + $0 }.joined()
        }
    }

    public enum Kind: Equatable {
        case directory, file, link, memory
    }

    /// Files that describe the mount and cgroup namespaces, which the guest
    /// shares with detrec: copied from detrec's own.
    static let sharedFiles: Set<String> = ["cgroup", "mountinfo", "mounts", "mountstats", "loginuid", "sessionid",
                                           "oom_score_adj", "oom_score", "uid_map", "gid_map", "setgroups"]
    static let generatedFiles: Set<String> = ["stat", "status", "statm", "comm", "cmdline", "environ", "maps",
                                              "smaps", "auxv", "limits"]
    static let linkNames: Set<String> = ["exe", "cwd", "root"]

    /// A /proc path as spelled (gdb's file requests during replay, which
    /// name the guest's own files plainly): /proc/self or /proc/<pid>,
    /// without symlinks or `..` resolved.
    public static func plainLocation(_ path: String, process: Process) -> Location? {
        var parts = path.split(separator: "/").map(String.init)
        guard parts.count >= 2, parts[0] == "proc" else { return nil }
        let pid = parts[1] == "self" ? process.pid : Int32(parts[1]) ?? -1
        guard process.family.processes.contains(where: { $0.pid == pid }) else { return nil }
        parts.removeFirst(2)
        return Location(pid: pid, tid: nil, rest: parts)
    }

    /// The process (and thread) a location names, if it still lives.
    static func owner(_ l: Location, in family: ProcessFamily) -> (Process, GuestThread?)? {
        guard let p = family.processes.first(where: { $0.pid == l.pid && $0.zombieStatus == nil }) else { return nil }
        guard let tid = l.tid else { return (p, nil) }
        guard let t = p.threads.first(where: { $0.tid == tid || ($0.tid == 0 && tid == p.pid) }) else { return nil }
        return (p, t)
    }

    /// The id a location's thread goes by (its process's pid for the
    /// main thread before it has its own, or for no thread at all).
    static func taskID(_ p: Process, _ thread: GuestThread?) -> Int32 {
        thread.map { $0.tid == 0 ? p.pid : $0.tid } ?? p.pid
    }

    /// What the node is, nil when it does not exist.
    public static func kind(_ l: Location, family: ProcessFamily) -> Kind? {
        if l.selfLink != nil { return .link }
        guard let (p, _) = owner(l, in: family) else { return nil }
        let r = l.rest
        switch r.count {
        case 0: return .directory
        case 1:
            if r[0] == "mem" { return .memory }
            if generatedFiles.contains(r[0]) || sharedFiles.contains(r[0]) { return .file }
            if linkNames.contains(r[0]) { return .link }
            if r[0] == "fd" || r[0] == "fdinfo" || r[0] == "net" || (r[0] == "task" && l.tid == nil) { return .directory }
            return nil
        default:
            if r.count == 2, r[0] == "fd" || r[0] == "fdinfo", let n = Int32(r[1]), String(n) == r[1],
               p.files[n] != nil {
                return r[0] == "fd" ? .link : .file
            }
            if r[0] == "net" {
                var st = Glibc.stat()
                guard lstat("/proc/self/" + r.joined(separator: "/"), &st) == 0 else { return nil }
                return st.st_mode & S_IFMT == S_IFDIR ? .directory : .file
            }
            return nil
        }
    }

    /// One step of `GuestPath`'s walk inside a guest pid directory: the
    /// last component of `l.rest` was just appended.
    enum Step {
        case node
        case missing(Errno)
        case jump(String)
        case enter(pid: Int32, tid: Int32)
    }

    static func step(_ l: Location, process: Process, follow: Bool, last: Bool) -> Step {
        let family = process.family!
        guard let (p, _) = owner(l, in: family) else { return .missing(.noent) }
        let r = l.rest
        if l.tid == nil, r.count == 2, r[0] == "task", let tid = Int32(r[1]), String(tid) == r[1] {
            let known = p.threads.contains { $0.tid == tid || ($0.tid == 0 && tid == p.pid) }
            return known ? .enter(pid: p.pid, tid: tid) : .missing(.noent)
        }
        guard let kind = kind(l, family: family) else { return .missing(.noent) }
        switch kind {
        case .directory:
            return .node
        case .file, .memory:
            return last ? .node : .missing(.notdir)
        case .link:
            guard follow else { return .node }
            if r.count == 2 {   // fd/N: the open file itself when last (Linux's magic link)
                if last { return .node }
                guard let file = p.files[Int32(r[1]) ?? -1] else { return .missing(.noent) }
                guard let dir = GuestPath.directoryPath(file) else { return .missing(.notdir) }
                return .jump(dir)
            }
            guard let target = link(l, family: family), target.hasPrefix("/") else { return .missing(.noent) }
            return .jump(target)
        }
    }

    /// Where a link points, for the guest (readlink).
    public static func link(_ l: Location, family: ProcessFamily) -> String? {
        if let s = l.selfLink { return s }
        guard let (p, _) = owner(l, in: family) else { return nil }
        switch l.rest {
        case ["exe"]:
            if let opened = p.openedExecutable { return opened }
            let exe = p.executablePath
            return exe.hasPrefix("/") ? exe : GuestPath.currentDirectory(p) + "/" + exe
        case ["cwd"]: return GuestPath.currentDirectory(p)
        case ["root"]: return "/"
        default:
            guard l.rest.count == 2, l.rest[0] == "fd", let file = p.files[Int32(l.rest[1]) ?? -1] else { return nil }
            if let location = file.procLocation { return location.path }
            if file.generated || file.pidfd != nil { return file.path }
            if let fd = file.hostFD, let target = GuestPath.hostReadlink("/proc/self/fd/\(fd)") { return target }
            return file.path
        }
    }

    /// A host path with the node's metadata (for stat and access): the
    /// same node of detrec's own directory, or the guest's open file for
    /// fd/N. Only metadata calls use it; nothing is opened through it.
    static func hostEquivalent(_ l: Location, family: ProcessFamily) -> String? {
        if let s = l.selfLink { return s.contains("task") ? "/proc/thread-self" : "/proc/self" }
        guard let (p, _) = owner(l, in: family) else { return nil }
        var base = "/proc/\(getpid())" + (l.tid != nil ? "/task/\(getpid())" : "")
        if l.rest.count == 2, l.rest[0] == "fd" || l.rest[0] == "fdinfo" {
            guard let file = p.files[Int32(l.rest[1]) ?? -1], let fd = file.hostFD else { return nil }
            return base + "/\(l.rest[0])/\(fd)"
        }
        if l.rest.first == "task", l.rest.count >= 2 {
            base += "/task/\(getpid())"
            return base + l.rest.dropFirst(2).map { "/" + $0 }.joined()
        }
        return base + l.rest.map { "/" + $0 }.joined()
    }

    /// The entries of a directory node, with their d_type (DT_DIR 4, DT_REG 8, DT_LNK 10).
    public static func listing(_ l: Location, family: ProcessFamily) -> [(String, UInt8)]? {
        guard let (p, _) = owner(l, in: family) else { return nil }
        switch l.rest {
        case []:
            var names = generatedFiles.union(sharedFiles).union(["mem"]).map { ($0, UInt8(8)) }
            names += linkNames.map { ($0, UInt8(10)) }
            names += ["fd", "fdinfo", "net"].map { ($0, UInt8(4)) }
            if l.tid == nil { names.append(("task", 4)) }
            return names.sorted { $0.0 < $1.0 }
        case ["fd"], ["fdinfo"]:
            let type: UInt8 = l.rest == ["fd"] ? 10 : 8
            return p.files.entries.keys.sorted().map { (String($0), type) }
        case ["task"]:
            return p.threads.map { (String($0.tid == 0 ? p.pid : $0.tid), UInt8(4)) }
        default:
            guard l.rest.first == "net", let d = opendir("/proc/self/" + l.rest.joined(separator: "/")) else { return nil }
            defer { closedir(d) }
            var out: [(String, UInt8)] = []
            while let e = readdir(d) {
                let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                if name != "." && name != ".." { out.append((name, e.pointee.d_type)) }
            }
            return out
        }
    }

    /// The listing of a procfs root (`fd` open on it, recording only): the
    /// host's entries but its pid directories, and the recording's pids
    /// instead, as a pid namespace holding just the recording shows them.
    /// ps, pgrep, pkill and lsof walk it to find processes; the guest's
    /// pid directories are detrec's own (`Location`). Nil: not a procfs root.
    static func rootListing(_ fd: Int32, family: ProcessFamily) -> [(String, UInt8)]? {
        // struct statfs (120 bytes) starts with f_type.
        var fs = [UInt64](repeating: 0, count: 15), st = Glibc.stat()
        let r = fs.withUnsafeMutableBytes { hostSyscall(SYS.fstatfs, Int(fd), Int(bitPattern: $0.baseAddress)) }
        guard r == 0, fs[0] == 0x9fa0, fstat(fd, &st) == 0, st.st_ino == 1 else { return nil }   // PROC_SUPER_MAGIC, PROC_ROOT_INO
        let copy = Glibc.openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard copy >= 0, let d = fdopendir(copy) else { return nil }
        defer { closedir(d) }
        var out: [(String, UInt8)] = []
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name == "." || name == ".." || name.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }) { continue }
            out.append((name, e.pointee.d_type))
        }
        // Linux lists the non-pid entries first, then the pids in order (proc_pid_readdir).
        let pids = Set(family.processes.filter { $0.zombieStatus == nil }.map(\.pid)).sorted()
        return out + pids.map { (String($0), UInt8(4)) }
    }

    /// The contents of a file node for the guest (recording only: some
    /// come from the host).
    public static func contents(_ l: Location, family: ProcessFamily) -> [UInt8]? {
        guard let (p, thread) = owner(l, in: family) else { return nil }
        let tid = taskID(p, thread)
        switch l.rest {
        case ["maps"]: return Array(maps(p).utf8)
        case ["smaps"]: return Array(smaps(p).utf8)
        case ["auxv"]: return p.auxv
        case ["cmdline"]: return p.argv.flatMap { $0 + [0] }
        case ["environ"]: return p.envp.flatMap { $0 + [0] }
        case ["status"]: return Array(status(p, tid: tid).utf8)
        case ["stat"]: return Array(stat(p, tid: tid, thread: thread).utf8)
        case ["statm"]: return Array(statm(p).utf8)
        case ["comm"]: return p.threadName(tid) + [10]
        case ["limits"]: return Array(limits(p).utf8)
        default:
            if l.rest.count == 2, l.rest[0] == "fdinfo", let file = p.files[Int32(l.rest[1]) ?? -1] {
                return Array(fdinfo(file, closeOnExec: p.files.closeOnExec(Int32(l.rest[1]) ?? -1)).utf8)
            }
            if l.rest.count == 1, sharedFiles.contains(l.rest[0]) || l.rest.first == "net" {
                return hostFile("/proc/self/" + l.rest[0])
            }
            if l.rest.first == "net" { return hostFile("/proc/self/" + l.rest.joined(separator: "/")) }
            return nil
        }
    }

    static func hostFile(_ path: String) -> [UInt8]? {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        // /proc files have no size: read until the end.
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while out.count < maxTransfer {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            out += chunk[0..<n]
        }
        return out
    }

    static func hex(_ v: UInt64, width: Int) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: max(0, width - s.count)) + s
    }

    static func mapLine(_ m: Mapping) -> String {
        let p = m.protection
        var line = "\(hex(m.start, width: 8))-\(hex(m.end, width: 8)) "
        line += (p.contains(.read) ? "r" : "-") + (p.contains(.write) ? "w" : "-") + (p.contains(.execute) ? "x" : "-")
        line += m.shared ? "s" : "p"
        line += " \(hex(m.fileOffset, width: 8)) 00:00 0"
        if !m.name.isEmpty {
            line += String(repeating: " ", count: max(1, 73 - line.count)) + m.name
        }
        return line + "\n"
    }

    /// As Linux's show_map_vma prints it; the name column starts at 74.
    /// detrec's system pages are not the guest's and are not listed.
    public static func maps(_ process: Process) -> String {
        process.space.mappings.map(mapLine).joined()
    }

    static func smaps(_ process: Process) -> String {
        var out = ""
        for m in process.space.mappings {
            let kb = (m.end - m.start) / 1024
            out += mapLine(m)
            for field in ["Size", "KernelPageSize", "MMUPageSize", "Rss", "Pss", "Pss_Dirty", "Shared_Clean",
                          "Shared_Dirty", "Private_Clean", "Private_Dirty", "Referenced", "Anonymous", "KSM",
                          "LazyFree", "AnonHugePages", "ShmemPmdMapped", "FilePmdMapped", "Shared_Hugetlb",
                          "Private_Hugetlb", "Swap", "SwapPss", "Locked"] {
                let value: UInt64 = switch field {
                case "Size": kb
                case "KernelPageSize", "MMUPageSize": 4
                default: 0
                }
                let label = field + ":"
                let number = String(value)
                out += label + String(repeating: " ", count: max(1, 16 + 8 - label.count - number.count)) + number + " kB\n"
            }
            out += "THPeligible:    0\n"
            var flags = ""
            if m.protection.contains(.read) { flags += "rd " }
            if m.protection.contains(.write) { flags += "wr " }
            if m.protection.contains(.execute) { flags += "ex " }
            flags += "mr mw me "
            if m.shared { flags += "sh " }
            // The vma flags madvise, mlock and mmap set, in show_smap_vma_flags' order.
            for (option, mnemonic) in [(MappingOptions.growsDown, "gd"), (.locked, "lo"), (.dontFork, "dc"),
                                       (.lockOnFault, "lf"), (.noReserve, "nr"), (.wipeOnFork, "wf"), (.dontDump, "dd")]
            where m.options.contains(option) { flags += mnemonic + " " }
            out += "VmFlags: " + flags + "\n"
        }
        return out
    }

    static func limits(_ process: Process) -> String {
        let rows: [(String, Int32, String)] = [
            ("Max cpu time", 0, "seconds"), ("Max file size", 1, "bytes"), ("Max data size", 2, "bytes"),
            ("Max stack size", 3, "bytes"), ("Max core file size", 4, "bytes"), ("Max resident set", 5, "bytes"),
            ("Max processes", 6, "processes"), ("Max open files", 7, "files"), ("Max locked memory", 8, "bytes"),
            ("Max address space", 9, "bytes"), ("Max file locks", 10, "locks"), ("Max pending signals", 11, "signals"),
            ("Max msgqueue size", 12, "bytes"), ("Max nice priority", 13, ""), ("Max realtime priority", 14, ""),
            ("Max realtime timeout", 15, "us"),
        ]
        func pad(_ s: String, _ n: Int) -> String { s + String(repeating: " ", count: max(1, n - s.count)) }
        var out = pad("Limit", 26) + pad("Soft Limit", 21) + pad("Hard Limit", 21) + pad("Units", 10) + "\n"
        for (name, resource, unit) in rows {
            var (soft, hard) = limit(process, resource)
            if resource == 7 { soft = UInt64(process.files.limit) }
            let show = { (v: UInt64) in v == UInt64.max ? "unlimited" : String(v) }
            out += pad(name, 26) + pad(show(soft), 21) + pad(show(hard), 21) + pad(unit, 10) + "\n"
        }
        return out
    }

    static func fdinfo(_ file: OpenFile, closeOnExec: Bool) -> String {
        var pos: Int64 = 0, flags: Int32 = O_RDONLY
        if let fd = file.hostFD {
            pos = max(0, Int64(lseek(fd, 0, SEEK_CUR)))
            flags = fcntl(fd, F_GETFL) & ~O_CLOEXEC
        }
        if let m = file.procMemory { pos = Int64(bitPattern: m.offset) }
        if closeOnExec { flags |= O_CLOEXEC }
        var info = "pos:\t\(pos)\nflags:\t0\(String(flags, radix: 8))\nmnt_id:\t0\nino:\t0\n"
        if let named = file.pidfd {
            // pidfd_show_fdinfo: -1 once the process is reaped.
            let pid = named.live == nil ? -1 : named.pid
            info += "Pid:\t\(pid)\nNSpid:\t\(pid)\n"
        }
        return info
    }

    /// A host memfd holding `bytes`, positioned at 0 (recording only).
    /// A host memfd holding `bytes`, positioned at 0, open for `access`
    /// (O_RDONLY, O_WRONLY or O_RDWR, as the guest asked: writes only
    /// change this copy). Recording only.
    static func memfd(_ bytes: [UInt8], access: Int32) -> Int32? {
        guard let fd = memfd(bytes) else { return nil }
        guard access != O_RDWR else { return fd }
        defer { close(fd) }
        let reopened = Glibc.open("/proc/self/fd/\(fd)", access | O_CLOEXEC)
        return reopened >= 0 ? reopened : nil
    }

    static func memfd(_ bytes: [UInt8]) -> Int32? {
        let fd = Int32(truncatingIfNeeded: Array("detrec-proc".utf8CString).withUnsafeBufferPointer {
            hostSyscall(SYS.memfd_create, Int(bitPattern: $0.baseAddress), 1)   // MFD_CLOEXEC
        })
        guard fd >= 0 else { return nil }
        var done = 0
        while done < bytes.count {
            let n = bytes[done...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n <= 0 { close(fd); return nil }
            done += n
        }
        lseek(fd, 0, SEEK_SET)
        return fd
    }

    /// A host descriptor for an emulated directory: O_PATH on /proc, which
    /// fstat describes as a directory and which cannot be read or written.
    /// Paths relative to it never reach the host: `GuestPath` resolves them.
    static let O_PATH: Int32 = 0o10000000

    /// The host's open flags follow the guest's O_PATH, so that the calls
    /// that look at them (F_GETFL, pidfd_send_signal's EBADF for O_PATH)
    /// answer as for a descriptor of the guest's own /proc. Reading it
    /// is emulated either way (its listing), and a read is EISDIR.
    static func directoryHandle(path: Bool = true) -> Int32? {
        let fd = Glibc.open("/proc", (path ? O_PATH : O_RDONLY) | O_DIRECTORY | O_CLOEXEC)
        return fd >= 0 ? fd : nil
    }
}

extension ProcFS {
    /// What opening a node of the guest's /proc gives (recording only).
    struct Opened {
        var hostFD: Int32
        var listing: [(String, UInt8)]?
        var location: Location?
        var memory: ProcMemory?
        var generated = false
        /// For fd/N: the reopened file's path.
        var path: String?
    }

    static func open(_ l: Location, flags: Int32, family: ProcessFamily) throws(Errno) -> Opened {
        guard let kind = kind(l, family: family), let (p, _) = owner(l, in: family) ?? family.root.map({ ($0, nil) }) else {
            throw .noent
        }
        let access = flags & O_ACCMODE
        let wantsDirectory = flags & O_DIRECTORY != 0
        switch kind {
        case .directory:
            guard access == O_RDONLY, flags & O_CREAT == 0 else { throw Errno(EISDIR) }
            guard let fd = directoryHandle(path: flags & O_PATH != 0) else { throw .nomem }
            return Opened(hostFD: fd, listing: listing(l, family: family) ?? [], location: l)

        case .file:
            guard !wantsDirectory else { throw .notdir }
            guard let bytes = contents(l, family: family) else { throw .noent }
            guard let fd = memfd(bytes, access: access) else { throw .nomem }
            // A comm file keeps its node: writes to it rename a thread (`ProcCommFile`).
            return Opened(hostFD: fd, location: l.rest == ["comm"] ? l : nil, generated: true)
        case .memory:
            guard !wantsDirectory else { throw .notdir }
            guard let fd = memfd([]) else { throw .nomem }
            return Opened(hostFD: fd, memory: ProcMemory(process: p), generated: true)
        case .link:
            // Only fd/N, followed, gets here as a link to open (the others
            // were followed by the walk): Linux reopens the open file itself.
            guard l.selfLink == nil, l.rest.count == 2, l.rest[0] == "fd",
                  let file = p.files[Int32(l.rest[1]) ?? -1] else { throw Errno(ELOOP) }
            if let m = file.procMemory, let owner = m.process {
                guard let fd = memfd([]) else { throw .nomem }
                return Opened(hostFD: fd, memory: ProcMemory(process: owner), generated: true, path: file.path)
            }
            if let location = file.procLocation {
                return try open(location, flags: flags, family: family)
            }
            guard let h = file.hostFD else { throw .noent }
            let fd = Glibc.open("/proc/self/fd/\(h)", (flags & ~O_CREAT) | O_CLOEXEC)
            guard fd >= 0 else { throw Errno(errno) }
            return Opened(hostFD: fd, generated: file.generated, path: file.path)
        }
    }

    /// `open`, for the guest that gets descriptor `fd`: a listing of its
    /// own fd directory shows that descriptor too, as Linux's does.
    static func open(_ l: Location, flags: Int32, family: ProcessFamily, caller: Process, fd: Int32) throws(Errno) -> Opened {
        var made = try open(l, flags: flags, family: family)
        if l.pid == caller.pid, l.rest == ["fd"] || l.rest == ["fdinfo"], var listing = made.listing {
            listing.append((String(fd), l.rest == ["fd"] ? 10 : 8))
            made.listing = listing.sorted { (Int($0.0) ?? 0) < (Int($1.0) ?? 0) }
        }
        return made
    }
}
