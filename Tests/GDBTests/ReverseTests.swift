import Foundation
import Glibc
import Testing

/// A program with a second thread that writes a global, a syscall and a
/// signal handler between two calls of `twice`, recorded once for the
/// reverse-execution tests.
struct ReverseFixture: @unchecked Sendable {
    let executable: String
    let trace: String
    let detrec: String

    static let source = """
        #include <pthread.h>
        #include <signal.h>
        #include <unistd.h>
        int counter;
        volatile int handled;
        static void on_usr1(int s) {
          handled = handled + s;
        }
        __attribute__((noinline)) int twice(int v) {
          int r = v * 2;
          return r;
        }
        static void *worker(void *p) {
          counter = 21;
          return p;
        }
        int main(void) {
          signal(SIGUSR1, on_usr1); sigset_t u; sigemptyset(&u); sigaddset(&u, SIGUSR1); sigprocmask(SIG_UNBLOCK, &u, 0);
          pthread_t t;
          pthread_create(&t, 0, worker, 0);
          pthread_join(t, 0);
          int a = twice(counter);
          getppid();
          raise(SIGUSR1);
          int b = twice(a);
          write(1, "ok\\n", 3);
          return b == 84 && handled == SIGUSR1 ? 0 : 1;
        }
        """

    /// Source lines (1-based) the tests name.
    static let workerWrite = 14, getppidLine = 23, raiseLine = 24, secondCall = 25

    static let shared: Result<ReverseFixture, Fixture.FixtureError> = Result { try ReverseFixture() }
        .mapError { Fixture.FixtureError("\($0)") }

    private init() throws {
        let base = try Fixture.shared.get()
        detrec = base.detrec
        let c = base.directory + "/reverse.c"
        try ReverseFixture.source.write(toFile: c, atomically: true, encoding: .utf8)
        executable = base.directory + "/reverse"
        trace = base.directory + "/reverse-trace"
        let cc = try run("/usr/bin/env", ["gcc", "-static", "-O0", "-g", "-pthread", "-o", executable, c])
        guard cc.status == 0 else { throw Fixture.FixtureError("gcc failed: \(cc.output)") }
        let rec = try run(detrec, ["record", "-q", "-o", trace, "--", executable])
        guard rec.status == 0, rec.output.contains("ok") else { throw Fixture.FixtureError("recording failed: \(rec.output)") }
    }

    /// Runs gdb in batch mode on a command file against a fresh stub;
    /// gdb's output, and the stub's exit status.
    func gdb(_ commands: [String], extended: Bool = false) throws -> (output: String, status: Int32?) {
        let stub = try StubProcess(detrec: detrec, trace: trace)
        let script = NSTemporaryDirectory() + "detrec-reverse-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).gdb"
        // `run` waits for a fresh replay to be built: more than gdb's
        // default 2 s on a loaded machine.
        try (["set pagination off", "set confirm off", "set remotetimeout 120"] + commands).joined(separator: "\n").appending("\n")
            .write(toFile: script, atomically: true, encoding: .utf8)
        defer { unlink(script) }
        let target = extended ? "extended-remote" : "remote"
        let out = try run("/usr/bin/env", ["gdb", "-nx", "-batch", "-ex", "target \(target) 127.0.0.1:\(stub.port)",
                                           "-x", script, executable]).output
        if extended, stub.process.isRunning { stub.process.terminate() }
        return (out, stub.wait())
    }
}

@Suite(.serialized) struct ReverseExecutionTests {
    func fixture() throws -> ReverseFixture { try ReverseFixture.shared.get() }

    /// The value in the last `$N = value` gdb printed after `marker`.
    static func values(_ out: String) -> [String] {
        out.split(separator: "\n").compactMap { line in
            guard line.hasPrefix("$"), let eq = line.range(of: " = ") else { return nil }
            return String(line[eq.upperBound...])
        }
    }

    @Test func reverseContinueFindsTheWriteInAnotherThread() throws {
        let f = try fixture()
        let (out, _) = try f.gdb(["break twice", "continue", "print counter", "watch counter", "reverse-continue",
                                  "print counter", "info symbol $pc"])
        // Back from main's first call of twice to the worker's store: the
        // value before the write, in the worker thread, at the writing line.
        #expect(out.contains("Old value = 21"), "\(out)")
        #expect(out.contains("New value = 0"), "\(out)")
        #expect(out.contains("worker (p=0x0) at "), "\(out)")
        #expect(out.contains("\(ReverseFixture.workerWrite)\t  counter = 21;"), "\(out)")
        #expect(out.contains("in section .text") && out.contains("worker +"), "\(out)")
        #expect(Array(ReverseExecutionTests.values(out).prefix(2)) == ["21", "0"], "\(out)")
    }

    @Test func watchFromTheStartStopsAfterTheWriteInAnotherThread() throws {
        let f = try fixture()
        // Slices run at full speed; the one that writes is rolled back to
        // its checkpoint and single-stepped to the store.
        let (out, _) = try f.gdb(["watch counter", "continue", "info symbol $pc", "continue"])
        #expect(out.contains("Old value = 0") && out.contains("New value = 21"), "\(out)")
        #expect(out.contains("worker (p=0x0) at "), "\(out)")
        #expect(out.contains("worker +"), "\(out)")
        #expect(out.contains("exited normally"), "\(out)")
    }

    @Test func reverseStepCrossesASyscallAndASignalHandler() throws {
        let f = try fixture()
        let (out, _) = try f.gdb(["break \(ReverseFixture.secondCall)", "continue", "print handled",
                                  "reverse-step", "print handled", "reverse-step", "print handled",
                                  "info registers rip", "reverse-stepi", "info registers rip", "stepi", "info registers rip",
                                  "delete", "continue"])
        // 25 -> 24 undoes the handler (raise's tgkill and the signal
        // frame); 24 -> 23 undoes getppid.
        #expect(out.contains("\(ReverseFixture.raiseLine)\t  raise(SIGUSR1);"), "\(out)")
        #expect(out.contains("\(ReverseFixture.getppidLine)\t  getppid();"), "\(out)")
        #expect(Array(ReverseExecutionTests.values(out).prefix(3)) == ["10", "0", "0"], "\(out)")
        #expect(out.contains("exited normally"), "\(out)")
        // reverse-stepi goes to another instruction; stepi comes back.
        let rips = out.split(separator: "\n").filter { $0.hasPrefix("rip") }.map { $0.split(separator: " ", omittingEmptySubsequences: true)[1] }
        #expect(rips.count == 3 && rips[0] != rips[1] && rips[0] == rips[2], "\(out)")
    }

    @Test func reverseFinishAndTheStartOfTheRecording() throws {
        let f = try fixture()
        let (out, _) = try f.gdb(["break twice", "continue", "continue", "print v", "reverse-finish", "print a",
                                  "reverse-continue", "print v", "reverse-continue", "info registers rip",
                                  "delete", "continue"])
        // reverse-finish: back in main, at the call of line 25 (batch gdb
        // does not print its "Run back to call of" line).
        #expect(out.contains(" in main () at ") && out.contains("\(ReverseFixture.secondCall)\t  int b = twice(a);"), "\(out)")
        // Back in main before the second call: a is 42; then the first hit; then the start.
        #expect(Array(ReverseExecutionTests.values(out).prefix(3)) == ["42", "42", "21"], "\(out)")
        #expect(out.contains("No more reverse-execution history."), "\(out)")
        #expect(out.contains("_start"), "\(out)")
        #expect(out.contains("exited normally"), "\(out)")
    }

    @Test func reverseFromABreakpointSetInTheMiddleOfASlice() throws {
        let f = try fixture()
        // Breakpoint 2 goes in after the replay ran part of its slice: its
        // earlier executions were not counted, so going back follows gdb's
        // own path (continue to twice, stepi, continue to line 23) again.
        let (out, _) = try f.gdb(["break twice", "continue", "stepi", "break \(ReverseFixture.getppidLine)", "continue",
                                  "monitor position", "info registers rip", "reverse-stepi", "info registers rip",
                                  "stepi", "info registers rip", "reverse-continue", "print v", "reverse-continue"])
        #expect(out.contains("(at least)"), "\(out)")
        let rips = out.split(separator: "\n").filter { $0.hasPrefix("rip") }.map { $0.split(separator: " ", omittingEmptySubsequences: true)[1] }
        #expect(rips.count == 3 && rips[0] != rips[1] && rips[0] == rips[2], "\(out)")
        #expect(out.components(separatedBy: "Breakpoint 1, twice (v=21)").count - 1 == 2, "\(out)")
        #expect(ReverseExecutionTests.values(out).first == "21", "\(out)")
        #expect(out.contains("No more reverse-execution history."), "\(out)")
    }

    @Test func runTwiceRestartsTheReplayNotTheProgram() throws {
        let f = try fixture()
        let (out, _) = try f.gdb(["break twice", "run", "print v", "print handled", "run", "print v",
                                  "delete", "continue", "run"], extended: true)
        let hits = out.components(separatedBy: "Breakpoint 1, twice (v=21)").count - 1
        #expect(hits == 2, "\(out)")
        #expect(Array(ReverseExecutionTests.values(out).prefix(3)) == ["21", "0", "21"], "\(out)")
        // Two runs to the end, both replays: the program's own "ok" never
        // reaches gdb (the stub echoes it on its own stdout), and the pid
        // stays the recorded one.
        #expect(out.components(separatedBy: "exited normally").count - 1 == 2, "\(out)")
        #expect(!out.split(separator: "\n").contains("ok"), "\(out)")
        let pids = Set(out.split(separator: "\n").compactMap { line -> Substring? in
            guard let r = line.range(of: "(process ") else { return nil }
            return line[r.upperBound...].prefix { $0.isNumber }
        })
        #expect(pids.count == 1, "\(out)")
    }
}
