import Foundation
import Testing

/// The FPU/SSE/AVX state is the thread's across syscalls, thread switches,
/// preemption rollbacks and signal frames. After a syscall detrec takes it
/// from what the SYSCALL stub saved (EntryStubs), not from KVM: a wrong
/// copy would show as another thread's or a stale register here.
@Suite(.serialized) struct ExtendedStateTests {
    static let source = #"""
        #define _GNU_SOURCE
        #include <pthread.h>
        #include <signal.h>
        #include <stdint.h>
        #include <stdio.h>
                #include <sys/syscall.h>
        #include <sys/time.h>
        #include <unistd.h>

        static int has_avx;
        static volatile int flag;
        static volatile long handled;

        static void load(uint64_t seed) {
          uint64_t x[4] = {seed, ~seed, seed * 3, seed ^ 0x5555};
          __asm__ volatile("movdqu %0, %%xmm8\n\tmovdqu %0, %%xmm15" :: "m"(x) : "xmm8", "xmm15");
          if (has_avx) __asm__ volatile("vmovdqu %0, %%ymm9" :: "m"(x) : "xmm9");
        }
        /* Reads the registers before anything else runs (the C library's
           string functions use vector registers and end in vzeroupper),
           and compares without it. */
        static int same(uint64_t seed) {
          uint64_t want[4] = {seed, ~seed, seed * 3, seed ^ 0x5555}, a[2], b[2], y[4] = {0, 0, 0, 0};
          __asm__ volatile("movdqu %%xmm8, %0\n\tmovdqu %%xmm15, %1" : "=m"(a), "=m"(b));
          if (has_avx) __asm__ volatile("vmovdqu %%ymm9, %0" : "=m"(y));
          int ok = a[0] == want[0] && a[1] == want[1] && b[0] == want[0] && b[1] == want[1];
          if (has_avx) for (int i = 0; i < 4; i++) ok = ok && y[i] == want[i];
          return ok;
        }

        static void *worker(void *arg) {
          uint64_t seed = (uint64_t)(uintptr_t)arg;
          long bad = 0;
          load(seed);
          for (int i = 0; i < 300; i++) {
            syscall(SYS_getppid);
            if (!same(seed)) { bad++; load(seed); }
            if (i == 150 && seed == 1) {
              /* Spin until the other thread sets the flag: a preemption
                 rolls this slice back and replays it to a counted point. */
              while (!flag) { }
              if (!same(seed)) { bad++; load(seed); }
            }
            if (i == 200 && seed == 2) flag = 1;
          }
          return (void *)bad;
        }

        static void on_alarm(int sig) {
          (void)sig;
          uint64_t junk[4] = {7, 7, 7, 7};
          __asm__ volatile("movdqu %0, %%xmm8\n\tmovdqu %0, %%xmm15" :: "m"(junk) : "xmm8", "xmm15");
          handled++;
        }

        int main(void) {
          __builtin_cpu_init();
          has_avx = __builtin_cpu_supports("avx");
          pthread_t t[2];
          pthread_create(&t[0], 0, worker, (void *)1);
          pthread_create(&t[1], 0, worker, (void *)2);
          long bad = 0;
          for (int i = 0; i < 2; i++) { void *r; pthread_join(t[i], &r); bad += (long)r; }
          printf("threads: bad %ld\n", bad);

          /* A handler that clobbers the registers runs at syscall exits:
             sigreturn must bring the interrupted state back. */
          signal(SIGALRM, on_alarm);
          struct itimerval it = {{0, 1000}, {0, 1000}};
          setitimer(ITIMER_REAL, &it, 0);
          load(3);
          long sbad = 0;
          while (handled < 20) {
            syscall(SYS_getppid);
            if (!same(3)) { sbad++; load(3); }
          }
          struct itimerval off = {{0, 0}, {0, 0}};
          setitimer(ITIMER_REAL, &off, 0);
          printf("signals: bad %ld\n", sbad);
          return 0;
        }
        """#

    @Test func registersSurviveSyscallsSwitchesRollbacksAndHandlers() throws {
        let out = try Harness.matchesNative(Self.source, name: "xstate", flags: ["-static", "-O1", "-pthread"],
                                            in: Harness.temporaryDirectory())
        #expect(out == "threads: bad 0\nsignals: bad 0\n")
    }

    /// The same with the bare stub (DETREC_STUB_XSAVE=off), where every
    /// read of the state is KVM's (the replays use the stub that saves it):
    /// both ways must agree with native.
    @Test func theBareStubAgrees() throws {
        let dir = Harness.temporaryDirectory()
        let exe = try Harness.compile(Self.source, name: "xstate", flags: ["-static", "-O1", "-pthread"], in: dir)
        let (rec, _) = try Harness.roundTrip([exe], in: dir, environment: ["DETREC_STUB_XSAVE": "off"])
        #expect(rec.stdout == "threads: bad 0\nsignals: bad 0\n")
    }
}
