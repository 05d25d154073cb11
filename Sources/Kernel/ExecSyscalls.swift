import Glibc
import KVMUser

/// execve: the process gets a new machine and a new program, loaded as
/// binfmt_elf (and binfmt_script for `#!`) would. The files come from the
/// host while recording and from the trace on replay (`HostWorld.loadFile`).
public enum ExecSyscalls {
    static func register(_ t: inout SyscallTable) {
        t.add(SYS.execve) { c in try execve(c, dir: nil, path: 0, argv: 1, envp: 2, flags: 0) }
        t.add(SYS.execveat) { c in try execve(c, dir: try c.directory(0), path: 1, argv: 2, envp: 3, flags: c.int(4)) }
    }

    /// A NULL-terminated array of strings (argv, envp).
    static func strings(_ c: SyscallCall, _ address: UInt64) throws(Errno) -> [String] {
        guard address != 0 else { return [] }
        var out: [String] = []
        var total = 0
        while true {
            let p: UInt64 = try c.readValue(address + UInt64(out.count) * 8)
            if p == 0 { return out }
            let bytes: [UInt8]
            do { bytes = try c.memory.readCString(p, limit: 131_072) } catch { throw .fault }
            total += bytes.count + 1
            guard out.count < 65536, total < 2 << 20 else { throw Errno(E2BIG) }
            out.append(String(decoding: bytes, as: UTF8.self))
        }
    }

    /// Reads a host file the guest names, with exec's checks (recording only).
    static func readHostFile(_ path: String, relativeTo dir: OpenFile?) throws(Errno) -> FileContent {
        let dirFD = dir.map { Int($0.hostFD ?? -1) } ?? -100
        let fd = Int32(truncatingIfNeeded: Array(path.utf8CString).withUnsafeBufferPointer {
            hostSyscall(SYS.openat, dirFD, Int(bitPattern: $0.baseAddress), Int(O_RDONLY | O_CLOEXEC))
        })
        guard fd >= 0 else { throw Errno(-fd) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw Errno(errno) }
        guard st.st_mode & S_IFMT == S_IFREG else { throw .acces }
        guard st.st_mode & 0o111 != 0 else { throw .acces }
        return FileContent(sha256: "", bytes: try HostFile.readAll(fd))
    }

    static func execve(_ c: SyscallCall, dir: OpenFile?, path: Int, argv argvArg: Int, envp envpArg: Int, flags: Int32) throws -> Int64 {
        let name = try c.path(path)
        var argv = try strings(c, c.arg(argvArg))
        let envp = try strings(c, c.arg(envpArg))
        let world = c.world
        func load(_ p: String, _ d: OpenFile?) throws -> FileContent {
            try world.loadFile { () throws(Errno) -> FileContent in try readHostFile(p, relativeTo: d) }
        }
        var programPath = name
        var program = try load(name, dir)
        // binfmt_script: "#!interpreter [arg]" runs the interpreter on the script.
        var depth = 0
        while let (interp, arg) = scriptInterpreter(program.bytes) {
            depth += 1
            guard depth <= 4 else { throw Errno(ELOOP) }
            guard !interp.isEmpty else { throw Errno(ENOEXEC) }
            argv = [interp] + (arg.map { [$0] } ?? []) + [programPath] + argv.dropFirst()
            programPath = interp
            program = try load(interp, nil)
        }
        let image: ELFImage
        do { image = try ELFImage(program.bytes) } catch { throw Errno(ENOEXEC) }
        var interpreter: (path: String, bytes: [UInt8])?
        if let interp = image.interpreter {
            interpreter = (interp, try load(interp, nil).bytes)
        }
        let random = try world.randomBytes(16)
        let p = c.process
        // The point of no return: the old image goes.
        let machine = try UserMachine(device: p.machine.device, cpuid: p.machine.cpuid)
        p.machine = machine
        p.space = AddressSpace(mmapBase: Process.mmapBase)
        for (fd, entry) in p.files.entries where entry.closeOnExec { p.files.remove(fd) }
        for (signal, action) in p.signals.actions where SignalAction(action).handler > SignalAction.SIG_IGN {
            p.signals.actions[signal] = nil
        }
        p.signals.altStack = SignalState().altStack
        p.futexOrder = []
        let absolute = programPath.hasPrefix("/") ? programPath : currentDirectory(c) + "/" + programPath
        p.executablePath = absolute
        p.control.executed()
        let info = StartupInfo(argv: argv, envp: envp, execPath: programPath, exePath: absolute, atRandom: random,
                               uid: p.credentials[0], euid: p.credentials[1], gid: p.credentials[2], egid: p.credentials[3],
                               pid: p.pid)
        let mask = p.signals.mask
        let leaf1 = machine.cpuid.leaves.first { $0.function == 1 && $0.index == 0 }
        let family = p.family
        do {
            try ProgramLoader.start(program.bytes, interpreter: interpreter, info: info, process: p, hwcap: UInt64(leaf1?.edx ?? 0))
        } catch {
            throw RunStopped("execve of \(programPath) failed after the old image was gone: \(error)")
        }
        p.family = family
        p.signals.mask = mask
        p.current.signalMask = mask
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

    /// The guest's working directory as the recording saw it (only for naming
    /// the program; relative exec paths are resolved by the host).
    static func currentDirectory(_ c: SyscallCall) -> String {
        var buf = [CChar](repeating: 0, count: 4096)
        return getcwd(&buf, buf.count) != nil ? String(cString: buf) : ""
    }
}
