import ArgumentParser
import Glibc
import Kernel
import Trace

struct DumpCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dump",
        abstract: "Print a trace's header and events.")

    @Flag(help: "One JSON object per line: the header first, then each event.")
    var json = false

    @Argument(help: "The trace directory (default: the latest recording).")
    var trace: String?

    func run() throws {
        let directory = trace ?? TraceLocation.latest
        let reader: TraceReader
        do { reader = try TraceReader(directory: directory) } catch { fail("dump: \(error)") }
        let formatter = EventFormatter(syscallName: { SyscallNames.name($0) })
        let h = reader.header
        if json {
            print(formatter.headerJSON(h))
        } else {
            print("trace \(directory): format \(h.formatVersion), detrec \(h.detrecVersion), recorded \(h.recordedAt) on \(h.host)")
            let cpuNames = h.xcr0 == 0 ? "" : ", XCR0 0x\(String(h.xcr0, radix: 16))"
            print("cpu model \(h.extra["cpuModel"] ?? "host (recorded before CPU models)")\(cpuNames), \(h.cpuid.count) CPUID leaves")
            print("program \(h.executable.path) sha256 \(h.executable.sha256) argv \(h.argv)")
        }
        var index = 0
        do {
            while let event = try reader.next() {
                print(json ? formatter.json(event, index: index) : formatter.text(event, index: index))
                index += 1
            }
        } catch {
            fail("dump: \(error)")
        }
        if case .truncated(let after, let offset)? = reader.ending {
            let line = "detrec: the trace ends after \(after) events at byte \(offset): the recording was interrupted\n"
            _ = line.withCString { write(2, $0, strlen($0)) }
        }
    }
}
