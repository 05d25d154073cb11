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

    /// Two threads that compute without a syscall, each until it has seen
    /// the other make progress: neither can finish inside its own slice on
    /// any CPU, however fast, so they finish only if they are preempted
    /// back and forth, and replay gets the same totals. (Progress is kept
    /// small: a preemption keeps at most a couple of hundred iterations of
    /// a loop whose state always changes, docs/preemption.md.)
    @Test func computingThreadsShareTheVCPUAndFinish() throws {
        let exe = try Harness.compile(#"""
            #include <pthread.h>
            #include <stdio.h>
            static volatile long progress[2];
            static void *run(void *a) { int me = (int)(long)a;
              while (progress[1 - me] < 100 || progress[me] < 100) progress[me]++;
              return a; }
            int main(void) { pthread_t t[2]; for (long i = 0; i < 2; i++) pthread_create(&t[i], 0, run, (void *)i);
              for (int i = 0; i < 2; i++) pthread_join(t[i], 0);
              printf("progress %ld %ld\n", progress[0], progress[1]); return 0; }
            """#, name: "computers", in: dir)
        let (rec, trace) = try Harness.roundTrip([exe], in: dir)
        #expect(rec.status == 0)
        #expect(rec.stdout.hasPrefix("progress "))
        #expect(try preemptions(trace).count >= 1)
    }

    /// The same after filling a 16 MiB heap, so the first checkpoint is a
    /// large one (its pages are write-protected and copied before their
    /// next write, docs/preemption.md), and each iteration bumps a counter
    /// in a heap page: the rolled-back iterations' heap writes must be
    /// undone exactly, so each thread's counters add up to its progress.
    @Test func rollbacksUndoHeapWritesAfterALargeCheckpoint() throws {
        let exe = try Harness.compile(#"""
            #include <pthread.h>
            #include <stdio.h>
            #include <stdlib.h>
            #include <string.h>
            #include <stdint.h>
            #define PAGES 4096
            static volatile long progress[2];
            static unsigned char *heap;
            static void *run(void *a) { int me = (int)(long)a;
              while (progress[1 - me] < 100 || progress[me] < 100) {
                long i = progress[me];
                volatile uint32_t *c = (volatile uint32_t *)(heap + ((size_t)(me * (PAGES / 2) + i % (PAGES / 2)) << 12));
                *c = *c + 1;
                progress[me] = i + 1;
              }
              return a; }
            int main(void) { heap = malloc((size_t)PAGES << 12); if (!heap) return 1;
              memset(heap, 7, (size_t)PAGES << 12);
              pthread_t t[2]; for (long i = 0; i < 2; i++) pthread_create(&t[i], 0, run, (void *)i);
              for (int i = 0; i < 2; i++) pthread_join(t[i], 0);
              int ok[2] = {1, 1};
              for (int me = 0; me < 2; me++) { long sum = 0;
                for (int k = 0; k < PAGES / 2; k++) { unsigned char *p = heap + ((size_t)(me * (PAGES / 2) + k) << 12);
                  sum += *(uint32_t *)p - 0x07070707u;
                  for (int b = 4; b < 4096; b++) if (p[b] != 7) ok[me] = 0; }
                if (sum != progress[me]) ok[me] = 0; }
              printf("heap %s %s\n", ok[0] ? "ok" : "WRONG", ok[1] ? "ok" : "WRONG"); return 0; }
            """#, name: "heapcomputers", in: dir)
        let (rec, trace) = try Harness.roundTrip([exe], in: dir)
        #expect(rec.status == 0)
        #expect(rec.stdout == "heap ok ok\n")
        #expect(try preemptions(trace).count >= 1)
    }

    /// Generated code's page goes to its code phase (its cpuid patched)
    /// when it first runs; a store moves it back to data inside a slice
    /// that is then rolled back (the thread spins until the other one has
    /// run, which only a preemption allows). The rollback puts the phase and
    /// the patches back with the bytes: the program then reads its own
    /// cpuid opcode, never the int3 of a patch the rollback forgot, and the
    /// replay takes the same faults (a JVM's GC threads store into its code
    /// cache this way).
    @Test func rollbacksRestoreGeneratedCodesPhaseAndPatches() throws {
        let source = #"""
            #include <pthread.h>
            #include <stdio.h>
            #include <string.h>
            #include <sys/mman.h>
            static volatile int other_ran;
            static void *other(void *a) { other_ran = 1; return a; }
            int main(void) {
              unsigned char *code = mmap(0, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
              if (code == MAP_FAILED) return 1;
              static const unsigned char fn[] = { 0x53, 0x31, 0xc0, 0x0f, 0xa2, 0x5b, 0xc3 }; /* push rbx; xor eax,eax; cpuid; pop rbx; ret */
              memcpy(code, fn, sizeof fn);
              unsigned leaves = ((unsigned (*)(void))code)();
              pthread_t t; pthread_create(&t, 0, other, 0);
              ((volatile unsigned char *)code)[2048] = 1;
              while (!other_ran) ;
              pthread_join(t, 0);
              printf("leaves %d opcode %02x %02x\n", leaves > 0, ((volatile unsigned char *)code)[3], ((volatile unsigned char *)code)[4]);
              return 0; }
            """#
        let exe = try Harness.compile(source, name: "wxrollback", in: dir)
        let native = try Harness.run([exe])
        #expect(native.stdout == "leaves 1 opcode 0f a2\n")
        let (rec, trace) = try Harness.roundTrip([exe], in: dir)
        #expect(rec.status == 0)
        #expect(rec.stdout == native.stdout)
        #expect(try preemptions(trace).count >= 1)
    }

    /// `--chaos` draws random quanta, so where a thread is preempted, and
    /// with it how a race ends, depends on the seed. Each thread increments
    /// a shared counter without synchronization until the other has made
    /// progress too, so the threads must interleave on any CPU; the seeds
    /// give different schedules (the trace's preemption points: the
    /// instruction a random quantum ran out at), and each replays its own
    /// outcome.
    @Test func chaosQuantaExposeARaceAndEachSeedReplays() throws {
        let exe = try Harness.compile(#"""
            #include <pthread.h>
            #include <stdio.h>
            static volatile long counter, progress[2];
            static void *work(void *a) { int me = (int)(long)a;
              while (progress[1 - me] < 100 || progress[me] < 100) { counter = counter + 1; progress[me]++; }
              return a; }
            int main(void) { pthread_t t[2]; for (long i = 0; i < 2; i++) pthread_create(&t[i], 0, work, (void *)i);
              for (int i = 0; i < 2; i++) pthread_join(t[i], 0);
              printf("counter %ld of %ld\n", counter, progress[0] + progress[1]); return 0; }
            """#, name: "race", in: dir)
        let runs = try Harness.chaosRoundTrips([exe], seeds: 1...4, name: "race", in: dir)
        let schedules = Set(try runs.map { run in
            try preemptions(run.trace).map { "\($0["tid"] ?? "")@\($0["rip"] ?? ""):\($0["hits"] ?? "")" }.joined(separator: " ")
        })
        #expect(schedules.count >= 2, "4 chaos seeds gave one schedule: \(schedules)")
        #expect(runs.allSatisfy { $0.stdout.hasPrefix("counter ") })
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
    /// A thread that computes without syscalls until a signal from another
    /// thread redirects it, sixteen times, as Go's asynchronous preemption
    /// does: each redirection ends the stretch (docs/preemption.md,
    /// "Policy"), so every loop starts from the base quantum and the
    /// sender waits about one quantum per round. (With the quantum doubling
    /// across rounds, the policy before, the sender waited 50 ms × 2ᵏ in
    /// round k, up to 10 s: 12 rounds took 44 s, 16 take over 100 s.)
    /// About one preemption per round: the sender must run to send the next signal.
    @Test func signalRedirectedLoopsStartFromTheBaseQuantum() throws {
        let exe = try Harness.compile(#"""
            #include <pthread.h>
            #include <signal.h>
            #include <stdatomic.h>
            #include <stdio.h>
            #include <time.h>
            #include <unistd.h>
            static atomic_int redirected, acks;
            static unsigned long sink;
            static void on(int s) { (void)s; atomic_store(&redirected, 1); }
            static void *spin(void *a) {
              for (int round = 0; round < 16; round++) {
                unsigned long x = round;
                while (!atomic_load_explicit(&redirected, memory_order_relaxed)) x = x * 6364136223846793005UL + 1442695040888963407UL;
                sink += x; atomic_store(&redirected, 0); getppid(); atomic_fetch_add(&acks, 1);
              }
              return a; }
            int main(void) { signal(SIGUSR1, on);
              pthread_t t; pthread_create(&t, 0, spin, 0);
              struct timespec ms = {0, 1000000};
              for (int i = 0; i < 16; i++) { pthread_kill(t, SIGUSR1); while (atomic_load(&acks) <= i) nanosleep(&ms, 0); }
              pthread_join(t, 0); printf("acks %d\n", atomic_load(&acks)); return 0; }
            """#, name: "redirected", in: dir)
        let (rec, trace) = try Harness.roundTrip([exe], in: dir)
        #expect(rec.status == 0)
        #expect(rec.stdout == "acks 16\n")
        let count = try preemptions(trace).count
        #expect(count >= 1 && count <= 3 * 16, "\(count) preemptions for 16 rounds")
    }
}
