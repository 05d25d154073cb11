import ArgumentParser
import Glibc
import Kernel
import Replay

struct ReplayCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replay",
        abstract: "Re-execute a recorded program exactly, from its trace.",
        discussion: "Re-emits the program's stdout and stderr and exits with the recorded status; never touches the host's files.")

    @Argument(help: "The trace directory (default: the latest recording).")
    var trace: String?

    func run() throws {
        let directory = trace ?? TraceLocation.latest
        do {
            let outcome = try Replayer().replay(traceDirectory: directory)
            Glibc.exit(outcome.termination.shellStatus)
        } catch let stop as RunStopped {
            fail(stop.message, status: stop.status)
        } catch {
            fail("replay: \(error)")
        }
    }
}
