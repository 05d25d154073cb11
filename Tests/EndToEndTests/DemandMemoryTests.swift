import Foundation
import Testing

/// Anonymous memory that costs nothing until touched (docs/architecture.md,
/// "Demand-mapped memory"): terabyte MAP_NORESERVE reservations, their
/// mprotect/mremap/fork/munmap pieces, mincore, faults on them, the
/// sanitizers that need them, and rollbacks of slices that touch them.
@Suite(.serialized) struct DemandMemoryTests {
    let dir = Harness.temporaryDirectory()

    @Test func reserved64GiBAsLinux() throws {
        let out = try Harness.matchesNative(#"""
            #define _GNU_SOURCE
            #include <errno.h>
            #include <setjmp.h>
            #include <signal.h>
            #include <stdio.h>
            #include <string.h>
            #include <sys/mman.h>
            #include <sys/wait.h>
            #include <unistd.h>
            static sigjmp_buf back; static volatile int code;
            static void on(int s, siginfo_t *si, void *u) { (void)s; (void)u; code = si->si_code; siglongjmp(back, 1); }
            static const char *store(volatile char *p) {
              code = 0; if (sigsetjmp(back, 1) == 0) { *p = 1; return "stored"; }
              return code == SEGV_ACCERR ? "SEGV_ACCERR" : code == SEGV_MAPERR ? "SEGV_MAPERR" : "other";
            }
            static void resident(const char *what, char *p, int n) {
              unsigned char v[64]; int r = mincore(p, (size_t)n * 4096, v);
              printf("%s:", what); if (r) { printf(" %s\n", strerrorname_np(errno)); return; }
              for (int i = 0; i < n; i++) putchar('0' + (v[i] & 1)); putchar('\n');
            }
            int main(void) {
              struct sigaction sa = {0}; sa.sa_sigaction = on; sa.sa_flags = SA_SIGINFO; sigaction(SIGSEGV, &sa, 0);
              size_t len = 64UL << 30, gib = 1UL << 30;
              char *p = mmap(0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
              if (p == MAP_FAILED) { perror("mmap"); return 1; }
              long sum = 0;
              for (size_t off = 0; off < len; off += 4 * gib) { p[off] = (char)(off / gib); sum += p[off + 8192]; }
              p[len - 1] = 7;
              resident("first pages", p, 24);
              /* the kernel writes into untouched pages, and reads from them */
              int fds[2]; pipe(fds);
              write(fds[1], "hello", 5);
              printf("read into reserved: %zd\n", read(fds[0], p + 5 * gib + 100, 5));
              printf("write from reserved: %zd\n", write(fds[1], p + 6 * gib, 3));
              char z[3] = {9, 9, 9}; read(fds[0], z, 3);
              printf("it read %d%d%d, and %.5s\n", z[0], z[1], z[2], p + 5 * gib + 100);
              /* mprotect: read-only and inaccessible pieces, touched and not */
              mprotect(p, 2 * gib, PROT_READ);
              printf("read-only touched: %s, untouched: %s\n", store(p), store(p + gib));
              mprotect(p + 8 * gib, gib, PROT_NONE);
              printf("PROT_NONE untouched: %s\n", store(p + 8 * gib + 4096));
              mprotect(p + 8 * gib, gib, PROT_READ | PROT_WRITE);
              printf("writable again: %s %d\n", store(p + 8 * gib + 4096), p[8 * gib]);
              /* mremap a partly touched piece */
              char *q = mremap(p + 12 * gib - 4096, 8192, 2 * gib, MREMAP_MAYMOVE);
              if (q == MAP_FAILED) { perror("mremap"); return 1; }
              printf("moved: %d %d %d\n", q[4096], q[8192], q[gib]);
              q[gib] = 5;
              /* munmap makes a hole */
              munmap(p + 16 * gib, gib);
              resident("hole", p + 16 * gib - 4096, 2);
              printf("hole store: %s\n", store(p + 16 * gib + 4096));
              /* fork: the child sees what was touched, and its writes stay its own */
              fflush(stdout);
              pid_t c = fork();
              if (c == 0) {
                printf("child: %d %d %d %d\n", p[4 * gib], p[len - 1], q[gib], p[20 * gib + 4096]);
                p[20 * gib] = 11; p[21 * gib] = 12;
                fflush(stdout); _exit(p[20 * gib] + p[21 * gib]);
              }
              int st; waitpid(c, &st, 0);
              printf("parent: child %d, %d %d\n", WEXITSTATUS(st), p[20 * gib], p[21 * gib]);
              resident("after fork", p + 20 * gib, 2);
              /* executable reserved memory: the rdtsc scan reads no untouched page */
              char *x = mmap(0, 64 << 20, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
              resident("exec", x, 8);
              mprotect(p + 30 * gib, 64 << 20, PROT_READ | PROT_EXEC);
              resident("made exec", p + 30 * gib, 8);
              printf("sum %ld\n", sum);
              return 0;
            }
            """#, name: "reserve64", in: dir)
        #expect(out.contains("first pages:101000000000000000000000"), "\(out)")
        #expect(out.contains("read-only touched: SEGV_ACCERR, untouched: SEGV_ACCERR"))
        #expect(out.contains("PROT_NONE untouched: SEGV_ACCERR"))
        #expect(out.contains("hole: ENOMEM"))
        #expect(out.contains("exec:00000000\nmade exec:00000000\n"))
        #expect(out.contains("parent: child 23, 20 0"))
    }

    /// The sanitizers reserve terabytes of shadow with MAP_NORESERVE.
    /// Symbolizing is off: it reads the binaries' debug info through
    /// thousands of one-page mmaps, which makes a debug build slow and
    /// tells nothing more here.
    @Test func addressSanitizerReportsAHeapOverflow() throws {
        try sanitizer(#"""
            #include <stdio.h>
            #include <stdlib.h>
            int main(int argc, char **argv) { (void)argv;
              char *volatile p = malloc(16); p[16 + argc - 1] = 1;
              printf("unreachable\n"); free(p); return 0; }
            """#, name: "asan", flag: "-fsanitize=address", environment: ["ASAN_OPTIONS": "symbolize=0"],
            report: "ERROR: AddressSanitizer: heap-buffer-overflow", status: 1)
    }

    @Test func threadSanitizerReportsADataRace() throws {
        try sanitizer(#"""
            #include <pthread.h>
            #include <stdio.h>
            int counter;
            static void *work(void *a) { for (int i = 0; i < 1000; i++) counter++; return a; }
            int main(void) { pthread_t a, b;
              pthread_create(&a, 0, work, 0); pthread_create(&b, 0, work, 0);
              pthread_join(a, 0); pthread_join(b, 0);
              printf("counted %d\n", counter > 0); return 0; }
            """#, name: "tsan", flag: "-fsanitize=thread", environment: ["TSAN_OPTIONS": "symbolize=0"],
            report: "WARNING: ThreadSanitizer: data race", status: 66)
    }

    private func sanitizer(_ source: String, name: String, flag: String, environment: [String: String],
                           report: String, status: Int32, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let exe = try Harness.compile(source, name: name, flags: [flag, "-g", "-O0"], in: dir)
        let native = try Harness.run([exe], environment: environment)
        #expect(native.status == status && native.stderr.contains(report), "native: \(native.stderr)", sourceLocation: sourceLocation)
        let trace = dir.appendingPathComponent("\(name)-trace")
        let rec = try Harness.record([exe], trace: trace, environment: environment)
        #expect(rec.status == native.status, "recorded: \(rec.stderr)", sourceLocation: sourceLocation)
        #expect(rec.stderr.contains(report), "recorded: \(rec.stderr)", sourceLocation: sourceLocation)
        #expect(rec.stdout == native.stdout, sourceLocation: sourceLocation)
        for _ in 0..<2 {
            let rep = try Harness.replay(trace)
            #expect(rep.status == rec.status, "replay: \(rep.stderr)", sourceLocation: sourceLocation)
            #expect(rep.stderr.contains(report), "replay: \(rep.stderr)", sourceLocation: sourceLocation)
            #expect(rep.stdout == rec.stdout, sourceLocation: sourceLocation)
        }
    }

    /// Two threads that compute without a syscall until each has seen the
    /// other make progress (so slices are preempted and rolled back), each
    /// iteration bumping a counter in a fresh page of a reserved range: a
    /// rolled-back slice took those pages' frames, and the rollback must
    /// leave them reading zero, so each thread's counters add up to its
    /// progress and every other byte is zero; every replay agrees.
    @Test func rollbacksOfSlicesThatTouchFreshReservedPages() throws {
        let exe = try Harness.compile(#"""
            #include <pthread.h>
            #include <stdio.h>
            #include <stdint.h>
            #include <sys/mman.h>
            #define PAGES 4096
            static volatile long progress[2];
            static unsigned char *area;
            static void *run(void *a) { int me = (int)(long)a;
              while (progress[1 - me] < 100 || progress[me] < 100) {
                long i = progress[me];
                /* 16 pages apart: each new iteration's page is in a block no one touched */
                volatile uint32_t *c = (volatile uint32_t *)(area + ((size_t)(me * (PAGES / 2) + (i * 16) % (PAGES / 2)) << 12));
                *c = *c + 1;
                progress[me] = i + 1;
              }
              return a; }
            int main(void) {
              area = mmap(0, (size_t)PAGES << 12, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
              if (area == MAP_FAILED) return 1;
              pthread_t t[2]; for (long i = 0; i < 2; i++) pthread_create(&t[i], 0, run, (void *)i);
              for (int i = 0; i < 2; i++) pthread_join(t[i], 0);
              int ok[2] = {1, 1};
              for (int me = 0; me < 2; me++) { long sum = 0;
                for (int k = 0; k < PAGES / 2; k++) { unsigned char *p = area + ((size_t)(me * (PAGES / 2) + k) << 12);
                  sum += *(uint32_t *)p;
                  for (int b = 4; b < 4096; b++) if (p[b] != 0) ok[me] = 0; }
                if (sum != progress[me]) ok[me] = 0; }
              printf("area %s %s\n", ok[0] ? "ok" : "WRONG", ok[1] ? "ok" : "WRONG"); return 0; }
            """#, name: "reservedcomputers", in: dir)
        let (rec, trace) = try Harness.roundTrip([exe], in: dir)
        #expect(rec.status == 0)
        #expect(rec.stdout == "area ok ok\n")
        let preemptions = try Harness.dumpJSON(trace).filter { $0["kind"] as? String == "preempt" }
        #expect(preemptions.count >= 1)
    }
}
