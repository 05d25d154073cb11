import Foundation
import Testing

/// The watchdog's signal can make KVM_RUN return while KVM still holds an
/// exception the guest raised (under PVM, the #BP of an int3 detrec put
/// over cpuid or rdtsc, with RIP already past the int3). Delivered later
/// with another RIP (a rolled-back slice's, another thread's), it became a
/// SIGTRAP or a jump into the middle of an instruction (UserMachine.run).
@Suite(.serialized) struct InterruptedExceptionTests {
    let dir = Harness.temporaryDirectory()

    /// Threads that loop over patched cpuid and rdtsc, so that most of the
    /// time the vCPU is between an int3 and its delivery, while short
    /// `--chaos` quanta make the watchdog interrupt them again and again:
    /// every recording and its replay print the native checksum.
    @Test func patchedInstructionsSurviveInterruptsBetweenInt3AndDelivery() throws {
        let exe = try Harness.compile(#"""
            #include <pthread.h>
            #include <stdint.h>
            #include <stdio.h>
            static long iterations = 6000;
            static void *run(void *arg) {
              uint64_t x = (uint64_t)(uintptr_t)arg * 0x9e3779b97f4a7c15ull + 1, ok = 0;
              for (long i = 0; i < iterations; i++) {
                uint32_t a, b, c, d, lo, hi;
                __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(0), "c"(0));
                ok += (b == 0x68747541u || b == 0x756e6547u);   /* "Auth" or "Genu" */
                if (i % 500 == 0) {
                  __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
                  ok += ((uint64_t)hi << 32 | lo) != 0;
                } else {
                  ok++;
                }
                x = x * 6364136223846793005ull + (uint64_t)i;
              }
              return (void *)(uintptr_t)(x ^ (ok == 2 * (uint64_t)iterations ? 0 : 0xbad));
            }
            int main(void) {
              pthread_t t[2];
              for (long i = 0; i < 2; i++) pthread_create(&t[i], 0, run, (void *)i);
              uint64_t sum = 0;
              for (int i = 0; i < 2; i++) { void *r; pthread_join(t[i], &r); sum ^= (uint64_t)(uintptr_t)r * (i + 1); }
              printf("checksum %016llx\n", (unsigned long long)sum);
              return 0;
            }
            """#, name: "cpuidthreads", in: dir)
        let native = try Harness.run([exe])
        #expect(native.status == 0)
        for seed in 1...3 {
            let trace = dir.appendingPathComponent("cpuidthreads-\(seed)")
            let rec = try Harness.record([exe], trace: trace, options: ["--chaos", "--seed", "\(seed)"])
            #expect(rec.status == 0, "seed \(seed): \(rec.stderr)")
            #expect(rec.stdout == native.stdout, "seed \(seed)")
            let rep = try Harness.replay(trace)
            #expect(rep.status == 0, "seed \(seed): \(rep.stderr)")
            #expect(rep.stdout == native.stdout, "seed \(seed)")
        }
    }
}
