import Foundation
import Testing

/// Signals sent to detrec while it records (Ctrl-C, kill) are the
/// program's: a handler runs (its wait ends with EINTR, or restarts under
/// SA_RESTART), an ignored one changes nothing, and every replay does the
/// same without any signal. (An unhandled one ends the recording:
/// RobustnessTests.)
@Suite(.serialized) struct HostSignalTests {
    let dir = Harness.temporaryDirectory()

    static let program = #"""
        #include <errno.h>
        #include <signal.h>
        #include <stdio.h>
        #include <stdlib.h>
        #include <string.h>
        #include <unistd.h>
        static volatile int got;
        static void on(int s) { got = s; }
        int main(int argc, char **argv) {
          sigset_t none; sigemptyset(&none); sigprocmask(SIG_SETMASK, &none, 0);
          struct sigaction sa; memset(&sa, 0, sizeof sa);
          sa.sa_handler = !strcmp(argv[1], "ignore") ? SIG_IGN : on;
          if (!strcmp(argv[1], "restart")) sa.sa_flags = SA_RESTART;
          sigaction(SIGINT, &sa, 0); sigaction(SIGTERM, &sa, 0);
          printf("ready\n"); fflush(stdout);
          char b[8];
          ssize_t n = read(0, b, sizeof b);
          printf("read %zd %s got %d\n", n, n < 0 ? strerror(errno) : "", got);
          return 0;
        }
        """#

    /// Records `how` with stdin a pipe this test holds, sends `signal` once
    /// the program waits in read(2), then writes `input` (if any).
    func record(_ how: String, signal: Int32, input: String?) throws -> (Harness.Run, URL) {
        let exe = try Harness.compile(Self.program, name: "host_signal", in: dir)
        let trace = dir.appendingPathComponent("host-\(how)")
        var pipeFDs: [Int32] = [0, 0]
        pipe(&pipeFDs)
        defer { close(pipeFDs[0]); close(pipeFDs[1]) }
        let child = try spawn([Harness.detrec, "record", "-q", "-o", trace.path, "--", exe, how], stdin: .fd(pipeFDs[0]),
                              in: Harness.scratch.path)
        child.waitUntil { child.stdoutSoFar.contains("ready") }
        usleep(300_000)   // the program now waits in read(2)
        child.signal(signal)
        if let input {
            usleep(200_000)
            _ = input.withCString { write(pipeFDs[1], $0, strlen($0)) }
        }
        let r = child.wait()
        return (Harness.Run(status: r.status, stdout: r.stdout, stderr: r.stderr), trace)
    }

    func replaysTheSame(_ rec: Harness.Run, _ trace: URL) throws {
        for _ in 0..<2 {
            let rep = try Harness.replay(trace)
            #expect(rep.stdout == rec.stdout)
            #expect(rep.status == rec.status, "\(rep.stderr)")
        }
    }

    @Test func ctrlCRunsTheHandlerAndTheReadFailsWithEINTR() throws {
        let (rec, trace) = try record("handle", signal: SIGINT, input: nil)
        #expect(rec.status == 0, "\(rec.stderr)")
        #expect(rec.stdout == "ready\nread -1 Interrupted system call got 2\n")
        try replaysTheSame(rec, trace)
    }

    @Test func killRunsTheHandlerAndTheReadRestartsUnderSA_RESTART() throws {
        let (rec, trace) = try record("restart", signal: SIGTERM, input: "hi\n")
        #expect(rec.status == 0, "\(rec.stderr)")
        #expect(rec.stdout == "ready\nread 3  got 15\n")
        try replaysTheSame(rec, trace)
    }

    @Test func anIgnoredSignalChangesNothing() throws {
        let (rec, trace) = try record("ignore", signal: SIGINT, input: "hi\n")
        #expect(rec.status == 0, "\(rec.stderr)")
        #expect(rec.stdout == "ready\nread 3  got 0\n")
        try replaysTheSame(rec, trace)
    }
}
