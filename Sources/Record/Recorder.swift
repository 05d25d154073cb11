import Glibc
import Kernel
import KVMUser
import Trace

/// `detrec record`: runs a program on the vCPU and writes its trace.
public struct Recorder {
    public struct Options {
        public var program: String
        public var arguments: [String]
        public var traceDirectory: String
        public var strict = false
        /// Randomized scheduling from this seed (`--chaos`).
        public var chaosSeed: UInt64?
        /// The CPU the program sees (`--cpu`); nil: the portable default.
        public var cpuModel: CPUModel?
        public var detrecVersion: String
        /// The program and its arguments as bytes, as detrec's own execve
        /// got them (`program`/`arguments` are their UTF-8 repairs); nil:
        /// those strings' bytes.
        public var commandBytes: [[UInt8]]?

        public init(program: String, arguments: [String], traceDirectory: String, detrecVersion: String) {
            self.program = program
            self.arguments = arguments
            self.traceDirectory = traceDirectory
            self.detrecVersion = detrecVersion
        }
    }

    public struct Outcome {
        public var termination: Termination
        public var traceDirectory: String
        public var traceBytes: UInt64
        public var events: Int
    }

    public init() {}

    public func record(_ options: Options) throws -> Outcome {
        let stdio = Launch.inheritedDescriptors()
        var execfn = try Recorder.resolve(options.program)
        var argv = options.commandBytes ?? ([options.program] + options.arguments).map { Array($0.utf8) }
        var executable = try Recorder.readFile(execfn)
        // A #! script runs its interpreter, as execve would.
        var depth = 0
        while let (interp, arg) = ExecSyscalls.scriptInterpreter(executable), depth < 4 {
            depth += 1
            argv = [Array(interp.utf8)] + (arg.map { [Array($0.utf8)] } ?? []) + [Array(execfn.utf8)] + argv.dropFirst()
            execfn = interp
            executable = try Recorder.readFile(interp)
        }
        // What execve says of it (ENOEXEC), as a shell reports it (126).
        let image: ELFImage
        do { image = try ELFImage(executable) } catch {
            throw RunStopped("\(execfn): cannot execute: \(error) (execve: exec format error)", status: 126)
        }
        let path = Recorder.realPath(execfn)
        // A dynamic program's interpreter is stored too: replay must not
        // depend on the host's ld.so.
        var interpreter: (path: String, bytes: [UInt8])?
        if let interp = image.interpreter {
            interpreter = (interp, try Recorder.readFile(interp))
        }
        let device = try KVMDevice()
        let model = try options.cpuModel ?? CPUModel.portable(device: device)
        let cpuid = try CPUIDTable.forRecording(device: device, model: model)
        let machine = try UserMachine(device: device, cpuid: cpuid)
        let inherited = Launch.inheritedSignals()
        let inheritedState = InheritedState.ofThisProcess()
        let envp = Recorder.environment()
        var header = TraceHeader(
            detrecVersion: options.detrecVersion,
            argv: [],
            envp: [],
            cwd: Recorder.currentDirectory(),
            executable: StoredFile(path: path, sha256: SHA256.hex(executable), size: UInt64(executable.count)),
            cpuid: cpuid.leaves.map { CPUIDEntry(function: $0.function, index: $0.index, flags: $0.flags,
                                                 eax: $0.eax, ebx: $0.ebx, ecx: $0.ecx, edx: $0.edx) },
            xcr0: cpuid.xcr0,
            host: machine.capabilities.summary,
            recordedAt: TraceHeader.currentTimestamp(),
            extra: [
                "execfn": execfn,
                "cpuModel": model.rawValue,
                "chaosSeed": options.chaosSeed.map { String($0) } ?? "",
                "interpreter": interpreter?.path ?? "",
                "interpreterSHA256": interpreter.map { SHA256.hex($0.bytes) } ?? "",
                "sigmask": String(inherited.mask), "sigignored": String(inherited.ignored),
                "stdio": stdio.map(String.init).joined(separator: ","),
                "pid": String(getpid()),
                "uid": String(getuid()), "euid": String(geteuid()),
                "gid": String(getgid()), "egid": String(getegid()),
            ].merging(inheritedState.extra) { a, _ in a })
        header.setStrings(argv: argv, envp: envp)
        let writer = try TraceWriter(directory: options.traceDirectory, header: header)
        try writer.storeFile(executable)
        if let interpreter { try writer.storeFile(interpreter.bytes) }
        let world = RecordingWorld(writer: writer)
        HostSignals.install()
        Watchdog.start(interval: 2)

        let info = StartupInfo(argvBytes: argv, envpBytes: envp, execPath: execfn, exePath: path, atRandom: try world.startupRandom(),
                               uid: getuid(), euid: geteuid(), gid: getgid(), egid: getegid(), pid: getpid(),
                               credentials: inheritedState.credentials)
        let termination: Termination
        do {
            let process = try Launch.process(machine: machine, executable: executable, interpreter: interpreter, info: info, stdio: stdio, recording: true,
                                             inherited: inheritedState)
            Launch.inherit(process, mask: inherited.mask, ignored: inherited.ignored)
            if let seed = options.chaosSeed { process.chaos = Scheduler.Chaos(seed: seed) }
            let runner = ProcessRunner(process: process, world: world)
            runner.strict = options.strict
            termination = try runner.run()
            if PreemptionStats.wanted { fputs(PreemptionStats.summary + "\n", stderr) }
        } catch {
            // Keep what was recorded: the trace replays up to here.
            try? writer.flush()
            throw error
        }
        return Outcome(termination: termination, traceDirectory: writer.directory,
                       traceBytes: Recorder.directorySize(writer.directory), events: writer.eventCount)
    }

    /// The program as exec would find it: a path with a slash as it is,
    /// otherwise the first executable match on PATH.
    static func resolve(_ program: String) throws -> String {
        if program.contains("/") {
            guard access(program, F_OK) == 0 else { throw RunStopped("\(program): no such file", status: 127) }
            guard access(program, X_OK) == 0 else { throw RunStopped("\(program): permission denied", status: 126) }
            return program
        }
        let path = getenv("PATH").map { String(cString: $0) } ?? "/usr/local/bin:/usr/bin:/bin"
        for dir in path.split(separator: ":") {
            let candidate = "\(dir)/\(program)"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        throw RunStopped("\(program): command not found", status: 127)
    }

    static func realPath(_ path: String) -> String {
        guard let p = realpath(path, nil) else { return path }
        defer { free(p) }
        return String(cString: p)
    }

    static func readFile(_ path: String) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw RunStopped("cannot open \(path): \(String(cString: strerror(errno)))", status: 126) }
        defer { close(fd) }
        do { return try HostFile.readAll(fd) } catch {
            throw RunStopped("cannot read \(path): \(String(cString: strerror(error.code)))", status: 126)
        }
    }

    /// detrec's environment as bytes (a variable need not be UTF-8).
    static func environment() -> [[UInt8]] {
        var out: [[UInt8]] = []
        var p = environ
        while let entry = p.pointee {
            out.append(Array(UnsafeRawBufferPointer(start: entry, count: strlen(entry))))
            p += 1
        }
        return out
    }

    static func currentDirectory() -> String {
        var buf = [CChar](repeating: 0, count: 4096)
        return getcwd(&buf, buf.count) != nil ? String(cString: buf) : "/"
    }

    static func directorySize(_ dir: String) -> UInt64 {
        var total: UInt64 = 0
        func walk(_ d: String) {
            guard let handle = opendir(d) else { return }
            defer { closedir(handle) }
            while let e = readdir(handle) {
                let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                if name == "." || name == ".." { continue }
                var st = stat()
                let full = d + "/" + name
                guard lstat(full, &st) == 0 else { continue }
                if st.st_mode & S_IFMT == S_IFDIR { walk(full) } else { total += UInt64(st.st_size) }
            }
        }
        walk(dir)
        return total
    }
}
