import Foundation
import Glibc
import Testing

/// A program that forks a child which execs the program again: the
/// processes `detrec replay -p` / `-f` choose between.
struct ForkExecFixture: @unchecked Sendable {
    let executable: String
    let trace: String
    let detrec: String
    /// The recorded child's pid, as the program printed it.
    let child: Int32

    static let source = """
        #include <stdio.h>
        #include <stdlib.h>
        #include <sys/wait.h>
        #include <unistd.h>
        __attribute__((noinline)) int mark(int y) { return y * 3; }
        __attribute__((noinline)) void before_exec(int z) { (void)z; }
        int main(int argc, char **argv) {
          if (argc > 1) {
            int r = mark(atoi(argv[1]));
            printf("exec'd child: %d\\n", r);
            return 0;
          }
          pid_t pid = fork();
          if (pid == 0) {
            before_exec(5);
            execl(argv[0], argv[0], "7", (char *)0);
            _exit(127);
          }
          printf("child=%d\\n", (int)pid);
          fflush(stdout);
          int status;
          waitpid(pid, &status, 0);
          return WEXITSTATUS(status);
        }
        """

    static let shared: Result<ForkExecFixture, Fixture.FixtureError> = Result { try ForkExecFixture() }
        .mapError { Fixture.FixtureError("\($0)") }

    private init() throws {
        let base = try Fixture.shared.get()
        detrec = base.detrec
        let c = base.directory + "/forkexec.c"
        try ForkExecFixture.source.write(toFile: c, atomically: true, encoding: .utf8)
        executable = base.directory + "/forkexec"
        trace = base.directory + "/forkexec-trace"
        let cc = try run("/usr/bin/env", ["gcc", "-static", "-O0", "-g", "-o", executable, c])
        guard cc.status == 0 else { throw Fixture.FixtureError("gcc failed: \(cc.output)") }
        let rec = try run(detrec, ["record", "-q", "-o", trace, "--", executable])
        guard rec.status == 0, let r = rec.output.range(of: "child="),
              let pid = Int32(rec.output[r.upperBound...].prefix { $0.isNumber }) else {
            throw Fixture.FixtureError("recording failed: \(rec.output)")
        }
        child = pid
    }

    func gdb(_ commands: [String], choose: [String]) throws -> (output: String, status: Int32?) {
        let stub = try StubProcess(detrec: detrec, trace: trace, extra: choose)
        let out = try run("/usr/bin/env", ["gdb", "-nx", "-batch", "-ex", "target remote 127.0.0.1:\(stub.port)"] +
                          (["set pagination off", "set confirm off", "set remotetimeout 120"] + commands).flatMap { ["-ex", $0] } + [executable]).output
        return (out, stub.wait())
    }
}

@Suite(.serialized) struct ProcessChoiceTests {
    func fixture() throws -> ForkExecFixture { try ForkExecFixture.shared.get() }

    @Test func onProcessDebugsTheChildAfterItsExec() throws {
        let f = try fixture()
        let (out, status) = try f.gdb(["break mark", "continue", "print y", "info inferiors", "finish", "continue"],
                                      choose: ["-p", String(f.child)])
        #expect(out.contains("Breakpoint 1, mark (y=7)"), "\(out)")
        #expect(ReverseExecutionTests.values(out).first == "7", "\(out)")
        #expect(out.contains("process \(f.child)"), "\(out)")
        #expect(out.contains("Value returned is $2 = 21"), "\(out)")
        #expect(status == 0, "\(out)")
    }

    @Test func onForkDebugsTheChildBeforeItsExec() throws {
        let f = try fixture()
        let (out, _) = try f.gdb(["break before_exec", "continue", "print z", "info inferiors"], choose: ["-f", String(f.child)])
        #expect(out.contains("Breakpoint 1, before_exec (z=5)"), "\(out)")
        #expect(out.contains("process \(f.child)"), "\(out)")
    }

    @Test func aProcessTheRecordingNeverStartsIsAnError() throws {
        let f = try fixture()
        let r = try run(f.detrec, ["replay", "--gdb-listen", "127.0.0.1:0", "-p", "999999", f.trace])
        #expect(r.status == 2, "\(r.output)")
        #expect(r.output.contains("process 999999 never starts in this recording"), "\(r.output)")
        let plain = try run(f.detrec, ["replay", "-p", String(f.child), f.trace])
        #expect(plain.status == 2 && plain.output.contains("for a gdb session"), "\(plain.output)")
    }
}
