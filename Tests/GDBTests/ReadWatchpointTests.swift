import Foundation
import Glibc
import Testing

/// A program for watchpoints by page protection: reads of a global, a
/// write in another thread, a stack variable, a page the program itself
/// makes read-only (its SIGSEGV handler makes it writable again) beside a
/// PROT_NONE page, and a `read` into a watched buffer.
struct WatchFixture: @unchecked Sendable {
    let executable: String
    let trace: String
    let detrec: String

    static let source = """
        #include <pthread.h>
        #include <signal.h>
        #include <sys/mman.h>
        #include <unistd.h>
        int readme = 5;
        int shared;
        volatile int sink;
        char buf[8];
        char *page;
        volatile int faults;
        static void on_segv(int s) {
          faults++;
          mprotect(page, 4096, PROT_READ | PROT_WRITE);
        }
        __attribute__((noinline)) int reader(void) {
          return readme + 1; /* the read */
        }
        static void *worker(void *p) {
          shared = 7; /* the thread's write */
          return p;
        }
        int main(void) {
          int local = 1;
          signal(SIGSEGV, on_segv);
          page = mmap(0, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
          mprotect(page + 4096, 4096, PROT_NONE);
          pthread_t t;
          pthread_create(&t, 0, worker, 0);
          pthread_join(t, 0);
          sink = reader();
          local = sink * 2; /* the stack write */
          mprotect(page, 4096, PROT_READ); /* before the guarded write */
          page[0] = 9; /* the guarded write */
          int fds[2];
          pipe(fds);
          write(fds[1], "hi", 2);
          read(fds[0], buf, 2); /* the syscall's write */
          readme = 8; /* the plain write */
          sink = reader();
          write(1, "ok\\n", 3);
          return local == 12 && faults == 1 && buf[0] == 'h' && sink == 9 ? 0 : 1;
        }
        """

    /// The 1-based line of the source holding `marker`.
    static func line(_ marker: String) -> Int {
        (source.split(separator: "\n", omittingEmptySubsequences: false).firstIndex { $0.contains(marker) } ?? -1) + 1
    }

    static let shared: Result<WatchFixture, Fixture.FixtureError> = Result { try WatchFixture() }
        .mapError { Fixture.FixtureError("\($0)") }

    private init() throws {
        let base = try Fixture.shared.get()
        detrec = base.detrec
        let c = base.directory + "/watch.c"
        try WatchFixture.source.write(toFile: c, atomically: true, encoding: .utf8)
        executable = base.directory + "/watch"
        trace = base.directory + "/watch-trace"
        let cc = try run("/usr/bin/env", ["gcc", "-static", "-O0", "-g", "-pthread", "-o", executable, c])
        guard cc.status == 0 else { throw Fixture.FixtureError("gcc failed: \(cc.output)") }
        let rec = try run(detrec, ["record", "-q", "-o", trace, "--", executable])
        guard rec.status == 0, rec.output.contains("ok") else { throw Fixture.FixtureError("recording failed: \(rec.output)") }
    }

    /// gdb in batch mode on a command file against a fresh stub.
    func gdb(_ commands: [String]) throws -> String {
        let stub = try StubProcess(detrec: detrec, trace: trace)
        let script = NSTemporaryDirectory() + "detrec-watch-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).gdb"
        try (["set pagination off", "set confirm off", "set remotetimeout 120"] + commands).joined(separator: "\n").appending("\n")
            .write(toFile: script, atomically: true, encoding: .utf8)
        defer { unlink(script) }
        let out = try run("/usr/bin/env", ["gdb", "-nx", "-batch", "-ex", "target remote 127.0.0.1:\(stub.port)",
                                           "-x", script, executable]).output
        _ = stub.wait()
        return out
    }
}

@Suite(.serialized) struct ReadWatchpointTests {
    func fixture() throws -> WatchFixture { try WatchFixture.shared.get() }

    @Test func rwatchStopsAtEachReadNotAtTheWrite() throws {
        let out = try fixture().gdb(["rwatch readme", "continue", "info symbol $pc", "continue", "continue"])
        // As gdb shows it natively: the value read, in reader, at the reading line; the
        // write of 8 is not a read; then the second read.
        #expect(out.contains("Value = 5"), "\(out)")
        #expect(out.contains("reader +"), "\(out)")
        #expect(out.contains("\(WatchFixture.line("the read"))\t  return readme + 1;"), "\(out)")
        #expect(out.contains("Value = 8"), "\(out)")
        #expect(!out.contains("Old value = 5"), "\(out)")
        #expect(out.contains("exited normally"), "\(out)")
    }

    @Test func awatchStopsAtReadsAndWrites() throws {
        let out = try fixture().gdb(["awatch readme", "continue", "continue", "continue", "continue"])
        let value5 = out.range(of: "Value = 5"), write = out.range(of: "Old value = 5"), value8 = out.range(of: "Value = 8")
        #expect(value5 != nil && write != nil && value8 != nil, "\(out)")
        if let a = value5, let b = write, let c = value8 { #expect(a.lowerBound < b.lowerBound && b.lowerBound < c.lowerBound, "\(out)") }
        #expect(out.contains("New value = 8"), "\(out)")
        #expect(out.contains("\(WatchFixture.line("the plain write"))\t  readme = 8;") || out.contains("reader"), "\(out)")
        #expect(out.contains("exited normally"), "\(out)")
    }

    @Test func watchSeesTheOtherThreadsWriteAndTheSyscallsWrite() throws {
        let out = try fixture().gdb(["watch shared", "watch buf[0]", "continue", "info symbol $pc", "continue", "continue"])
        #expect(out.contains("Old value = 0") && out.contains("New value = 7"), "\(out)")
        #expect(out.contains("worker +"), "\(out)")
        // read() wrote buf: reported right after the syscall.
        #expect(out.contains("New value = 104 'h'"), "\(out)")
        #expect(out.contains("exited normally"), "\(out)")
    }

    @Test func watchAStackVariableAndAPageTheProgramProtects() throws {
        // No breakpoint right after a write: gdb would show only the breakpoint.
        let out = try fixture().gdb(["break \(WatchFixture.line("int local = 1"))", "continue", "next", "watch local", "continue",
                                     "watch page[0]", "continue", "print faults", "print local", "delete", "continue"])
        // The stack write, then the write the program's own SIGSEGV made it
        // retry (its page read-only, a PROT_NONE page beside it): its
        // handler ran once, as recorded.
        #expect(out.contains("Old value = 1") && out.contains("New value = 12"), "\(out)")
        #expect(out.contains("Old value = 0 '\\000'") && out.contains("New value = 9 '\\t'"), "\(out)")
        #expect(ReverseExecutionTests.values(out).prefix(2) == ["1", "12"], "\(out)")
        #expect(out.contains("exited normally"), "\(out)")
    }

    @Test func reverseContinueToARead() throws {
        let out = try fixture().gdb(["break \(WatchFixture.line("write(1, \"ok"))", "continue", "rwatch readme", "reverse-continue",
                                     "info symbol $pc", "reverse-continue", "reverse-continue", "delete", "continue"])
        // Back from the end to the second read (this slice), then to the
        // first (slices before: found by the scan with the page protected),
        // each before the reading instruction; then the start.
        let second = out.range(of: "Value = 8"), first = out.range(of: "Value = 5")
        #expect(second != nil && first != nil, "\(out)")
        if let a = second, let b = first { #expect(a.lowerBound < b.lowerBound, "\(out)") }
        #expect(out.contains("reader +"), "\(out)")
        #expect(out.contains("No more reverse-execution history."), "\(out)")
        #expect(out.contains("exited normally"), "\(out)")
    }

    @Test func reverseStepiFromAReadStopAndBack() throws {
        let out = try fixture().gdb(["rwatch readme", "continue", "info registers rip", "reverse-stepi", "info registers rip",
                                     "stepi", "info registers rip", "reverse-continue", "info registers rip", "delete", "continue"])
        // The stop is after the read; one back is the reading instruction;
        // stepi runs it again (a hit, as natively); reverse-continue goes
        // before it again.
        let rips = out.split(separator: "\n").filter { $0.hasPrefix("rip") }.map { $0.split(separator: " ", omittingEmptySubsequences: true)[1] }
        #expect(rips.count == 4 && rips[0] != rips[1] && rips[0] == rips[2] && rips[1] == rips[3], "\(out)")
        #expect(out.components(separatedBy: "Value = 5").count - 1 == 3, "\(out)")
        #expect(out.contains("exited normally"), "\(out)")
    }
}
