import ArgumentParser
import Glibc
import Kernel
import KVMUser
import Record

struct RecordCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "record",
        abstract: "Run a program and record its execution.",
        discussion: "Exits with the program's status (128+N when it dies of signal N).")

    @Option(name: .short, help: "The trace directory (default: $DETREC_TRACE_DIR or ~/.local/share/detrec, prog-N).")
    var output: String?

    @Flag(name: .short, help: "Do not print the trace's location and size at the end.")
    var quiet = false

    @Flag(help: "Stop at the first unimplemented syscall instead of returning ENOSYS to the program.")
    var strict = false

    @Flag(help: "Randomize thread scheduling (random thread choices and time slices) to make rare interleavings show up.")
    var chaos = false

    @Option(help: "The seed for --chaos (default: random, printed); stored in the trace.")
    var seed: UInt64?

    @Option(help: ArgumentHelp("The CPU the program sees: x86-64-v3, x86-64-v2 or host (default: x86-64-v3 where the host has it, else x86-64-v2). A baseline's traces replay on any host of either vendor that has its features; host presents every feature of this CPU (AVX-512...), and its traces replay only on CPUs with the same features.", valueName: "model"))
    var cpu: String?

    @Argument(parsing: .captureForPassthrough, help: "The program and its arguments.")
    var command: [String] = []

    func run() throws {
        var argv = command
        // Passthrough capture takes a leading --help as the program; a user
        // who types `detrec record --help` wants this command's help (a
        // program named --help is still reachable after `--`).
        if argv.first == "--help" || argv.first == "-h" { throw CleanExit.helpRequest(self) }
        if argv.first == "--" { argv.removeFirst() }
        guard let program = argv.first else { fail("record: no program given (detrec record [-o DIR] -- PROG ARGS...)", status: 2) }
        let directory: String
        do {
            directory = try output.map(TraceLocation.absolute) ?? TraceLocation.next(for: program)
        } catch { fail("\(error)") }
        var options = Recorder.Options(program: program, arguments: Array(argv.dropFirst()),
                                       traceDirectory: directory, detrecVersion: Detrec.version)
        options.strict = strict
        options.commandBytes = Self.rawTail(matching: argv)
        if let cpu {
            guard let model = CPUModel(rawValue: cpu) else {
                fail("record: unknown --cpu \(cpu) (choose \(CPUModel.allCases.map(\.rawValue).joined(separator: ", ")))", status: 2)
            }
            options.cpuModel = model
        }
        if seed != nil && !chaos { fail("record: --seed goes with --chaos", status: 2) }
        if chaos {
            let chosen = seed ?? UInt64.random(in: 0...UInt64.max)
            options.chaosSeed = chosen
            if seed == nil {
                let line = "detrec: chaos seed \(chosen)\n"
                _ = line.withCString { write(2, $0, strlen($0)) }
            }
        }
        do {
            let outcome = try Recorder().record(options)
            if output == nil { TraceLocation.pointLatest(at: directory) }
            if case .killed(let signal) = outcome.termination {
                let line = "detrec: the program was killed by \(Signals.name(signal))\n"
                _ = line.withCString { write(2, $0, strlen($0)) }
            }
            if !quiet {
                let size = Double(outcome.traceBytes) / 1_048_576
                let line = "detrec: trace \(outcome.traceDirectory) (\(outcome.events) events, \(String(Double(Int(size * 10)) / 10)) MiB)\n"
                _ = line.withCString { write(2, $0, strlen($0)) }
            }
            Glibc.exit(outcome.termination.shellStatus)
        } catch let stop as RunStopped {
            fail(stop.message, status: stop.status)
        } catch {
            fail("record: \(error)")
        }
    }

    /// The last `argv.count` words of detrec's own command line as bytes,
    /// when they are the words `argv` repaired (ArgumentParser sees UTF-8
    /// strings; execve passes bytes, which a file name need not be).
    static func rawTail(matching argv: [String]) -> [[UInt8]]? {
        let count = Int(CommandLine.argc)
        guard argv.count <= count else { return nil }
        var raw: [[UInt8]] = []
        for i in (count - argv.count)..<count {
            guard let word = CommandLine.unsafeArgv[i] else { return nil }
            raw.append(Array(UnsafeRawBufferPointer(start: word, count: strlen(word))))
        }
        guard raw.map({ String(decoding: $0, as: UTF8.self) }) == argv else { return nil }
        return raw
    }
}
