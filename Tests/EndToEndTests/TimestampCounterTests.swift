import Foundation
import Testing

/// Raw rdtsc/rdtscp replay the recorded values: detrec patches them, since
/// PVM cannot trap them, and the patch is invisible to the program.
@Suite(.serialized) struct TimestampCounterTests {
    let dir = Harness.temporaryDirectory()

    @Test func rawTimestampReadsReplayAsRecorded() throws {
        let exe = try Harness.compile(#"""
            #include <stdio.h>
            #include <string.h>
            #include <unistd.h>
            #include <x86intrin.h>
            static unsigned long long probe(void) { return __rdtsc(); }
            int main(void) {
              unsigned aux; unsigned long long a = __rdtsc(), b = __rdtscp(&aux), c = probe();
              /* What the kernel reads of the code (here through a pipe) is the
                 original; the program's own loads would see the int3. */
              unsigned char code[32]; int p[2], seen = 0; pipe(p);
              write(p[1], (const void *)probe, sizeof code); read(p[0], code, sizeof code);
              for (int i = 0; i + 1 < 32; i++) if (code[i] == 0x0f && code[i + 1] == 0x31) seen = 1;
              printf("%llu %llu %llu ordered %d own-code %d\n", a, b, c, a <= b && b <= c, seen);
              return 0;
            }
            """#, name: "rdtsc", in: dir)
        let (first, trace) = try Harness.roundTrip([exe], in: dir)
        #expect(first.stdout.hasSuffix("ordered 1 own-code 1\n"), "\(first.stdout)")
        let (second, _) = try Harness.roundTrip([exe], in: dir)
        #expect(first.stdout != second.stdout, "two recordings read different counters")
        let events = try Harness.dumpJSON(trace)
        #expect(events.contains { $0["name"] as? String == "rdtsc" })
        #expect(events.contains { $0["name"] as? String == "rdtscp" })
    }

    /// The scan for rdtsc runs once per code content (`ScanKey`); the
    /// execs after the first take its result: each generation's reads,
    /// in the program's own text and in a library ld.so maps, are still
    /// patched and logged, and replay the same.
    /// A thread that reads the counter in a loop without syscalls (a busy
    /// wait) gives the vCPU up after a slice of readings, so the thread it
    /// waits for, sleeping on a timeout, runs and ends the wait.
    @Test func aLoopReadingTheCounterLetsOtherThreadsRun() throws {
        let out = try Harness.matchesNative(#"""
            #include <pthread.h>
            #include <stdio.h>
            #include <unistd.h>
            #include <x86intrin.h>
            static volatile int stop;
            static void *spin(void *a) {
              unsigned long n = 0;
              while (!stop) n += __rdtsc() & 1;
              return (void *)n;
            }
            int main(void) {
              pthread_t t;
              pthread_create(&t, 0, spin, 0);
              for (int i = 0; i < 5; i++) usleep(10000);
              stop = 1;
              pthread_join(t, 0);
              puts("the sleeper ran");
              return 0;
            }
            """#, name: "rdtscspin", in: dir)
        #expect(out == "the sleeper ran\n")
    }

    /// Data that shares an executable segment with the code (linked with
    /// `-z noseparate-code`, as libLLVM is) keeps its bytes: only the
    /// instruction sections are scanned, so an rdtsc/cpuid pattern in
    /// .rodata is not turned into int3 under the program's own loads,
    /// while the real rdtsc still is.
    @Test func dataInAnExecutableSegmentIsNotPatched() throws {
        let out = try Harness.matchesNative(#"""
            #include <stdio.h>
            static const unsigned char pat[48] = {0x90,0x90,0x90,0x90,0x90,0x90,0x90,0x90,0x90,0x90,0x90,0x90,0x90,0x90,0x90,0x90,
              0x0f,0x31,0x90,0x90,0x90,0x90,0x90,0x90,0x0f,0xa2,0x90,0x90,0x90,0x90,0x90,0x90,0x90,0x90,0x90,0x90,0x90,0x90,0x90,0x90,0x90,0x90,0x90,0x90,0x90,0x90,0x90,0x90};
            int main(void) {
              const volatile unsigned char *p = pat;
              printf("%02x %02x %02x %02x\n", p[16], p[17], p[24], p[25]);
              unsigned lo, hi; __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
              printf("rdtsc ran\n");
              return 0;
            }
            """#, name: "rodata", flags: ["-static", "-Wl,-z,noseparate-code"], in: dir)
        #expect(out == "0f 31 0f a2\nrdtsc ran\n")
    }

    @Test func everyExecOfTheSameCodeIsPatched() throws {
        let lib = try Harness.compile(#"""
            #include <x86intrin.h>
            unsigned long long tick(void) { return __rdtsc(); }
            """#, name: "libtick.so", flags: ["-shared", "-fPIC"], in: dir)
        let exe = try Harness.compile(#"""
            #include <stdio.h>
            #include <stdlib.h>
            #include <unistd.h>
            #include <x86intrin.h>
            unsigned long long tick(void);
            int main(int argc, char **argv) {
              int generation = argc > 1 ? atoi(argv[1]) : 0;
              unsigned long long a = tick(), b = __rdtsc();
              printf("generation %d ordered %d\n", generation, a <= b);
              fflush(stdout);
              if (generation < 2) {
                char next[16];
                snprintf(next, sizeof next, "%d", generation + 1);
                execl(argv[0], argv[0], next, (char *)0);
                return 1;
              }
              return 0;
            }
            """#, name: "rdtsc-execs", flags: ["-Wl,--no-as-needed", lib], in: dir)
        let native = try Harness.run([exe])
        let (rec, trace) = try Harness.roundTrip([exe], in: dir)
        #expect(native.stdout == "generation 0 ordered 1\ngeneration 1 ordered 1\ngeneration 2 ordered 1\n")
        #expect(rec.stdout == native.stdout)
        // One generation alone (ld.so reads the counter too) against three.
        let (_, single) = try Harness.roundTrip([exe, "2"], in: dir)
        let reads = try Harness.dumpJSON(trace).filter { $0["name"] as? String == "rdtsc" }.count
        let alone = try Harness.dumpJSON(single).filter { $0["name"] as? String == "rdtsc" }.count
        #expect(alone >= 2 && reads == 3 * alone, "\(reads) reads in three generations, \(alone) in one")
    }
}
