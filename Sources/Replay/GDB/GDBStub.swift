import Glibc
import Kernel
import KVMUser
import Trace

/// How `detrec replay` serves gdb.
public struct GDBOptions: Sendable {
    /// Where to listen; port 0 picks a free one.
    public var host = "127.0.0.1"
    public var port: UInt16 = 0
    /// Start gdb itself, connected to the stub (`--gdb`).
    public var launchGDB = false
    /// Extra arguments for gdb (after `--`).
    public var gdbArguments: [String] = []
    /// Do not wait where the program slept (`--skip-sleeps`).
    public var skipSleeps = false
    /// The gdb to start: $DETREC_GDB, else `gdb` from PATH.
    public var gdbProgram = getenv("DETREC_GDB").map { String(cString: $0) } ?? "gdb"
    /// Start the session at the start of the slice after this many events (`--goto`).
    public var gotoEvent: Int?
    /// The recorded process gdb debugs (`-p`, `-f`); nil: the first one.
    public var process: ProcessChoice?

    public init() {}

    /// `HOST:PORT`, `:PORT` or `PORT` (`[v6]:PORT` too); nil when malformed.
    public static func parseListen(_ s: String) -> (host: String, port: UInt16)? {
        var host = "127.0.0.1"
        var portText = Substring(s)
        if let colon = s.lastIndex(of: ":") {
            let h = s[..<colon]
            portText = s[s.index(after: colon)...]
            if !h.isEmpty {
                host = h.hasPrefix("[") && h.hasSuffix("]") ? String(h.dropFirst().dropLast()) : String(h)
            }
        }
        guard let port = UInt16(portText) else { return nil }
        return (host, port)
    }
}

/// `detrec replay --gdb` / `--gdb-listen`: replays a trace under gdb's control.
public enum GDBStub {
    /// Serves one gdb session (port probes that send nothing do not count)
    /// and returns the status detrec exits with: the recorded one when the
    /// replay ran to the end, 0 when gdb detached or killed it first, the
    /// error's status when the replay could not go on.
    public static func run(traceDirectory: String, options: GDBOptions) throws -> Int32 {
        let prepared = try Replayer().prepare(traceDirectory: traceDirectory)
        prepared.world.skipSleeps = options.skipSleeps
        let header = prepared.reader.header
        let tid = try firstThread(traceDirectory) ?? 1
        var temporaries: [String] = []
        defer { for t in temporaries { unlink(t) } }
        let exe = try ExecutableFile.path(for: header, reader: prepared.reader)
        if exe.temporary { temporaries.append(exe.path) }

        // The first replay is the one prepared here; going back makes more.
        var first: Replayer.Prepared? = prepared
        let timeline = try ReplayTimeline(skipSleeps: options.skipSleeps) {
            let p = try first ?? Replayer().prepare(traceDirectory: traceDirectory)
            first = nil
            let s = ReplaySession(process: p.process, world: p.world, tid: tid)
            if let choice = options.process { try s.run(until: choice) }
            return s
        }
        if let event = options.gotoEvent {
            do {
                _ = try timeline.go(toEvent: event)
            } catch let e as Unreachable {
                throw RunStopped("replay: --goto \(event): \(e.description)", status: 2)
            }
        }
        // Replay checkpoints (forks of this process): off with DETREC_REPLAY_CHECKPOINTS=off.
        let processes = getenv("DETREC_REPLAY_CHECKPOINTS").map { String(cString: $0) == "off" } == true ? nil : try? ReplayProcesses()
        defer { processes?.shutDown() }
        var stored: [String: [UInt8]] = [:]
        let exeBytes = try prepared.reader.storedFile(sha256: header.executable.sha256)
        stored[exe.path] = exeBytes
        stored[header.executable.path] = exeBytes
        if let path = header.extra["interpreter"], !path.isEmpty, let sha = header.extra["interpreterSHA256"] {
            stored[path] = try prepared.reader.storedFile(sha256: sha)
        }
        let hostIO = HostIO(stored: stored)
        hostIO.procFile = { path in
            let process = timeline.session.process
            return ProcFS.plainLocation(path, process: process).flatMap { ProcFS.contents($0, family: process.family) }
        }
        let cwd = header.cwd
        hostIO.procLink = { path in
            let process = timeline.session.process
            guard let location = ProcFS.plainLocation(path, process: process) else { return nil }
            return location.rest == ["cwd"] ? cwd : ProcFS.link(location, family: process.family)
        }
        // A process chosen with -p that runs another program: gdb reads
        // that one from the host, at the path it was exec'd from.
        let inferior = timeline.session.process
        let program = inferior === prepared.process ? exe.path : inferior.executablePath
        let server = GDBServer(timeline: timeline, executablePath: program, hostIO: hostIO)
        timeline.exportServerState = { server.exportState() }
        let listener = try Listener(host: options.launchGDB ? "127.0.0.1" : options.host, port: options.port)
        defer { Glibc.close(listener.fd) }
        if !options.launchGDB {
            say("detrec: waiting for gdb on \(listener.display) (gdb -ex 'target extended-remote \(listener.display)' \(program))")
            if inferior !== prepared.process { say("detrec: gdb debugs process \(inferior.pid) (\(program)) from event \(timeline.session.eventIndex)") }
        }

        var child: pid_t = 0
        if options.launchGDB {
            let script = try TemporaryFile.write(prefix: "detrec-gdb-init", Array("set remotetimeout 60\ntarget extended-remote \(listener.display)\n".utf8), mode: 0o600)
            temporaries.append(script)
            child = try spawn([options.gdbProgram, "-q", "-x", script] + options.gdbArguments + [program])
            // Ctrl-C belongs to gdb, which turns it into an interrupt packet.
            signal(SIGINT, SIG_IGN)
        }

        if let p = processes {
            p.beforeExit = { [child] in
                if child > 0 {
                    var status: Int32 = 0
                    while waitpid(child, &status, 0) < 0 && errno == EINTR {}
                }
                for t in temporaries { unlink(t) }
            }
            p.takeOver = { body, fds in
                // A process restored from a checkpoint: gdb's session goes on here.
                var status: Int32 = 70
                p.watchLifeline()
                p.tell(.active, getpid())
                do {
                    guard let fd = fds.first else { throw WireError("no gdb connection") }
                    var r = WireReader(body)
                    let job = try timeline.takeOverJob(&r, sockets: Array(fds.dropFirst()))
                    try server.importState(&r)
                    let connection = GDBConnection(fd: fd)
                    connection.noAck = server.noAck
                    timeline.connectionFD = fd
                    InterruptSignal.install(on: fd)
                    timeline.interruptRequested = { connection.takeInterrupt() }
                    connection.send(server.reply(afterTakeOver: job))
                    _ = server.serve(connection, resumed: true)
                    status = finalStatus(server, timeline)
                } catch {
                    say("detrec: a checkpoint could not take the session over: \(error)")
                }
                _ = p.finish(status: status)
                _exit(status)
            }
            timeline.enableCheckpoints(p)
        }

        var ending = GDBServer.Ending.probe
        while ending == .probe {
            guard let fd = listener.accept(whileAlive: child) else { break }
            InterruptSignal.install(on: fd)
            timeline.connectionFD = fd
            ending = server.serve(GDBConnection(fd: fd))
        }
        if child > 0 {
            var status: Int32 = 0
            while waitpid(child, &status, 0) < 0 && errno == EINTR {}
        }
        return finalStatus(server, timeline)
    }

    private static func finalStatus(_ server: GDBServer, _ timeline: ReplayTimeline) -> Int32 {
        if let f = server.failure { return f.status }
        if let t = timeline.session.termination { return t.shellStatus }
        return 0
    }

    /// The recorded thread id: the process-start event's.
    private static func firstThread(_ directory: String) throws -> Int32? {
        let reader = try TraceReader(directory: directory)
        return try reader.next()?.tid
    }

    static func say(_ s: String) {
        let line = s + "\n"
        line.withCString { _ = Glibc.write(2, $0, strlen($0)) }
    }

    private static func spawn(_ argv: [String]) throws -> pid_t {
        var cArgs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { for p in cArgs { free(p) } }
        var pid: pid_t = 0
        let rc = posix_spawnp(&pid, argv[0], nil, nil, &cArgs, environ)
        guard rc == 0 else { throw RunStopped("cannot start \(argv[0]): \(String(cString: strerror(rc)))") }
        return pid
    }
}

/// SIGIO on the gdb socket: any input from gdb while the vCPU runs makes
/// KVM_RUN return, so the stub can look for the interrupt byte.
enum InterruptSignal {
    static func install(on fd: Int32) {
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in UserMachine.requestInterrupt() }
        action.sa_flags = SA_RESTART
        sigemptyset(&action.sa_mask)
        sigaction(SIGIO, &action, nil)
        _ = fcntl(fd, F_SETOWN, getpid())
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_ASYNC)
    }
}

/// The listening socket.
struct Listener {
    let fd: Int32
    let display: String

    init(host: String, port: UInt16) throws {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &list)
        guard rc == 0, let ai = list else {
            throw RunStopped("gdb: cannot resolve \(host): \(String(cString: gai_strerror(rc)))")
        }
        defer { freeaddrinfo(list) }
        let fd = socket(ai.pointee.ai_family, ai.pointee.ai_socktype, ai.pointee.ai_protocol)
        guard fd >= 0 else { throw RunStopped("gdb: socket: \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        guard bind(fd, ai.pointee.ai_addr, ai.pointee.ai_addrlen) == 0, listen(fd, 4) == 0 else {
            let e = errno
            Glibc.close(fd)
            throw RunStopped("gdb: cannot listen on \(host):\(port): \(String(cString: strerror(e)))")
        }
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        var actual = port
        withUnsafeMutablePointer(to: &storage) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                if getsockname(fd, sa, &length) == 0 {
                    if sa.pointee.sa_family == sa_family_t(AF_INET) {
                        sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { actual = UInt16(bigEndian: $0.pointee.sin_port) }
                    } else if sa.pointee.sa_family == sa_family_t(AF_INET6) {
                        sa.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { actual = UInt16(bigEndian: $0.pointee.sin6_port) }
                    }
                }
            }
        }
        self.fd = fd
        display = (host.contains(":") ? "[\(host)]" : host) + ":\(actual)"
    }

    /// The next connection; nil when `child` (gdb started by detrec) exited first.
    func accept(whileAlive child: pid_t) -> Int32? {
        while true {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let n = poll(&p, 1, child > 0 ? 200 : -1)
            if n > 0 {
                let c = Glibc.accept(fd, nil, nil)
                if c >= 0 {
                    var one: Int32 = 1
                    setsockopt(c, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
                    return c
                }
                if errno == EINTR || errno == EAGAIN || errno == ECONNABORTED { continue }
                return nil
            }
            if n < 0 && errno != EINTR { return nil }
            if child > 0 {
                var status: Int32 = 0
                if waitpid(child, &status, WNOHANG) == child { return nil }
            }
        }
    }
}

/// Files the stub writes for gdb, removed when the session ends.
enum TemporaryFile {
    static func write(prefix: String, _ bytes: [UInt8], mode: mode_t) throws -> String {
        let dir = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
        var template = Array("\(dir)/\(prefix)-XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw RunStopped("gdb: cannot create a file in \(dir): \(String(cString: strerror(errno)))") }
        defer { Glibc.close(fd) }
        let path = String(cString: template)
        var done = 0
        while done < bytes.count {
            let n = bytes[done...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { unlink(path); throw RunStopped("gdb: cannot write \(path)") }
            done += n
        }
        fchmod(fd, mode)
        return path
    }
}

/// The executable gdb should read: the recorded path when the file there
/// is still the recorded one, else the copy stored in the trace, written out.
enum ExecutableFile {
    static func path(for header: TraceHeader, reader: TraceReader) throws -> (path: String, temporary: Bool) {
        let recorded = header.executable.path
        if let bytes = read(recorded), SHA256.hex(bytes) == header.executable.sha256 {
            return (recorded, false)
        }
        let stored = try reader.storedFile(sha256: header.executable.sha256)
        let name = recorded.split(separator: "/").last.map(String.init) ?? "program"
        return (try TemporaryFile.write(prefix: "detrec-\(name)", stored, mode: 0o755), true)
    }

    static func read(_ path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { Glibc.close(fd) }
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { return nil }
            if n == 0 { return out }
            out += buffer[0..<n]
        }
    }
}
