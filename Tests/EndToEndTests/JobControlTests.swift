import Foundation
import Testing

/// A program that stops itself with nobody in the recording to continue
/// it: detrec stops on the host as the program would have (a shell sees
/// the job stop), and the SIGCONT that resumes detrec reaches the
/// program; replay runs through without stopping.
@Suite(.serialized) struct JobControlTests {
    let dir = Harness.temporaryDirectory()

    /// The state letter of /proc/PID/stat (R, S, T, ...).
    func state(_ pid: pid_t) -> Character? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return nil }
        return stat[close...].dropFirst(2).first
    }

    @Test func selfStopStopsTheRecordingUntilSIGCONT() throws {
        let exe = try Harness.compile(#"""
            #include <signal.h>
            #include <stdio.h>
            #include <string.h>
            static volatile int conts;
            static void on(int s) { (void)s; conts++; }
            int main(void) {
              sigset_t none; sigemptyset(&none); sigprocmask(SIG_SETMASK, &none, 0);
              struct sigaction sa; memset(&sa, 0, sizeof sa); sa.sa_handler = on; sigaction(SIGCONT, &sa, 0);
              printf("before\n"); fflush(stdout);
              raise(SIGSTOP);
              printf("after, SIGCONT handled %d\n", conts);
              return 0;
            }
            """#, name: "self_stop", in: dir)
        let trace = dir.appendingPathComponent("self_stop.trace")
        let child = try spawn([Harness.detrec, "record", "-q", "-o", trace.path, "--", exe], in: Harness.scratch.path)
        let stopped = child.waitUntil { state(child.pid) == "T" }
        #expect(stopped, "detrec did not stop: \(child.stdoutSoFar)")
        #expect(child.stdoutSoFar == "before\n")
        child.signal(SIGCONT)
        let rec = child.wait()
        #expect(rec.status == 0, "\(rec.stderr)")
        #expect(rec.stdout == "before\nafter, SIGCONT handled 1\n")

        let rep = try Harness.replay(trace)
        #expect(rep.status == 0, "\(rep.stderr)")
        #expect(rep.stdout == rec.stdout)
        let events = try Harness.dumpJSON(trace)
        #expect(events.contains { $0["kind"] as? String == "signal" && ($0["signal"] as? NSNumber)?.intValue == 18 })
    }
}
