import Foundation
import Testing

/// Threads and timers that need the vCPU while another thread computes
/// without syscalls: the recorder preempts it at a counted hit of one
/// instruction (docs/preemption.md), and every replay stops at that hit.
@Suite(.serialized) struct PreemptionTests {
    let dir = Harness.temporaryDirectory()

    func preemptions(_ trace: URL) throws -> [[String: Any]] {
        try Harness.dumpJSON(trace).filter { $0["kind"] as? String == "preempt" }
    }

    /// The waiter spins on a flag with its counter in memory, so every
    /// iteration has the same registers: only the hit count tells them apart.
    @Test func spinningWaiterIsPreemptedSoTheSetterRuns() throws {
        let exe = try Harness.compile(#"""
            #include <pthread.h>
            #include <stdatomic.h>
            #include <stdio.h>
            static atomic_int flag; static atomic_long spins;
            static void *setter(void *a) { volatile double x = 1; for (int i = 0; i < 200000; i++) x *= 1.0000001;
              atomic_store(&flag, 1); return a; }
            int main(void) { pthread_t t; pthread_create(&t, 0, setter, 0);
              while (!atomic_load(&flag)) atomic_fetch_add(&spins, 1);
              pthread_join(t, 0); printf("spun %s\n", atomic_load(&spins) >= 0 ? "yes" : "no"); return 0; }
            """#, name: "spinwait", in: dir)
        let (rec, trace) = try Harness.roundTrip([exe], in: dir)
        #expect(rec.status == 0)
        #expect(rec.stdout == "spun yes\n")
        #expect(try preemptions(trace).count >= 1)
    }

    /// SIGALRM reaches a loop that makes no syscalls, at the same iteration
    /// in every replay, after the loop really ran.
    @Test func timerSignalLandsInALoopWithoutSyscalls() throws {
        let exe = try Harness.compile(#"""
            #include <signal.h>
            #include <stdio.h>
            #include <sys/time.h>
            static volatile sig_atomic_t fired;
            static void on(int s) { (void)s; fired = 1; }
            int main(void) { signal(SIGALRM, on);
              struct itimerval it = {{0, 0}, {0, 200000}}; setitimer(ITIMER_REAL, &it, 0);
              unsigned long loops = 0; while (!fired) loops++;
              printf("fired after %lu loops\n", loops); return loops > 0 ? 0 : 1; }
            """#, name: "alarmloop", in: dir)
        let (rec, trace) = try Harness.roundTrip([exe], in: dir)
        #expect(rec.status == 0, "\(rec)")
        let events = try Harness.dumpJSON(trace)
        let at = events.lastIndex { $0["kind"] as? String == "preempt" }
        #expect(at != nil)
        if let at, at + 1 < events.count {
            #expect(events[at + 1]["kind"] as? String == "signal", "the signal follows the preemption")
        }
    }

    /// Two threads that each compute longer than a quantum without a
    /// syscall, racing on a plain counter: preempted back and forth, they
    /// still finish (the quantum doubles), and replay gets the same total.
    @Test func computingThreadsShareTheVCPUAndFinish() throws {
        let exe = try Harness.compile(#"""
            #include <pthread.h>
            #include <stdio.h>
            static volatile long total;
            static void *run(void *a) { for (long i = 0; i < 60000000; i++) total++; return a; }
            int main(void) { pthread_t t[2]; for (int i = 0; i < 2; i++) pthread_create(&t[i], 0, run, 0);
              for (int i = 0; i < 2; i++) pthread_join(t[i], 0); printf("total %ld\n", total); return 0; }
            """#, name: "computers", in: dir)
        let (rec, trace) = try Harness.roundTrip([exe], in: dir)
        #expect(rec.status == 0)
        #expect(rec.stdout.hasPrefix("total "))
        #expect(try preemptions(trace).count >= 1)
    }

    /// `--chaos` draws short quanta, so a preemption can land between the
    /// load and the store of an unsynchronized increment: seeds give
    /// different totals (the race shows), and each replays its own.
    @Test func chaosQuantaExposeARaceAndEachSeedReplays() throws {
        let exe = try Harness.compile(#"""
            #include <pthread.h>
            #include <stdio.h>
            static volatile long counter;
            static void *work(void *a) { for (long i = 0; i < 10000000; i++) counter = counter + 1; return a; }
            int main(void) { pthread_t t[3]; for (int i = 0; i < 3; i++) pthread_create(&t[i], 0, work, 0);
              for (int i = 0; i < 3; i++) pthread_join(t[i], 0); printf("counter %ld\n", counter); return 0; }
            """#, name: "race", in: dir)
        let outputs = Set(try Harness.chaosRoundTrips([exe], seeds: 1...8, name: "race", in: dir).map(\.stdout))
        #expect(outputs.count >= 2, "8 chaos seeds gave one total: \(outputs)")
    }

    /// Two threads hand a turn back and forth by spinning, with no syscall
    /// at all: each hand-off needs one preemption, found at the state the
    /// spinner was in when its quantum ran out (so none grows the quantum).
    @Test func spinningHandOffsNeedOnePreemptionEach() throws {
        let exe = try Harness.compile(#"""
            #include <pthread.h>
            #include <stdatomic.h>
            #include <stdio.h>
            static atomic_int turn;
            static void *run(void *a) { int me = (int)(long)a;
              for (int i = 0; i < 10; i++) { while (atomic_load(&turn) != me) ; atomic_store(&turn, 1 - me); }
              return 0; }
            int main(void) { pthread_t t[2]; for (long i = 0; i < 2; i++) pthread_create(&t[i], 0, run, (void *)i);
              for (int i = 0; i < 2; i++) pthread_join(t[i], 0); printf("turn %d\n", atomic_load(&turn)); return 0; }
            """#, name: "spinpong", in: dir)
        let (rec, trace) = try Harness.roundTrip([exe], in: dir)
        #expect(rec.stdout == "turn 0\n")
        let count = try preemptions(trace).count
        #expect(count >= 1 && count <= 2 * 20, "\(count) preemptions for 20 hand-offs")
    }
}
