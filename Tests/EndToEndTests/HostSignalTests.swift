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
        static void on(int s) { got = s; write(1, "handled\n", 8); }
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
        // The program waits in read(2) once detrec sleeps in its host poll.
        child.waitUntil { child.stdoutSoFar.contains("ready") && child.sleepsInHostPoll }
        child.signal(signal)
        if let input {
            // A handler's read goes on (SA_RESTART) once the handler has run
            // and detrec waits again; an ignored signal shows nothing, and
            // the input comes once the signal has been delivered to detrec.
            if how != "ignore" { child.waitUntil { child.stdoutSoFar.contains("handled") && child.sleepsInHostPoll } }
            child.waitUntil { !Self.signalPending(child.pid) && child.sleepsInHostPoll }
            _ = input.withCString { write(pipeFDs[1], $0, strlen($0)) }
        }
        let r = child.wait()
        return (Harness.Run(status: r.status, stdout: r.stdout, stderr: r.stderr), trace)
    }

    /// Whether a signal waits to be delivered to process `pid` (SigPnd or ShdPnd).
    static func signalPending(_ pid: pid_t) -> Bool {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return false }
        return status.split(separator: "\n").contains { line in
            (line.hasPrefix("SigPnd:") || line.hasPrefix("ShdPnd:")) && line.split(separator: "\t").last.map { $0.contains { $0 != "0" } } == true
        }
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
        #expect(rec.stdout == "ready\nhandled\nread -1 Interrupted system call got 2\n")
        try replaysTheSame(rec, trace)
    }

    @Test func killRunsTheHandlerAndTheReadRestartsUnderSA_RESTART() throws {
        let (rec, trace) = try record("restart", signal: SIGTERM, input: "hi\n")
        #expect(rec.status == 0, "\(rec.stderr)")
        #expect(rec.stdout == "ready\nhandled\nread 3  got 15\n")
        try replaysTheSame(rec, trace)
    }

    @Test func anIgnoredSignalChangesNothing() throws {
        let (rec, trace) = try record("ignore", signal: SIGINT, input: "hi\n")
        #expect(rec.status == 0, "\(rec.stderr)")
        #expect(rec.stdout == "ready\nread 3  got 0\n")
        try replaysTheSame(rec, trace)
    }

    /// A sleep (or poll) that an ignored signal to detrec cuts short on the
    /// host goes on with the time it had left, as on Linux, where the
    /// signal would not have interrupted it: 2 s in all, however late the
    /// signal comes. (Sent 1.5 s in, a restart with the whole timeout would
    /// take 3.5 s; the bound of 3.2 s leaves 1.2 s for a slow host.)
    static let waiter = #"""
        #include <poll.h>
        #include <signal.h>
        #include <stdio.h>
        #include <string.h>
        #include <time.h>
        static long long now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1000000000LL + t.tv_nsec; }
        int main(int argc, char **argv) {
          signal(SIGINT, SIG_IGN);
          long long t0 = now();
          printf("ready %lld\n", t0); fflush(stdout);
          int r;
          if (!strcmp(argv[1], "sleep")) { struct timespec ts = {2, 0}, rem = {0, 0}; r = nanosleep(&ts, &rem); }
          else r = poll(0, 0, 2000);
          long long took = now() - t0;
          printf("result %d at least 2 s %d within 3.2 s %d\n", r, took >= 2000000000LL, took < 3200000000LL);
          return 0;
        }
        """#

    func waitsItsTimeDespite(_ how: String) throws {
        let exe = try Harness.compile(Self.waiter, name: "ignored_waiter", in: dir)
        let trace = dir.appendingPathComponent("ignored-\(how)")
        let child = try spawn([Harness.detrec, "record", "-q", "-o", trace.path, "--", exe, how], stdin: .devNull,
                              in: Harness.scratch.path)
        child.waitUntil { child.stdoutSoFar.contains("ready") && child.sleepsInHostPoll }
        // 1.5 s after the wait began (by the program's clock, the host's
        // monotonic one), or later on a slow host.
        let started = child.stdoutSoFar.split(separator: "\n").first.flatMap { Int64($0.split(separator: " ").last ?? "") } ?? 0
        var t = timespec()
        repeat {
            usleep(20_000)
            clock_gettime(CLOCK_MONOTONIC, &t)
        } while Int64(t.tv_sec) * 1_000_000_000 + Int64(t.tv_nsec) < started + 1_500_000_000
        child.signal(SIGINT)
        let r = child.wait()
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.hasSuffix("result 0 at least 2 s 1 within 3.2 s 1\n"), "\(r.stdout)")
        let rec = Harness.Run(status: r.status, stdout: r.stdout, stderr: r.stderr)
        try replaysTheSame(rec, trace)
    }

    @Test func anIgnoredSignalLetsASleepGoOnWithTheTimeLeft() throws { try waitsItsTimeDespite("sleep") }

    @Test func anIgnoredSignalLetsAPollGoOnWithTheTimeLeft() throws { try waitsItsTimeDespite("poll") }

    /// Other programs signal a daemon through its pid file, which names
    /// detrec when it records: `nginx -s reopen` is SIGUSR1, a terminal's
    /// resize SIGWINCH. They were not passed on, so SIGUSR1 killed detrec
    /// itself (no end in the trace, nothing for a replay to follow).
    static let daemon = #"""
        #include <errno.h>
        #include <signal.h>
        #include <stdio.h>
        #include <string.h>
        #include <unistd.h>
        static volatile int usr1, winch;
        static void on(int s) {
          if (s == SIGUSR1) { usr1++; write(1, "usr1\n", 5); } else { winch++; write(1, "winch\n", 6); }
        }
        int main(void) {
          struct sigaction sa; memset(&sa, 0, sizeof sa);
          sa.sa_handler = on; sa.sa_flags = SA_RESTART;
          sigaction(SIGUSR1, &sa, 0); sigaction(SIGWINCH, &sa, 0);
          printf("ready\n"); fflush(stdout);
          char b[8];
          ssize_t n = read(0, b, sizeof b);
          printf("read %zd usr1 %d winch %d\n", n, usr1, winch);
          printf("waiting\n"); fflush(stdout);
          n = read(0, b, sizeof b);   /* SIGUSR2, at its default, ends the program here */
          printf("not reached %zd\n", n);
          return 0;
        }
        """#

    @Test func aDaemonsSignalsReachItsHandlersAndAnUnhandledOneEndsIt() throws {
        let exe = try Harness.compile(Self.daemon, name: "host_signal_daemon", in: dir)
        let trace = dir.appendingPathComponent("host-daemon")
        var pipeFDs: [Int32] = [0, 0]
        pipe(&pipeFDs)
        defer { close(pipeFDs[0]); close(pipeFDs[1]) }
        let child = try spawn([Harness.detrec, "record", "-q", "-o", trace.path, "--", exe], stdin: .fd(pipeFDs[0]),
                              in: Harness.scratch.path)
        child.waitUntil { child.stdoutSoFar.contains("ready") && child.sleepsInHostPoll }
        child.signal(SIGUSR1)
        child.waitUntil { child.stdoutSoFar.contains("usr1") && child.sleepsInHostPoll }
        child.signal(SIGWINCH)
        child.waitUntil { child.stdoutSoFar.contains("winch") && child.sleepsInHostPoll }
        _ = "hi\n".withCString { write(pipeFDs[1], $0, strlen($0)) }
        child.waitUntil { child.stdoutSoFar.contains("waiting") && child.sleepsInHostPoll }
        child.signal(SIGUSR2)
        let r = child.wait()
        // Killed by SIGUSR2 as the program would be, the trace ending there.
        #expect(r.status == 128 + SIGUSR2, "\(r.stderr)")
        #expect(r.stdout == "ready\nusr1\nwinch\nread 3 usr1 1 winch 1\nwaiting\n")
        try replaysTheSame(Harness.Run(status: r.status, stdout: r.stdout, stderr: r.stderr), trace)
    }
}
