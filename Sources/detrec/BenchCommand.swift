import ArgumentParser
import Glibc
import KVMUser

/// `detrec bench-exit`: the raw cost of one guest→host→guest round trip on
/// this host, the floor under every recorded syscall (see docs/benchmarks.md).
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-exit",
        abstract: "Measure the cost of one bare guest→host→guest exit (syscall and #BP) on this host.",
        discussion: """
            Runs a hand-assembled guest that loops over `syscall` (then `int3`); after each exit \
            the host only resumes it. Prints µs per round trip: the median and mean over the \
            timed batches, after one untimed warm-up batch. Compare against it, not absolute times.
            """)

    @Option(help: "Round trips per timed batch.")
    var iterations = 10_000

    @Option(help: "Timed batches (after one warm-up batch).")
    var batches = 5

    @Flag(help: "Print one JSON object instead of text.")
    var json = false

    func validate() throws {
        guard iterations > 0, iterations <= Int(Int32.max) else { throw ValidationError("--iterations must be between 1 and \(Int32.max)") }
        guard batches > 0 else { throw ValidationError("--batches must be positive") }
    }

    func run() throws {
        let result: ExitProbe.Result
        do { result = try ExitProbe.measure(iterations: iterations, batches: batches) } catch { fail("bench-exit: \(error)") }
        if json {
            print(Self.json(result, iterations: iterations, batches: batches))
            return
        }
        print("host: \(result.summary)")
        for cost in [result.syscall, result.exception] {
            print("\(cost.kind) round trip: median \(Self.fixed(cost.median)) µs, mean \(Self.fixed(cost.mean)) µs, "
                  + "min \(Self.fixed(cost.min)) µs, max \(Self.fixed(cost.max)) µs "
                  + "(\(batches) batches of \(iterations))")
        }
        print("exception/syscall: \(Self.fixed(result.exception.median / result.syscall.median, digits: 2))")
        if result.interruptions > 0 { print("note: \(result.interruptions) interrupted KVM_RUN calls were retried") }
    }

    static func fixed(_ v: Double, digits: Int = 2) -> String {
        guard v.isFinite else { return "null" }
        var buf = [CChar](repeating: 0, count: 64)
        _ = withVaList([digits, v]) { vsnprintf(&buf, buf.count, "%.*f", $0) }
        return String(cString: buf)
    }

    static func json(_ r: ExitProbe.Result, iterations: Int, batches: Int) -> String {
        func cost(_ c: ExitProbe.Cost) -> String {
            let list = c.batchMicros.map { fixed($0, digits: 3) }.joined(separator: ", ")
            return "{\"median_us\": \(fixed(c.median, digits: 3)), \"mean_us\": \(fixed(c.mean, digits: 3)), "
                + "\"min_us\": \(fixed(c.min, digits: 3)), \"max_us\": \(fixed(c.max, digits: 3)), \"batches_us\": [\(list)]}"
        }
        return "{\"host\": \"\(r.summary)\", \"backend\": \"\(r.backend.rawValue)\", "
            + "\"iterations\": \(iterations), \"batches\": \(batches), "
            + "\"syscall\": \(cost(r.syscall)), \"exception\": \(cost(r.exception)), "
            + "\"interruptions\": \(r.interruptions)}"
    }
}
