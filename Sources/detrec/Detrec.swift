import ArgumentParser
import Glibc

@main
struct Detrec: ParsableCommand {
    static let version = "0.1.0"
    static let configuration = CommandConfiguration(
        commandName: "detrec",
        abstract: "Record a Linux x86-64 program on a KVM vCPU and replay the exact same execution.",
        version: version,
        subcommands: [RecordCommand.self, ReplayCommand.self, DumpCommand.self, DoctorCommand.self, BenchCommand.self,
                      SyscallsCommand.self])
}

/// Ends detrec with a one-line message on stderr.
func fail(_ message: String, status: Int32 = 1) -> Never {
    var line = "detrec: \(message)\n"
    line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
    exit(status)
}
