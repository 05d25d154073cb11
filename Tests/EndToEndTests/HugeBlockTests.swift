import Foundation
import Testing

/// Memory that a program fills in whole aligned 2 MiB blocks gets guest
/// 2 MiB pages (docs/preemption.md, "2 MiB pages"), split back into 4 KiB
/// entries wherever one page needs its own: what the guest sees must stay
/// Linux's through mprotect, munmap, mremap and MADV_DONTNEED of pages
/// inside such a block, fork, and a second thread whose syscalls make the
/// recorder take checkpoints while the blocks are rewritten.
@Suite(.serialized) struct HugeBlockTests {
    let dir = Harness.temporaryDirectory()

    @Test func pagesInsideFilledBlocksKeepLinuxSemantics() throws {
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
            #define PG 4096UL
            static sigjmp_buf back; static volatile int code;
            static void on(int s, siginfo_t *si, void *u) { (void)s; (void)u; code = si->si_code; siglongjmp(back, 1); }
            static const char *store(volatile char *p) {
              code = 0; if (sigsetjmp(back, 1) == 0) { *p = 1; return "stored"; }
              return code == SEGV_ACCERR ? "SEGV_ACCERR" : code == SEGV_MAPERR ? "SEGV_MAPERR" : "other";
            }
            static const char *load(volatile char *p) {
              code = 0; if (sigsetjmp(back, 1) == 0) { return *p == 0 ? "zero" : "nonzero"; }
              return code == SEGV_ACCERR ? "SEGV_ACCERR" : code == SEGV_MAPERR ? "SEGV_MAPERR" : "other";
            }
            static unsigned char v[4096];
            static int count(char *p, int n) {
              if (mincore(p, (size_t)n * PG, v)) return -errno;
              int c = 0; for (int i = 0; i < n; i++) c += v[i] & 1; return c;
            }
            /* each page holds its index in the block area, at both ends */
            static void fill(char *p, size_t n, int salt) { for (size_t i = 0; i < n; i += PG) { p[i] = (char)(i / PG + salt); p[i + PG - 1] = (char)(i / PG * 3 + salt); } }
            static long check(char *p, size_t n, int salt) {
              long bad = 0; for (size_t i = 0; i < n; i += PG) bad += p[i] != (char)(i / PG + salt) || p[i + PG - 1] != (char)(i / PG * 3 + salt);
              return bad;
            }
            static volatile int stop; static long calls;
            static void *caller(void *a) { while (!stop) calls += syscall(SYS_getppid) != 0; return a; }
            int main(void) {
              struct sigaction sa = {0}; sa.sa_sigaction = on; sa.sa_flags = SA_SIGINFO; sigaction(SIGSEGV, &sa, 0);
              /* 16 MiB aligned to 2 MiB inside an 18 MiB mapping: eight whole blocks */
              char *raw = mmap(0, 18 * MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
              if (raw == MAP_FAILED) { perror("mmap"); return 1; }
              madvise(raw, 18 * MIB, MADV_NOHUGEPAGE);  /* native residency must not depend on the host's THP */
              char *p = (char *)(((uintptr_t)raw + 2 * MIB - 1) & ~(2 * MIB - 1));
              memset(p, 0, 16 * MIB);
              fill(p, 16 * MIB, 1);
              printf("filled: %d of 4096 resident, bad %ld\n", count(p, 4096), check(p, 16 * MIB, 1));
              /* mprotect one page in block 1, then a whole block read-only */
              mprotect(p + 2 * MIB + 5 * PG, PG, PROT_READ);
              printf("one page read-only: %s, neighbours %s %s, bad %ld\n", store(p + 2 * MIB + 5 * PG),
                     store(p + 2 * MIB + 4 * PG + 8), store(p + 2 * MIB + 6 * PG + 8), check(p + 2 * MIB + 5 * PG, PG, 1 + 517) == 0 ? 0L : 1L);
              p[2 * MIB + 4 * PG + 8] = 0; p[2 * MIB + 6 * PG + 8] = 0;
              mprotect(p + 4 * MIB, 2 * MIB, PROT_READ);
              printf("block read-only: %s %s\n", store(p + 4 * MIB), store(p + 6 * MIB - 1));
              mprotect(p + 4 * MIB, 2 * MIB, PROT_READ | PROT_WRITE);
              mprotect(p + 2 * MIB + 5 * PG, PG, PROT_READ | PROT_WRITE);
              printf("writable again: %s, bad %ld\n", store(p + 4 * MIB + 8), check(p + 2 * MIB, 4 * MIB, 1 + 512));
              p[4 * MIB + 8] = 0;
              /* munmap one page inside block 3: a hole, its neighbours kept */
              munmap(p + 6 * MIB + 7 * PG, PG);
              printf("hole: %s, mincore %d, neighbours bad %ld %ld\n", load(p + 6 * MIB + 7 * PG), count(p + 6 * MIB + 7 * PG, 1),
                     check(p + 6 * MIB, 7 * PG, 1 + 1536), check(p + 6 * MIB + 8 * PG, 2 * MIB - 8 * PG, 1 + 1544));
              /* MADV_DONTNEED one page inside block 4: zero again, resident once touched */
              madvise(p + 8 * MIB + 3 * PG, PG, MADV_DONTNEED);
              printf("dontneed: %d resident, reads %s, then %d; neighbours bad %ld\n", count(p + 8 * MIB + 3 * PG, 1),
                     load(p + 8 * MIB + 3 * PG), count(p + 8 * MIB + 3 * PG, 1), check(p + 8 * MIB + 4 * PG, 2 * MIB - 4 * PG, 1 + 2052));
              /* mremap a piece out of block 5 (1 MiB from its middle) and the whole block 6 */
              char *dst = mmap(0, 8 * MIB, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
              char *m1 = mremap(p + 10 * MIB + 256 * PG, MIB, MIB, MREMAP_MAYMOVE | MREMAP_FIXED, dst);
              char *m2 = mremap(p + 12 * MIB, 2 * MIB, 2 * MIB, MREMAP_MAYMOVE | MREMAP_FIXED, dst + 4 * MIB);
              printf("moved: %s %s, bad %ld %ld, left behind %s %s, rest of block 5 bad %ld\n",
                     m1 == dst ? "ok" : "moved elsewhere", m2 == dst + 4 * MIB ? "ok" : "moved elsewhere",
                     check(m1, MIB, 1 + 2816), check(m2, 2 * MIB, 1 + 3072), load(p + 10 * MIB + 256 * PG), load(p + 12 * MIB),
                     check(p + 10 * MIB, 256 * PG, 1 + 2560));
              /* fork: the child sees it all, its writes stay its own */
              fflush(stdout);
              pid_t c = fork();
              if (c == 0) {
                long bad = check(p, 6 * MIB, 1) + check(p + 14 * MIB, 2 * MIB, 1 + 3584);
                memset(p + 14 * MIB, 9, 2 * MIB);
                _exit(bad == 0 && p[14 * MIB] == 9 ? 0 : 1);
              }
              int st; waitpid(c, &st, 0);
              printf("child %d, parent bad %ld\n", WEXITSTATUS(st), check(p + 14 * MIB, 2 * MIB, 1 + 3584));
              /* a second thread making syscalls (checkpoints) while this one rewrites the blocks */
              pthread_t th; pthread_create(&th, 0, caller, 0);
              fill(p, 6 * MIB, 5);
              fill(p + 14 * MIB, 2 * MIB, 7);
              stop = 1;
              pthread_join(th, 0);
              printf("threads: calls %s, bad %ld %ld\n", calls > 0 ? "made" : "none", check(p, 6 * MIB, 5), check(p + 14 * MIB, 2 * MIB, 7));
              /* a fresh mapping filled again after the old one is gone */
              munmap(raw, 18 * MIB);
              char *again = mmap(0, 6 * MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
              madvise(again, 6 * MIB, MADV_NOHUGEPAGE);
              printf("again: fresh %d of 1536 resident", count(again, 1536));
              fill(again, 6 * MIB, 3);
              printf(", filled %d, bad %ld\n", count(again, 1536), check(again, 6 * MIB, 3));
              return 0;
            }
            """#, name: "hugeblocks", in: dir)
        #expect(out.contains("filled: 4096 of 4096 resident, bad 0\n"), "\(out)")
        #expect(out.contains("one page read-only: SEGV_ACCERR, neighbours stored stored, bad 0\n"))
        #expect(out.contains("block read-only: SEGV_ACCERR SEGV_ACCERR\n"))
        #expect(out.contains("writable again: stored, bad 0\n"))
        #expect(out.contains("hole: SEGV_MAPERR, mincore -12, neighbours bad 0 0\n"))
        #expect(out.contains("dontneed: 0 resident, reads zero, then 1; neighbours bad 0\n"))
        #expect(out.contains("moved: ok ok, bad 0 0, left behind SEGV_MAPERR SEGV_MAPERR, rest of block 5 bad 0\n"))
        #expect(out.contains("child 0, parent bad 0\n"))
        #expect(out.contains("threads: calls made, bad 0 0\n"))
        #expect(out.contains("again: fresh 0 of 1536 resident, filled 1536, bad 0\n"))
    }
}
