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

    /// Runs a command to completion, with optional stdin bytes and extra environment.
    static func run(_ argv: [String], stdin: Data? = nil, environment: [String: String] = [:],
                    closeStdin: Bool = false, timeout: TimeInterval = 60) throws -> Run {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: argv[0])
        p.arguments = Array(argv.dropFirst())
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        p.environment = env
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        let input = Pipe()
        if stdin != nil || closeStdin { p.standardInput = input } else { p.standardInput = FileHandle.nullDevice }
        try p.run()
        if let stdin { input.fileHandleForWriting.write(stdin) }
        if stdin != nil || closeStdin { try? input.fileHandleForWriting.close() }
        var outData = Data(), errData = Data()
        let group = DispatchGroup()
        group.enter()
        DispatchQueue.global().async { outData = out.fileHandleForReading.readDataToEndOfFile(); group.leave() }
        group.enter()
        DispatchQueue.global().async { errData = err.fileHandleForReading.readDataToEndOfFile(); group.leave() }
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { usleep(2000) }
        if p.isRunning { p.terminate(); throw HarnessError(message: "\(argv.joined(separator: " ")) ran past \(timeout)s") }
        group.wait()
        return Run(status: p.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                   stderr: String(decoding: errData, as: UTF8.self))
    }

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
                          sourceLocation: SourceLocation = #_sourceLocation) throws -> (Run, URL) {
        let trace = dir.appendingPathComponent("trace-\(UUID().uuidString.prefix(8))")
        let rec = try record(program, trace: trace, stdin: stdin, environment: environment)
        for _ in 0..<2 {
            let rep = try replay(trace)
            #expect(rep.stdout == rec.stdout, "replay stdout differs", sourceLocation: sourceLocation)
            #expect(rep.status == rec.status, "replay status \(rep.status) vs recorded \(rec.status): \(rep.stderr)",
                    sourceLocation: sourceLocation)
        }
        return (rec, trace)
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
