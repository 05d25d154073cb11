import ArgumentParser
import Kernel

/// `detrec syscalls`: what detrec does with each x86-64 syscall number.
struct SyscallsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "syscalls",
        abstract: "List every x86-64 syscall number with how detrec supports it.",
        discussion: """
            One line per number: number, name, support (emulated, host, refused), whether Linux \
            can make it wait, its restart rule after a signal, and a note. With --markdown, the \
            table docs/syscalls.md holds.
            """)

    @Flag(help: "Print the Markdown table of docs/syscalls.md.")
    var markdown = false

    func run() throws {
        if markdown {
            print(SyscallTable.linux.supportMarkdown(), terminator: "")
        } else {
            for line in SyscallTable.linux.supportLines() { print(line) }
        }
    }
}
