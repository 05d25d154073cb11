import Foundation
import Testing

/// Private anonymous mappings of 128 KiB or more, and brk's growth, are
/// demand-mapped, with fault-around blocks that grow while a program fills
/// them in order (`FaultAround`, docs/preemption.md "First touch"). What
/// the guest sees must stay Linux's: contents, faults, fork, mprotect,
/// madvise(MADV_DONTNEED), MAP_POPULATE, mlock, and mincore (exact for
/// sparse and whole touches; after a partial run of touches, nothing past
/// the aligned 2 MiB of the last one is resident).
@Suite(.serialized) struct FirstTouchTests {
    let dir = Harness.temporaryDirectory()

    @Test func largeAnonymousMemoryTouchedSparselyDenselyAndInOrder() throws {
        let out = try Harness.matchesNative(#"""
            #define _GNU_SOURCE
            #include <errno.h>
            #include <pthread.h>
            #include <setjmp.h>
            #include <signal.h>
            #include <stdint.h>
            #include <stdio.h>
            #include <string.h>
            #include <sys/mman.h>
            #include <sys/syscall.h>
            #include <sys/wait.h>
            #include <unistd.h>
            #define MIB (1UL << 20)
            static sigjmp_buf back; static volatile int code;
            static void on(int s, siginfo_t *si, void *u) { (void)s; (void)u; code = si->si_code; siglongjmp(back, 1); }
            static const char *store(volatile char *p) {
              code = 0; if (sigsetjmp(back, 1) == 0) { *p = 1; return "stored"; }
              return code == SEGV_ACCERR ? "SEGV_ACCERR" : code == SEGV_MAPERR ? "SEGV_MAPERR" : "other";
            }
            static unsigned char v[4096];
            static int count(char *p, int n) {
              if (mincore(p, (size_t)n * 4096, v)) return -errno;
              int c = 0; for (int i = 0; i < n; i++) c += v[i] & 1; return c;
            }
            static long sum(char *p, size_t n) { long s = 0; for (size_t i = 0; i < n; i += 4096) s += p[i] + p[i + 4095]; return s; }
            static long calls;
            static void *caller(void *a) { for (int i = 0; i < 2000; i++) calls += syscall(SYS_getppid) != 0; return a; }
            int main(void) {
              struct sigaction sa = {0}; sa.sa_sigaction = on; sa.sa_flags = SA_SIGINFO; sigaction(SIGSEGV, &sa, 0);
              printf("start\n");
              /* 8 MiB aligned to 2 MiB inside a 10 MiB mapping: four aligned regions */
              char *raw = mmap(0, 10 * MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
              if (raw == MAP_FAILED) { perror("mmap"); return 1; }
              /* the native run's residency must not depend on the host's transparent huge pages */
              madvise(raw, 10 * MIB, MADV_NOHUGEPAGE);
              char *p = (char *)(((uintptr_t)raw + 2 * MIB - 1) & ~(2 * MIB - 1));
              printf("fresh: %d of 2560 resident\n", count(raw, 2560));
              /* sparse: a byte every 64 pages of the first region */
              for (int i = 0; i < 512; i += 64) p[(size_t)i * 4096 + 7] = (char)(i / 64 + 1);
              printf("sparse: %d of 512 resident\n", count(p, 512));
              /* in order, 40 pages of the third: those, and nothing of the fourth */
              memset(p + 4 * MIB, 4, 40 * 4096);
              printf("partial: %d of 40, next region %d\n", count(p + 4 * MIB, 40), count(p + 6 * MIB, 512));
              /* dense: the whole second region (a run that ends where the third's touched pages begin) */
              memset(p + 2 * MIB, 3, 2 * MIB);
              printf("dense: %d of 512 resident\n", count(p + 2 * MIB, 512));
              /* downward (as a stack grows), all of the fourth: nothing more of the third */
              for (int i = 511; i >= 0; i--) p[6 * MIB + (size_t)i * 4096 + 9] = 6;
              printf("downward: %d of 512, third region past 64 pages %d\n", count(p + 6 * MIB, 512), count(p + 4 * MIB + 64 * 4096, 448));
              long before = sum(p, 8 * MIB);
              printf("sum %ld\n", before);
              /* fork: the child sees it all and its writes stay its own */
              fflush(stdout);
              pid_t c = fork();
              if (c == 0) {
                long s = sum(p, 8 * MIB);
                memset(p, 9, 8 * MIB);
                _exit(s == before && p[7] == 9 ? 0 : 1);
              }
              int st; waitpid(c, &st, 0);
              printf("child %d, parent sum %ld, %d %d\n", WEXITSTATUS(st), sum(p, 8 * MIB), p[7], p[2 * MIB + 5]);
              /* mprotect: read-only pieces, touched and not */
              mprotect(p + 2 * MIB, 4 * MIB, PROT_READ);
              printf("read-only touched: %s, untouched: %s, reads %d %d\n", store(p + 2 * MIB), store(p + 5 * MIB), p[2 * MIB], p[5 * MIB]);
              mprotect(p + 2 * MIB, 4 * MIB, PROT_READ | PROT_WRITE);
              printf("writable again: %s %s\n", store(p + 2 * MIB + 4096), store(p + 5 * MIB + 4096));
              /* MADV_DONTNEED: zero again, resident only once touched again */
              madvise(p + 2 * MIB, MIB, MADV_DONTNEED);
              int gone = count(p + 2 * MIB, 256), zero = p[2 * MIB + 3 * 4096];
              int read = count(p + 2 * MIB, 16);
              printf("dontneed: %d of 256, reads %d, then %d resident; the rest %d of 256\n", gone, zero, read, count(p + 3 * MIB, 256));
              memset(p + 2 * MIB, 5, MIB);
              printf("refilled: %d of 256, sum %ld\n", count(p + 2 * MIB, 256), sum(p, 8 * MIB));
              /* MAP_POPULATE and mlock fault everything in */
              char *q = mmap(0, MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
              char *l = mmap(0, MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
              int locked = mlock(l, MIB);
              printf("populated %d of 256, locked %d: %d of 256, sums %ld %ld\n", count(q, 256), locked, count(l, 256), sum(q, MIB), sum(l, MIB));
              /* brk's growth: sparse, then whole, then shrunk and grown again */
              char *cur = sbrk(0), *b = (char *)(((uintptr_t)cur + 4095) & ~4095UL);
              if (sbrk(b - cur + (long)MIB) == (void *)-1) { perror("sbrk"); return 1; }
              madvise(b, MIB, MADV_NOHUGEPAGE);
              for (int i = 0; i < 256; i += 32) b[(size_t)i * 4096] = 2;
              int sparse = count(b, 256);
              memset(b, 7, MIB);
              printf("brk: sparse %d, dense %d of 256", sparse, count(b, 256));
              sbrk(-(long)(MIB / 2)); sbrk(MIB / 2);
              int regrown = count(b + MIB / 2, 128);
              printf(", regrown %d of 128, reads %d %d\n", regrown, b[MIB / 2], b[MIB / 2 - 1]);
              /* in order over several 2 MiB regions (blocks that grow and are backed at once), stopping inside one */
              char *raw2 = mmap(0, 10 * MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
              madvise(raw2, 10 * MIB, MADV_NOHUGEPAGE);
              char *r = (char *)(((uintptr_t)raw2 + 2 * MIB - 1) & ~(2 * MIB - 1));
              memset(r, 8, 5 * MIB);
              printf("run: %d of 1280, past its region %d, sum %ld\n", count(r, 1280), count(r + 6 * MIB, 512), sum(r, 5 * MIB));
              /* a thread making syscalls (checkpoints) while this one fills fresh memory */
              char *t = mmap(0, 4 * MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
              pthread_t th; pthread_create(&th, 0, caller, 0);
              for (size_t i = 0; i < 4 * MIB; i += 64) t[i] = (char)(i >> 12);
              pthread_join(th, 0);
              long ts = 0; for (size_t i = 0; i < 4 * MIB; i++) ts += t[i];
              printf("threads: %ld calls, %d of 1024 resident, sum %ld\n", calls, count(t, 1024), ts);
              munmap(raw, 10 * MIB);
              printf("unmapped: %d\n", count(p, 1));
              return 0;
            }
            """#, name: "firsttouch", in: dir)
        #expect(out.contains("fresh: 0 of 2560 resident\n"), "\(out)")
        #expect(out.contains("sparse: 8 of 512 resident\n"))
        #expect(out.contains("partial: 40 of 40, next region 0\n"))
        #expect(out.contains("dense: 512 of 512 resident\n"))
        #expect(out.contains("downward: 512 of 512, third region past 64 pages 0\n"))
        #expect(out.contains("child 0,"))
        #expect(out.contains("read-only touched: SEGV_ACCERR, untouched: SEGV_ACCERR, reads 3 0\n"))
        #expect(out.contains("dontneed: 0 of 256, reads 0, then 1 resident; the rest 256 of 256\n"))
        #expect(out.contains("populated 256 of 256, locked 0: 256 of 256"))
        #expect(out.contains("brk: sparse 8, dense 256 of 256, regrown 0 of 128, reads 0 7\n"))
        #expect(out.contains("run: 1280 of 1280, past its region 0, sum 20480\n"))
        #expect(out.contains("threads: 2000 calls, 1024 of 1024 resident"))
        #expect(out.contains("unmapped: -12\n"))
    }
}
