import ArgumentParser
import Glibc
import KVMUser

/// `detrec bench-checkpoint`: what a preemption checkpoint and a rollback
/// cost on this host against the pages written, with KVM's dirty page log
/// (large checkpoints copied before write, or at once) and with the
/// full-copy fallback, next to a bare exit measured in the
/// same run (docs/preemption.md).
struct CheckpointBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-checkpoint",
        abstract: "Measure a preemption checkpoint and rollback against the pages written, all methods.",
        discussion: """
            A hand-assembled guest first writes a heap of --heap-mib MiB once, then, for each count \
            of pages, writes that many pages and the host takes a checkpoint, writes them again \
            (the rewrite, where protected pages are copied before write) and the host rolls back. Prints medians in µs and in bare syscall exits (bench-exit, \
            measured in the same run).
            """)

    @Option(help: "MiB of heap the guest writes once first (what a full copy pays for each time).")
    var heapMib = 64

    @Option(help: "Repeats per count of pages (the median is printed).")
    var repeats = 20

    func validate() throws {
        guard heapMib >= 1, heapMib <= 4096 else { throw ValidationError("--heap-mib must be between 1 and 4096") }
        guard repeats >= 1 else { throw ValidationError("--repeats must be positive") }
    }

    func run() throws {
        let device: KVMDevice
        do { device = try KVMDevice() } catch { fail("\(error)") }
        let heapPages = heapMib * 256
        let counts = [0, 1, 16, 256, 4096].filter { $0 <= heapPages }
        do {
            let exit = try ExitProbe.measure(iterations: 5000, batches: 3, device: device).syscall.median
            let check = try CheckpointProbe.checkDirtyLog(device: device)
            print("host: \(HostCapabilities.probe(device: device).summary); checkpoints: \(check.summary)")
            print("bare syscall exit: \(BenchCommand.fixed(exit)) µs; heap written first: \(heapMib) MiB")
            let cbw = try CheckpointProbe.checkCopyBeforeWrite(device: device)
            print("large checkpoints: \(cbw.summary)")
            print("| method | pages written | checkpoint µs | rollback µs | checkpoint exits | rollback exits | guest write µs | guest rewrite µs |")
            print("|---|---|---|---|---|---|---|---|")
            var firsts: [String] = []
            for (fullCopy, eager) in [(false, false), (false, true), (true, false)] {
                let costs = try CheckpointProbe.measure(device: device, heapPages: heapPages, pages: counts,
                                                        repeats: fullCopy ? max(3, repeats / 4) : repeats,
                                                        fullCopy: fullCopy, eager: eager)
                if let c = costs.first {
                    firsts.append("\(c.method) \(BenchCommand.fixed(c.firstCheckpointMicros, digits: 0)) µs "
                                  + "(\(BenchCommand.fixed(c.firstCheckpointMicros / exit)) exits)")
                }
                for c in costs {
                    print("| \(c.method) | \(c.pages) | \(BenchCommand.fixed(c.checkpointMicros, digits: 1)) "
                          + "| \(BenchCommand.fixed(c.rollbackMicros, digits: 1)) "
                          + "| \(BenchCommand.fixed(c.checkpointMicros / exit)) | \(BenchCommand.fixed(c.rollbackMicros / exit)) "
                          + "| \(BenchCommand.fixed(c.writeMicros, digits: 1)) | \(BenchCommand.fixed(c.rewriteMicros, digits: 1)) |")
                }
            }
            print("first checkpoint after the heap was written: " + firsts.joined(separator: "; "))
        } catch { fail("bench-checkpoint: \(error)") }
    }
}
