import Foundation
import Glibc
import Testing

// End-to-end support: compile a small C program with gcc at test time, run
// `detrec record` on it, then `detrec replay` (twice), and compare.
//
// Processes are started with posix_spawn so that a test controls exactly
// what the child's stdin is (bytes, /dev/null, closed, or a pipe the test
// keeps open), which signals it starts with (default dispositions: a
// harness that ignores SIGINT must not pass that on), and how long it may
// run (a hung child is killed and the test fails instead of hanging).

// MARK: - Locations

enum E2E {
    /// The `detrec` executable built next to this test bundle (the
    /// EndToEndTests target depends on it): found from the test process's
    /// own path, so any `--scratch-path` works.
    static let detrec: String = {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        precondition(n > 0, "cannot read /proc/self/exe")
        let exe = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let dir = (exe as NSString).deletingLastPathComponent
        return dir + "/detrec"
    }()

    static let gcc: String = {
        for candidate in ["/usr/bin/gcc", "/usr/local/bin/gcc", "/bin/gcc"] where access(candidate, X_OK) == 0 {
            return candidate
        }
        return "/usr/bin/gcc"
    }()

    /// The repository root, from this file's path (Tests/EndToEndTests/Support.swift).
    static func repositoryRoot(_ file: String = #filePath) -> String {
        var url = URL(fileURLWithPath: file)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }

    /// A minimal, fixed environment for recordings (what `record` stores in
    /// the trace header as the guest's envp).
    static let baseEnvironment = ["PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C"]
}

// MARK: - Temporary directories

/// A fresh directory under /tmp, removed by `remove()`.
final class Scratch {
    let path: String

    init(_ label: String = "t") {
        let template = "/tmp/detrec-e2e-\(label)-XXXXXX"
        var bytes = Array(template.utf8CString)
        let made = bytes.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(made != nil, "mkdtemp failed: \(String(cString: strerror(errno)))")
        path = String(cString: bytes)
    }

    func file(_ name: String) -> String { path + "/" + name }

    func remove() { try? FileManager.default.removeItem(atPath: path) }
}

// MARK: - Running processes

/// What a child gets as its standard input.
enum Input {
    case bytes([UInt8])
    case devNull
    /// Descriptor 0 closed in the child.
    case closed
    /// This descriptor (for example the read end of a pipe the test keeps open).
    case fd(Int32)

    static func text(_ s: String) -> Input { .bytes(Array(s.utf8)) }
}

struct RunResult: CustomStringConvertible {
    var stdout: String
    var stderr: String
    /// The exit code, or 128+N when the child was killed by signal N.
    var status: Int32
    var timedOut = false

    var description: String { "status \(status)\(timedOut ? " (TIMED OUT)" : "")\n--- stdout ---\n\(stdout)--- stderr ---\n\(stderr)" }
}

struct SpawnError: Error, CustomStringConvertible {
    var description: String
}

/// A running child whose stdout and stderr go to files.
final class Child {
    let pid: pid_t
    let stdoutPath: String
    let stderrPath: String
    private var reaped: Int32?

    init(pid: pid_t, stdoutPath: String, stderrPath: String) {
        self.pid = pid
        self.stdoutPath = stdoutPath
        self.stderrPath = stderrPath
    }

    var stdoutSoFar: String { (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? "" }

    func signal(_ s: Int32) { if reaped == nil { kill(pid, s) } }

    /// Waits until `condition` holds or `timeout` seconds pass.
    @discardableResult
    func waitUntil(timeout: Double = 15, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if condition() { return true }
            usleep(10_000)
        }
        return condition()
    }

    /// Whether the child's main thread sleeps in a host poll(2) or ppoll:
    /// where detrec waits while its program's only thread waits (a read,
    /// a sleep: `HostWake`), so a signal sent now finds the program waiting.
    var sleepsInHostPoll: Bool {
        guard let s = try? String(contentsOfFile: "/proc/\(pid)/syscall", encoding: .utf8) else { return false }
        let number = s.split(separator: " ").first
        return number == "7" || number == "271"
    }

    /// The kernel function the child sleeps in (/proc/PID/wchan).
    var wchan: String { (try? String(contentsOfFile: "/proc/\(pid)/wchan", encoding: .utf8)) ?? "" }

    /// Waits for the child; kills it (SIGKILL) after `timeout` seconds.
    func wait(timeout: Double = 30) -> RunResult {
        var timedOut = false
        let status: Int32
        if let r = reaped {
            status = r
        } else {
            let deadline = Date().addingTimeInterval(timeout)
            var raw: Int32 = 0
            while true {
                let r = waitpid(pid, &raw, WNOHANG)
                if r == pid { break }
                if r < 0 && errno != EINTR { raw = 0x7f00; break }
                if Date() >= deadline && !timedOut {
                    timedOut = true
                    kill(pid, SIGKILL)
                }
                usleep(2_000)
            }
            let signal = raw & 0x7f
            status = signal == 0 ? (raw >> 8) & 0xff : 128 + signal
            reaped = status
        }
        let out = (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? ""
        let err = (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? ""
        return RunResult(stdout: out, stderr: err, status: status, timedOut: timedOut)
    }
}

private let outputCounter = Counter()

final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0
    func next() -> Int { lock.lock(); defer { lock.unlock() }; value += 1; return value }
}

/// Starts `argv[0]` (a path) with the given stdin; stdout and stderr go to
/// files in `dir`.
/// glibc's posix_spawn_file_actions_addclosefrom_np (2.34+), which the
/// Glibc module does not export.
@_silgen_name("posix_spawn_file_actions_addclosefrom_np")
private func spawnAddCloseFrom(_ actions: UnsafeMutablePointer<posix_spawn_file_actions_t>, _ from: Int32) -> Int32

func spawn(_ argv: [String], stdin: Input = .devNull, environment: [String]? = nil, in dir: String) throws -> Child {
    let n = outputCounter.next()
    let outPath = "\(dir)/.out-\(n)", errPath = "\(dir)/.err-\(n)"
    var stdinPath: String?
    if case .bytes(let bytes) = stdin {
        let p = "\(dir)/.in-\(n)"
        _ = FileManager.default.createFile(atPath: p, contents: Data(bytes))
        stdinPath = p
    }

    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    switch stdin {
    case .bytes: posix_spawn_file_actions_addopen(&actions, 0, stdinPath!, O_RDONLY, 0)
    case .devNull: posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    case .closed: posix_spawn_file_actions_addclose(&actions, 0)
    case .fd(let fd): posix_spawn_file_actions_adddup2(&actions, fd, 0)
    }
    posix_spawn_file_actions_addopen(&actions, 1, outPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    posix_spawn_file_actions_addopen(&actions, 2, errPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    // Children start with 0, 1 and 2 only: the runner's other descriptors
    // (pipes of tests running in parallel) would otherwise be inherited, by
    // native runs and by detrec's guests alike, and shift fd numbers.
    _ = spawnAddCloseFrom(&actions, 3)

    var attr = posix_spawnattr_t()
    posix_spawnattr_init(&attr)
    defer { posix_spawnattr_destroy(&attr) }
    var defaults = sigset_t()
    sigemptyset(&defaults)
    for s in [SIGINT, SIGQUIT, SIGTERM, SIGHUP, SIGPIPE, SIGCHLD] { sigaddset(&defaults, s) }
    posix_spawnattr_setsigdefault(&attr, &defaults)
    var mask = sigset_t()
    sigemptyset(&mask)
    posix_spawnattr_setsigmask(&attr, &mask)
    posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))

    let env = environment ?? ProcessInfo.processInfo.environment.map { "\($0.key)=\($0.value)" }
    var cArgs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
    var cEnv: [UnsafeMutablePointer<CChar>?] = env.map { strdup($0) } + [nil]
    defer {
        for p in cArgs { free(p) }
        for p in cEnv { free(p) }
    }
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, argv[0], &actions, &attr, &cArgs, &cEnv)
    guard rc == 0 else { throw SpawnError(description: "posix_spawn \(argv[0]): \(String(cString: strerror(rc)))") }
    return Child(pid: pid, stdoutPath: outPath, stderrPath: errPath)
}

/// Runs a command to completion.
func run(_ argv: [String], stdin: Input = .devNull, environment: [String]? = nil, in dir: String, timeout: Double = 30) throws -> RunResult {
    try spawn(argv, stdin: stdin, environment: environment, in: dir).wait(timeout: timeout)
}

// MARK: - detrec

func detrec(_ args: [String], stdin: Input = .devNull, environment: [String]? = nil, in dir: String, timeout: Double = 30) throws -> RunResult {
    try run([E2E.detrec] + args, stdin: stdin, environment: environment ?? E2E.baseEnvironment, in: dir, timeout: timeout)
}

// MARK: - Compiling guest programs

enum Link: String {
    case `static` = "-static"
    case staticPIE = "-static-pie"
}

struct CompileError: Error, CustomStringConvertible {
    var description: String
}

/// Compiled programs, cached per (source, flags) for the life of the test
/// process, in one directory removed at exit.
final class ProgramCache: @unchecked Sendable {
    static let shared = ProgramCache()
    private let lock = NSLock()
    private var built: [String: String] = [:]
    private var count = 0
    let dir: Scratch

    private init() {
        dir = Scratch("programs")
        atexit { ProgramCache.shared.dir.remove() }
    }

    func compile(_ source: String, link: Link, optimization: String) throws -> String {
        let key = "\(link.rawValue) \(optimization)\n\(source)"
        lock.lock()
        defer { lock.unlock() }
        if let path = built[key] { return path }
        count += 1
        let src = dir.file("p\(count).c"), exe = dir.file("p\(count)")
        try source.write(toFile: src, atomically: true, encoding: .utf8)
        let r = try run([E2E.gcc, link.rawValue, optimization, "-w", "-o", exe, src], in: dir.path, timeout: 120)
        guard r.status == 0 else { throw CompileError(description: "gcc failed (\(r.status)):\n\(r.stderr)\n\(source)") }
        built[key] = exe
        return exe
    }
}

/// Builds a C program with `gcc -static -O1` (or `-static-pie`).
func compile(_ source: String, link: Link = .static, optimization: String = "-O1") throws -> String {
    try ProgramCache.shared.compile(source, link: link, optimization: optimization)
}

// MARK: - Record and replay

/// One recording and its replays.
struct Recording {
    let trace: String
    let record: RunResult
    let replays: [RunResult]
    var replay: RunResult { replays[0] }
}

/// Records `program args` into `scratch/trace` (or `traceName`), then
/// replays the trace `replays` times with `replayStdin`, and checks that
/// every replay prints the recorded stdout and ends with the recorded
/// status. `beforeReplay` runs between recording and replaying.
@discardableResult
func recordAndReplay(_ program: String, _ args: [String] = [], stdin: Input = .devNull,
                     environment: [String]? = nil, replayEnvironment: [String]? = nil,
                     replayStdin: Input = .devNull, replays: Int = 2, strict: Bool = false,
                     traceName: String = "trace", in scratch: Scratch,
                     beforeReplay: () throws -> Void = {},
                     sourceLocation: SourceLocation = #_sourceLocation) throws -> Recording {
    let trace = scratch.file(traceName)
    var recordArgs = ["record", "-q", "-o", trace]
    if strict { recordArgs.append("--strict") }
    let record = try detrec(recordArgs + ["--", program] + args, stdin: stdin, environment: environment, in: scratch.path)
    #expect(!record.timedOut, "record timed out: \(record)", sourceLocation: sourceLocation)
    try beforeReplay()
    var results: [RunResult] = []
    for i in 0..<replays {
        let r = try detrec(["replay", trace], stdin: replayStdin, environment: replayEnvironment, in: scratch.path)
        #expect(!r.timedOut, "replay \(i) timed out", sourceLocation: sourceLocation)
        #expect(r.stdout == record.stdout, "replay \(i) printed other output than the recording:\nrecord: \(record)\nreplay: \(r)", sourceLocation: sourceLocation)
        #expect(r.status == record.status, "replay \(i) ended with \(r.status), the recording with \(record.status); replay: \(r)", sourceLocation: sourceLocation)
        results.append(r)
    }
    return Recording(trace: trace, record: record, replays: results)
}

// MARK: - Trace inspection

/// `detrec dump --json`: the header object and the events, each line parsed.
struct DumpedTrace {
    var header: [String: Any]
    var events: [[String: Any]]
    var result: RunResult

    func syscalls(named name: String) -> [[String: Any]] {
        events.filter { $0["kind"] as? String == "syscall" && $0["name"] as? String == name }
    }
}

func dumpJSON(_ trace: String, in scratch: Scratch, sourceLocation: SourceLocation = #_sourceLocation) throws -> DumpedTrace {
    let r = try detrec(["dump", "--json", trace], in: scratch.path)
    let lines = r.stdout.split(separator: "\n", omittingEmptySubsequences: true)
    var objects: [[String: Any]] = []
    for (i, line) in lines.enumerated() {
        let parsed = try? JSONSerialization.jsonObject(with: Data(line.utf8))
        guard let object = parsed as? [String: Any] else {
            Issue.record("dump --json line \(i) is not a JSON object: \(line.prefix(300))", sourceLocation: sourceLocation)
            continue
        }
        objects.append(object)
    }
    let header = objects.first ?? [:]
    return DumpedTrace(header: header, events: Array(objects.dropFirst()), result: r)
}

func hex(_ v: Int) -> String { "0x" + String(v, radix: 16) }

extension [String: Any] {
    func int(_ key: String) -> Int? { (self[key] as? NSNumber)?.intValue }
    func string(_ key: String) -> String? { self[key] as? String }
    var args: [String] { self["args"] as? [String] ?? [] }
}

/// The lines of `s` that look like `key=value`, as a dictionary.
func keyValues(_ s: String) -> [String: String] {
    var out: [String: String] = [:]
    for line in s.split(separator: "\n") {
        guard let eq = line.firstIndex(of: "=") else { continue }
        out[String(line[..<eq])] = String(line[line.index(after: eq)...])
    }
    return out
}

func readBytes(_ path: String) -> [UInt8] {
    (FileManager.default.contents(atPath: path)).map { [UInt8]($0) } ?? []
}

func writeBytes(_ path: String, _ bytes: [UInt8]) throws {
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

/// A pipe whose ends are close-on-exec, so that no other child started
/// meanwhile inherits them (a held write end would keep a reader waiting).
func cloexecPipe(_ fds: inout [Int32]) -> Bool {
    guard pipe(&fds) == 0 else { return false }
    for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
    return true
}
