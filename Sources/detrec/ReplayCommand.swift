import ArgumentParser
import Glibc
import Kernel
import Replay

struct ReplayCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replay",
        abstract: "Re-execute a recorded program exactly, from its trace.",
        discussion: """
            Re-emits the program's stdout and stderr and exits with the recorded status; never touches the host's files.
            With --gdb or --gdb-listen the replay starts stopped at the program's first instruction and a debugger \
            drives it (see docs/gdb.md); arguments after -- go to gdb. -p PID debugs a process the program started \
            instead of the first one.
            """)

    @Argument(help: "The trace directory (default: the latest recording).")
    var trace: String?

    @Flag(help: "Do not wait where the program slept (nanosleep): replay as fast as it can.")
    var skipSleeps = false

    @Flag(help: "Start gdb connected to the replay.")
    var gdb = false

    @Option(name: .customLong("gdb-listen"), help: ArgumentHelp("Wait for gdb on HOST:PORT (or :PORT).", valueName: "host:port"))
    var gdbListen: String?

    @Option(name: [.customShort("g"), .customLong("goto")], help: ArgumentHelp("With --gdb or --gdb-listen: start the session at this event (the start of the slice after that many events; `monitor when` shows them).", valueName: "event"))
    var gotoEvent: Int?

    @Option(name: [.customShort("p"), .customLong("onprocess")], help: ArgumentHelp("With --gdb or --gdb-listen: debug the recorded process PID, from its first instruction after it exec'd (the first process: from the start); the replay runs without gdb until then.", valueName: "pid"))
    var onProcess: Int32?

    @Option(name: [.customShort("f"), .customLong("onfork")], help: ArgumentHelp("With --gdb or --gdb-listen: debug the recorded process PID from when it first runs after its fork.", valueName: "pid"))
    var onFork: Int32?

    @Argument(parsing: .postTerminator, help: "Arguments for gdb (with --gdb).")
    var gdbArguments: [String] = []

    func run() throws {
        let directory = trace ?? TraceLocation.latest
        if gdb || gdbListen != nil {
            var options = GDBOptions()
            options.launchGDB = gdb
            options.gdbArguments = gdbArguments
            options.skipSleeps = skipSleeps
            if let e = gotoEvent {
                guard e >= 0 else { fail("replay: --goto wants an event number, not \(e)", status: 2) }
                options.gotoEvent = e
            }
            if onProcess != nil && onFork != nil { fail("replay: -p and -f both choose the process: give one", status: 2) }
            if let pid = onProcess { options.process = .exec(pid) }
            if let pid = onFork { options.process = .fork(pid) }
            if let listen = gdbListen {
                guard let (host, port) = GDBOptions.parseListen(listen) else {
                    fail("replay: --gdb-listen wants HOST:PORT, not '\(listen)'", status: 2)
                }
                options.host = host
                options.port = port
            }
            do {
                Glibc.exit(try GDBStub.run(traceDirectory: directory, options: options))
            } catch let stop as RunStopped {
                fail(stop.message, status: stop.status)
            } catch {
                fail("replay: \(error)")
            }
        }
        if gotoEvent != nil { fail("replay: --goto is for a gdb session (add --gdb or --gdb-listen)", status: 2) }
        if onProcess != nil || onFork != nil { fail("replay: -p and -f are for a gdb session (add --gdb or --gdb-listen)", status: 2) }
        if !gdbArguments.isEmpty { fail("replay: arguments after -- are for gdb (use --gdb)", status: 2) }
        do {
            let outcome = try Replayer().replay(traceDirectory: directory, skipSleeps: skipSleeps)
            Glibc.exit(outcome.termination.shellStatus)
        } catch let stop as RunStopped {
            fail(stop.message, status: stop.status)
        } catch {
            fail("replay: \(error)")
        }
    }
}
