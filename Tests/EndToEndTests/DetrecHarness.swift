import Foundation
import Testing

/// Runs the built `detrec` on small C programs compiled at test time:
/// record, replay, compare. The binary sits next to the test bundle.
enum Harness {
    struct Run {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    static let detrec: String = {
        let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        var dir = exe.deletingLastPathComponent()
        // The test bundle may be a directory (…/detrecPackageTests.xctest).
        for _ in 0..<4 {
            let candidate = dir.appendingPathComponent("detrec").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        return "detrec"
    }()

    static let progs: URL = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Programs")

    static func temporaryDirectory() -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("detrec-e2e-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// Compiles a C source (a string) into `dir`; `flags` such as ["-static"].
    static func compile(_ source: String, name: String, flags: [String] = ["-static"], in dir: URL) throws -> String {
        let src = dir.appendingPathComponent(name + ".c")
        try source.write(to: src, atomically: true, encoding: .utf8)
        let exe = dir.appendingPathComponent(name).path
        let r = try run(["/usr/bin/gcc", "-O1", "-pthread"] + flags + ["-o", exe, src.path])
        if r.status != 0 { throw HarnessError(message: "gcc failed: \(r.stderr)") }
        return exe
    }

    struct HarnessError: Error, CustomStringConvertible {
        var message: String
        var description: String { message }
    }

    /// Runs a command to completion through the suite's one spawner
    /// (`spawn` in Support.swift: children get 0, 1 and 2 only, a timeout,
    /// and 128+N when killed by signal N).
    static func run(_ argv: [String], stdin: Data? = nil, environment: [String: String] = [:],
                    closeStdin: Bool = false, timeout: TimeInterval = 60) throws -> Run {
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        let input: Input = closeStdin ? .closed : stdin.map { .bytes([UInt8]($0)) } ?? .devNull
        let r = try EndToEndTests.run(argv, stdin: input, environment: env.map { "\($0.key)=\($0.value)" },
                                      in: scratch.path, timeout: timeout)
        if r.timedOut { throw HarnessError(message: "\(argv.joined(separator: " ")) ran past \(timeout)s") }
        return Run(status: r.status, stdout: r.stdout, stderr: r.stderr)
    }

    /// Where the spawner keeps the children's output files.
    static let scratch = Scratch()

    static func record(_ program: [String], trace: URL, stdin: Data? = nil, environment: [String: String] = [:],
                       options: [String] = []) throws -> Run {
        try run([detrec, "record"] + options + ["-q", "-o", trace.path, "--"] + program, stdin: stdin, environment: environment)
    }

    static func replay(_ trace: URL, options: [String] = []) throws -> Run {
        try run([detrec, "replay"] + options + [trace.path])
    }

    /// Records, replays twice, and checks each replay prints what the
    /// recording printed and exits the same. Returns the recording's run.
    @discardableResult
    static func roundTrip(_ program: [String], in dir: URL, stdin: Data? = nil, environment: [String: String] = [:],
                          options: [String] = [],
                          sourceLocation: SourceLocation = #_sourceLocation) throws -> (Run, URL) {
        let trace = dir.appendingPathComponent("trace-\(UUID().uuidString.prefix(8))")
        let rec = try record(program, trace: trace, stdin: stdin, environment: environment, options: options)
        for _ in 0..<2 {
            let rep = try replay(trace)
            #expect(rep.stdout == rec.stdout, "replay stdout differs", sourceLocation: sourceLocation)
            #expect(rep.status == rec.status, "replay status \(rep.status) vs recorded \(rec.status): \(rep.stderr)",
                    sourceLocation: sourceLocation)
        }
        return (rec, trace)
    }

    /// Compiles `source`, runs it natively, records and replays it, and
    /// checks the recording printed and exited as the native run did.
    /// Returns the recording's stdout.
    static func matchesNative(_ source: String, name: String, args: [String] = [], flags: [String] = ["-static"],
                              in dir: URL, sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        let exe = try compile(source, name: name, flags: flags, in: dir)
        let native = try run([exe] + args)
        let (rec, _) = try roundTrip([exe] + args, in: dir, sourceLocation: sourceLocation)
        #expect(rec.stdout == native.stdout, sourceLocation: sourceLocation)
        #expect(rec.status == native.status, sourceLocation: sourceLocation)
        return rec.stdout
    }

    /// Records `program` once per `--chaos` seed and replays each trace,
    /// checking the replay prints what its recording printed. Returns each
    /// seed's trace and recorded stdout.
    static func chaosRoundTrips(_ program: [String], seeds: ClosedRange<Int>, name: String, in dir: URL,
                                sourceLocation: SourceLocation = #_sourceLocation) throws -> [(seed: Int, trace: URL, stdout: String)] {
        try seeds.map { seed in
            let trace = dir.appendingPathComponent("\(name)-\(seed)")
            let rec = try record(program, trace: trace, options: ["--chaos", "--seed", "\(seed)"])
            #expect(rec.status == 0, "seed \(seed): \(rec.stderr)", sourceLocation: sourceLocation)
            let rep = try replay(trace)
            #expect(rep.stdout == rec.stdout, "seed \(seed)", sourceLocation: sourceLocation)
            return (seed, trace, rec.stdout)
        }
    }

    /// `detrec dump --json` of a trace, one parsed object per line (the header first).
    static func dumpJSON(_ trace: URL) throws -> [[String: Any]] {
        let r = try run([detrec, "dump", "--json", trace.path])
        return try r.stdout.split(separator: "\n").map { line in
            guard let o = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
                throw HarnessError(message: "not a JSON object: \(line)")
            }
            return o
        }
    }
}
