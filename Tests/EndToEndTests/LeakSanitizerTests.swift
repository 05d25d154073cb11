import Foundation
import Testing

/// LeakSanitizer at exit (gcc's -fsanitize=address turns it on): it
/// clones a tracer with CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_UNTRACED that
/// lists the threads in /proc/PID/task, attaches to each, waits for its
/// SIGSTOP with __WALL, reads its registers, scans the shared memory and
/// detaches; the process then prints the report. Record and replay must
/// print the native report (modulo pids and addresses, which native ASLR
/// moves) and exit as natively. Symbolizing is off: the report then names
/// module+offset, and a debug build spends half its time in it otherwise.
@Suite(.serialized) struct LeakSanitizerTests {
    let dir = Harness.temporaryDirectory()
    static let environment = ["ASAN_OPTIONS": "symbolize=0", "LSAN_OPTIONS": "symbolize=0"]

    /// Threads parked in pthread_cond_wait and one computing without
    /// syscalls when main returns: each is stopped, its stack and
    /// registers scanned (their blocks are reachable), and two leaks of
    /// main's are reported.
    @Test func addressSanitizerReportsTheLeaksOfAThreadedProgram() throws {
        let exe = try Harness.compile(#"""
            #include <pthread.h>
            #include <sched.h>
            #include <stdio.h>
            #include <stdlib.h>
            static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
            static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
            static int started, stop;
            static void *waiter(void *a) {
              void *volatile keep = malloc(40);   /* reachable from this stack only */
              pthread_mutex_lock(&m);
              started++;
              pthread_cond_broadcast(&cv);
              while (!stop) pthread_cond_wait(&cv, &m);
              pthread_mutex_unlock(&m);
              return keep;
            }
            static void *spinner(void *a) {
              void *volatile keep = malloc(24);
              pthread_mutex_lock(&m);
              started++;
              pthread_cond_broadcast(&cv);
              pthread_mutex_unlock(&m);
              for (volatile unsigned long n = 0;; n++) if ((n & 0xfffff) == 0) sched_yield();
              return keep;
            }
            int main(void) {
              pthread_t t[3];
              pthread_create(&t[0], 0, waiter, 0);
              pthread_create(&t[1], 0, waiter, 0);
              pthread_create(&t[2], 0, spinner, 0);
              pthread_mutex_lock(&m);
              while (started < 3) pthread_cond_wait(&cv, &m);
              pthread_mutex_unlock(&m);
              void *volatile p = malloc(123); p = 0;
              char *volatile q = malloc(55); q = 0;
              printf("threads started\n");
              fflush(stdout);
              return 0;
            }
            """#, name: "asanleak", flags: ["-fsanitize=address", "-g", "-O0"], in: dir)
        let report = try matchesNative([exe], status: 1)
        #expect(report.contains("Direct leak of 123 byte(s) in 1 object(s) allocated from:"), "\(report)")
        #expect(report.contains("Direct leak of 55 byte(s) in 1 object(s) allocated from:"))
        #expect(report.contains("SUMMARY: AddressSanitizer: 178 byte(s) leaked in 2 allocation(s)."))
    }

    /// -fsanitize=leak alone (liblsan): a leak is exit status 23 with the
    /// report; the same program freeing its block exits 0 and prints none.
    @Test func leakSanitizerAloneReportsALeakAndPassesWithout() throws {
        let exe = try Harness.compile(#"""
            #include <stdio.h>
            #include <stdlib.h>
            int main(int argc, char **argv) {
              (void)argv;
              char *volatile p = malloc(77);
              if (argc > 1) free(p);
              p = 0;
              puts("done");
              return 0;
            }
            """#, name: "lsanleak", flags: ["-fsanitize=leak", "-g", "-O0"], in: dir)
        let report = try matchesNative([exe], status: 23)
        #expect(report.contains("Direct leak of 77 byte(s) in 1 object(s) allocated from:"), "\(report)")
        #expect(report.contains("SUMMARY: LeakSanitizer: 77 byte(s) leaked in 1 allocation(s)."))
        let clean = try matchesNative([exe, "free"], status: 0)
        #expect(!clean.contains("LeakSanitizer"), "\(clean)")
    }

    /// Pids and addresses out of a report (native runs move both).
    static func normalized(_ s: String) -> String {
        s.replacingOccurrences(of: "==[0-9]+==", with: "==PID==", options: .regularExpression)
            .replacingOccurrences(of: "0x[0-9a-f]+", with: "0x…", options: .regularExpression)
    }

    /// Runs `program` natively, records it and replays it twice: the same
    /// status and stdout everywhere, the recording's stderr the native one
    /// modulo pids and addresses, each replay's stderr the recording's.
    /// Returns the recorded stderr.
    private func matchesNative(_ program: [String], status: Int32,
                               sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        let native = try Harness.run(program, environment: Self.environment)
        #expect(native.status == status, "native: \(native.stderr)", sourceLocation: sourceLocation)
        let trace = dir.appendingPathComponent("trace-\(UUID().uuidString.prefix(8))")
        let rec = try Harness.record(program, trace: trace, environment: Self.environment)
        #expect(rec.status == native.status, "recorded: \(rec.stderr)", sourceLocation: sourceLocation)
        #expect(rec.stdout == native.stdout, sourceLocation: sourceLocation)
        #expect(Self.normalized(rec.stderr) == Self.normalized(native.stderr),
                "native:\n\(native.stderr)\nrecorded:\n\(rec.stderr)", sourceLocation: sourceLocation)
        for i in 0..<2 {
            let rep = try Harness.replay(trace)
            #expect(rep.status == rec.status, "replay \(i): \(rep.stderr)", sourceLocation: sourceLocation)
            #expect(rep.stdout == rec.stdout, "replay \(i)", sourceLocation: sourceLocation)
            #expect(rep.stderr == rec.stderr, "replay \(i):\n\(rep.stderr)", sourceLocation: sourceLocation)
        }
        return rec.stderr
    }
}
