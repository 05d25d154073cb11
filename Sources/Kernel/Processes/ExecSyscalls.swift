import Glibc
import KVMUser

/// execve: the process gets a new machine and a new program, loaded as
/// binfmt_elf (and binfmt_script for `#!`) would. The files come from the
/// host while recording and from the trace on replay (`HostWorld.loadFile`).
public enum ExecSyscalls {
    static func register(_ t: inout SyscallTable) {
        t.addOutcome(SYS.execve, .emulated) { c in
            try handingBackLentMemory(c) { try execve(c, dir: nil, path: 0, argv: 1, envp: 2, flags: 0) }
        }
        t.addOutcome(SYS.execveat, .emulated) { c in
            try handingBackLentMemory(c) { try execve(c, dir: try c.directory(0), path: 1, argv: 2, envp: 3, flags: c.int(4)) }
        }
    }

    /// An exec that ends a vfork child's loan of its parent's memory yields
    /// the vCPU: the parent runs on to its wait (or its own work) first.
    /// Otherwise the child's new program runs beside a runnable parent, and
    /// every slice of it (each syscall of ld.so's start) takes a preemption
    /// checkpoint of an address space that exec has just filled. Any order
    /// is Linux's (on another CPU the two run at once); replay follows the
    /// trace's order, whatever this policy chose.
    static func handingBackLentMemory(_ c: SyscallCall, _ exec: () throws -> Int64) throws -> SyscallOutcome {
        let lent = c.process.vforkParent != nil
        let result = try exec()
        return lent && result == 0 ? .yield : .result(result)
    }

    /// A NULL-terminated array of strings (argv, envp), as bytes: they
    /// need not be UTF-8.
    static func strings(_ c: SyscallCall, _ address: UInt64) throws(Errno) -> [[UInt8]] {
        guard address != 0 else { return [] }
        var out: [[UInt8]] = []
        var total = 0
        while true {
            let p: UInt64 = try c.readValue(address + UInt64(out.count) * 8)
            if p == 0 { return out }
            let bytes: [UInt8]
            do { bytes = try c.memory.readCString(p, limit: 131_072) } catch { throw .fault }
            total += bytes.count + 1
            guard out.count < 65536, total < 2 << 20 else { throw Errno(E2BIG) }
            out.append(bytes)
        }
    }

    static let AT_SYMLINK_NOFOLLOW: Int32 = 0x100, AT_EMPTY_PATH: Int32 = 0x1000

    /// Where the host finds the file an exec names (recording only): a
    /// relative path against `dir` or the working directory, the /proc
    /// links that name the guest's own program or descriptors as the guest
    /// means them (not detrec's), and `dir` itself for AT_EMPTY_PATH.
    static func hostLocation(_ path: String, relativeTo dir: OpenFile?, emptyPath: Bool,
                             process: Process) throws(Errno) -> (dirFD: Int, path: String) {
        if path.isEmpty && emptyPath {
            guard let fd = (dir?.hostFD ?? process.cwd.file.hostFD) else { throw .badf }
            return (-100, "/proc/self/fd/\(fd)")
        }
        return (Int(dir.map { $0.hostFD ?? -1 } ?? process.cwd.hostFD), path)
    }

    /// The process whose /proc exe link `path` names, read lexically (the
    /// same in record and replay): /proc/self/exe, /proc/<pid>/exe, and
    /// their task/<tid>/exe forms.
    static func exeLinkOwner(_ path: String, _ p: Process) -> Process? {
        var parts = path.split(separator: "/", omittingEmptySubsequences: true).filter { $0 != "." }.map(String.init)
        guard parts.count >= 3, parts[0] == "proc" else { return nil }
        let owner: Process?
        switch parts[1] {
        case "self", "thread-self": owner = p
        default: owner = Int32(parts[1]).flatMap { pid in p.family.processes.first { $0.pid == pid && $0.zombieStatus == nil } }
        }
        parts.removeFirst(2)
        if parts.count == 3, parts[0] == "task" { parts.removeFirst(2) }
        return parts == ["exe"] ? owner : nil
    }

    /// Reads a host file the guest names, with exec's checks (recording only).
    static func readHostFile(_ path: String, relativeTo dir: OpenFile?, flags: Int32 = 0,
                             process: Process, world: HostWorld) throws(Errno) -> FileContent {
        let noFollow = flags & AT_SYMLINK_NOFOLLOW != 0 ? O_NOFOLLOW : 0
        var hostPath: [UInt8], dirFD: Int
        if path.isEmpty && flags & AT_EMPTY_PATH != 0 {
            // fexecve: the descriptor itself.
            let (d, p) = try hostLocation(path, relativeTo: dir, emptyPath: true, process: process)
            (dirFD, hostPath) = (d, Array(p.utf8))
        } else if dir == nil, let owner = exeLinkOwner(path, process) {
            // The guest's program, not detrec.
            (dirFD, hostPath) = (-100, Array((owner.openedExecutable ?? owner.executablePath).utf8))
        } else {
            // The guest's /proc decides what /proc/self/fd/N are.
            var (target, name, hostDir) = GuestPath.hostArguments(Array(path.utf8), from: dir, process: process, follow: noFollow == 0)
            switch target {
            case .denied(let e): throw e
            case .proc(let location):
                guard location.rest.count == 2, location.rest[0] == "fd",
                      let file = process.family.processes.first(where: { $0.pid == location.pid })?.files[Int32(location.rest[1]) ?? -1],
                      let h = file.hostFD, file.procLocation == nil, !file.generated else { throw .acces }
                name = Array("/proc/self/fd/\(h)".utf8)
                hostDir = nil
            case .host, .hostProc:
                break
            }
            hostPath = name
            dirFD = hostDir.map { Int($0.hostFD ?? -1) } ?? Int(process.cwd.hostFD)
        }
        // MAY_EXEC on the way and on the file, with the thread's credentials
        // when they are not detrec's (a descriptor's /proc link is open already).
        let credentials = process.current.credentials
        if CredentialsOnHost.differs(credentials, realIDs: false), !hostPath.starts(with: Array("/proc/self/fd/".utf8)) {
            let r = try CredentialsOnHost.with(credentials, realIDs: false) { () throws(Errno) -> Int64 in
                (hostPath + [0]).withUnsafeBufferPointer {
                    hostSyscall(SYS.faccessat2, dirFD, Int(bitPattern: $0.baseAddress), Int(X_OK),
                                Int(AT_EACCESS | (noFollow != 0 ? AT_SYMLINK_NOFOLLOW : 0)))
                }
            }
            guard r == 0 else { throw Errno(Int32(-r)) }
        }
        let fd = Int32(truncatingIfNeeded: (hostPath + [0]).withUnsafeBufferPointer {
            hostSyscall(SYS.openat, dirFD, Int(bitPattern: $0.baseAddress), Int(O_RDONLY | O_CLOEXEC | noFollow))
        })
        guard fd >= 0 else { throw Errno(-fd) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw Errno(errno) }
        guard st.st_mode & S_IFMT == S_IFREG else { throw .acces }
        guard st.st_mode & 0o111 != 0 else { throw .acces }
        var content = try world.fileContent(of: fd)
        content.openedPath = GuestPath.hostReadlink("/proc/self/fd/\(fd)")
        return content
    }

    static func execve(_ c: SyscallCall, dir: OpenFile?, path: Int, argv argvArg: Int, envp envpArg: Int, flags: Int32) throws -> Int64 {
        guard flags & ~(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH) == 0 else { throw Errno.inval }
        let name = try c.path(path)
        var argv = try strings(c, c.arg(argvArg))
        let envp = try strings(c, c.arg(envpArg))
        let world = c.world
        let p = c.process
        // Where the host opened the last file loaded (recording only).
        var opened: String?
        func load(_ path: String, _ d: OpenFile?, flags: Int32 = 0) throws -> FileContent {
            try world.loadFile { () throws(Errno) -> FileContent in
                let content = try readHostFile(path, relativeTo: d, flags: flags, process: p, world: world)
                opened = content.openedPath
                return content
            }
        }
        // The name the new program gets (AT_EXECFN, a script's argument):
        // Linux's bprm->filename, "/dev/fd/N" for a descriptor.
        let fromDescriptor = name.isEmpty && flags & AT_EMPTY_PATH != 0
        var programPath = fromDescriptor ? "/dev/fd/\(c.int(0))" : name
        // What /proc/self/exe will name: the program's own path.
        var absolute: String
        if fromDescriptor {
            absolute = WorkingDirectory.resolve(dir?.path ?? ".", against: p.cwd.path)
        } else if dir == nil, let owner = exeLinkOwner(name, p) {
            absolute = owner.executablePath
        } else {
            absolute = WorkingDirectory.resolve(name, against: dir.map { $0.path.hasPrefix("/") ? $0.path : p.cwd.path + "/" + $0.path } ?? p.cwd.path)
        }
        var program = try load(name, dir, flags: flags)
        // binfmt_script: "#!interpreter [arg]" runs the interpreter on the script.
        var depth = 0
        while let (interp, arg) = scriptInterpreter(program.bytes) {
            depth += 1
            guard depth <= 4 else { throw Errno(ELOOP) }
            guard !interp.isEmpty else { throw Errno(ENOEXEC) }
            argv = [Array(interp.utf8)] + (arg.map { [Array($0.utf8)] } ?? []) + [Array(programPath.utf8)] + argv.dropFirst()
            programPath = interp
            absolute = WorkingDirectory.resolve(interp, against: p.cwd.path)
            program = try load(interp, nil)
        }
        let programOpened = opened
        let image: ELFImage
        do { image = try ELFImage.parse(program.bytes, sha256: program.sha256) } catch { throw Errno(ENOEXEC) }
        var interpreter: (path: String, bytes: [UInt8])?
        var interpreterSHA = ""
        if let interp = image.interpreter {
            let content = try load(interp, nil)
            interpreter = (interp, content.bytes)
            interpreterSHA = content.sha256
        }
        let random = try world.randomBytes(16)
        let openedExecutable = try world.executablePath { programOpened }
        // The point of no return: the old image goes.
        let machine = try MachinePool.take(device: p.machine.device, cpuid: p.machine.cpuid)
        for t in p.threads { p.mm.leave(t) }
        SharedMemory.push(p.mm)
        p.mm = MemoryContext(machine: machine, space: AddressSpace(mmapBase: Process.mmapBase), loaded: nil)
        // A vfork parent had lent this memory: it runs on from here.
        p.releaseVforkParent()
        // unshare_files: a table shared by CLONE_FILES is copied first.
        p.fileTable = SharedFileTable(p.files)
        for (fd, entry) in p.files.entries where entry.closeOnExec {
            if let f = p.files.remove(fd) { RecordLockSyscalls.closed(p, f) }
        }
        // flush_signal_handlers: handled signals go back to the default,
        // ignored ones stay ignored; flags, masks and restorers are cleared.
        for (signal, action) in p.signals.actions {
            if SignalAction(action).handler == SignalAction.SIG_IGN {
                p.signals.actions[signal] = Bytes.u64(SignalAction.SIG_IGN) + [UInt8](repeating: 0, count: 24)
            } else {
                p.signals.actions[signal] = nil
            }
        }
        p.signals.altStack = SignalState().altStack
        // POSIX timers do not survive exec (interval timers do).
        p.posixTimers = []
        p.hasExeced = true
        p.executablePath = absolute
        p.openedExecutable = openedExecutable
        // Signals pending for the thread that execs stay pending for it;
        // the process's other threads are gone.
        let pending = p.current.pending
        let seccomp = p.current.seccomp, trace = p.current.trace, memoryPolicy = p.current.memoryPolicy
        p.control.executed()
        // Set-id bits and file capabilities are not honoured (as under no_new_privs).
        let before = p.current.credentials
        let credentials = before.afterExec()
        // begin_new_exec: ids that differ, or credentials exec changed, leave it as fs.suid_dumpable says.
        if credentials.euid != credentials.uid || credentials.egid != credentials.gid || credentials.fsuid != before.fsuid
            || credentials.fsgid != before.fsgid || credentials.permitted & ~before.permitted != 0 {
            p.control.dumpable = p.control.suidDumpable
        }
        let info = StartupInfo(argvBytes: argv, envpBytes: envp, execPath: programPath, exePath: absolute, atRandom: random,
                               uid: credentials.uid, euid: credentials.euid, gid: credentials.gid, egid: credentials.egid,
                               pid: p.pid, credentials: credentials)
        let mask = p.signals.mask
        let leaf1 = machine.cpuid.leaves.first { $0.function == 1 && $0.index == 0 }
        let family = p.family
        do {
            try ProgramLoader.start(program.bytes, interpreter: interpreter, info: info, process: p, hwcap: UInt64(leaf1?.edx ?? 0),
                                    programSHA: program.sha256, interpreterSHA: interpreterSHA)
        } catch {
            throw RunStopped("execve of \(programPath) failed after the old image was gone: \(error)")
        }
        p.family = family
        p.signals.mask = mask
        p.current.signalMask = mask
        p.current.pending = pending
        p.current.seccomp = seccomp
        p.current.memoryPolicy = memoryPolicy
        p.current.trace = trace
        return 0
    }

    /// The interpreter (and its one optional argument) of a `#!` script, as
    /// binfmt_script reads the first line; nil for anything else.
    public static func scriptInterpreter(_ bytes: [UInt8]) -> (String, String?)? {
        guard bytes.starts(with: [0x23, 0x21]) else { return nil }
        let line = String(decoding: bytes.dropFirst(2).prefix { $0 != 0x0a }.prefix(255), as: UTF8.self)
        let blank: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\r" }
        let trimmed = String(line.drop(while: blank).reversed().drop(while: blank).reversed())
        guard let end = trimmed.firstIndex(where: blank) else { return (trimmed, nil) }
        let arg = String(trimmed[end...].drop(while: blank))
        return (String(trimmed[..<end]), arg.isEmpty ? nil : arg)
    }
}
