import Foundation
import Testing

/// The memory calls as Linux 6.18 has them, each program compared with a
/// native run and replayed: madvise (DONTNEED re-reading private file
/// pages, REMOVE, the fork flags, the W^X code phase), mremap (growth,
/// moves, DONTUNMAP, file and shared mappings), MAP_GROWSDOWN stacks,
/// mlock and mincore.
@Suite(.serialized) struct MemoryCallTests {
    let dir = Harness.temporaryDirectory()

    @Test func madviseAsLinux() throws {
        let out = try Harness.matchesNative(#"""
            #define _GNU_SOURCE
            #include <errno.h>
            #include <fcntl.h>
            #include <stdio.h>
            #include <string.h>
            #include <sys/mman.h>
            #include <sys/stat.h>
            #include <sys/wait.h>
            #include <unistd.h>
            static void r(const char *what, int rc) { printf("%s: %d %s\n", what, rc, rc ? strerrorname_np(errno) : ""); }
            int main(int argc, char **argv) {
              char path[256]; snprintf(path, sizeof path, "%s/madv-file", argv[1]);
              int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
              char block[8192]; memset(block, 'f', 4096); memset(block + 4096, 'g', 4096);
              write(fd, block, 8192);
              /* private file mapping: DONTNEED drops the copy, the file shows again */
              char *p = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
              p[0] = 'X'; p[4096] = 'Y';
              pwrite(fd, "Z", 1, 1);
              r("dontneed private file", madvise(p, 4096, MADV_DONTNEED));
              printf("after: %c%c %c\n", p[0], p[1], p[4096]);
              /* anonymous private: zero */
              char *a = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
              a[0] = 1; a[4096] = 2;
              r("dontneed anon", madvise(a, 8192, MADV_DONTNEED));
              printf("anon: %d %d\n", a[0], a[4096]);
              /* shared anonymous keeps its pages; REMOVE punches them */
              char *s = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
              s[0] = 3; s[4096] = 4;
              r("dontneed shared anon", madvise(s, 8192, MADV_DONTNEED));
              printf("shared anon: %d %d\n", s[0], s[4096]);
              r("remove shared anon", madvise(s, 4096, MADV_REMOVE));
              printf("shared anon after remove: %d %d\n", s[0], s[4096]);
              /* shared file mapping: REMOVE punches a hole in the file */
              char *sf = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
              r("remove shared file", madvise(sf + 4096, 4096, MADV_REMOVE));
              char b[4] = {0}; pread(fd, b, 2, 4096);
              struct stat st; fstat(fd, &st);
              printf("file after remove: %d %d size %ld\n", b[0], b[1], (long)st.st_size);
              printf("mapping after remove: %d %c\n", sf[4096], sf[0]);
              r("remove private file", madvise(p, 4096, MADV_REMOVE));
              r("remove private anon", madvise(a, 4096, MADV_REMOVE));
              /* fork controls */
              char *w = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
              w[0] = 5; w[4096] = 6;
              r("wipeonfork", madvise(w, 4096, MADV_WIPEONFORK));
              r("wipeonfork shared", madvise(s, 4096, MADV_WIPEONFORK));
              r("wipeonfork file", madvise(p, 4096, MADV_WIPEONFORK));
              char *d = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
              d[0] = 7;
              r("dontfork", madvise(d, 4096, MADV_DONTFORK));
              char *k = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
              k[0] = 8;
              r("wipe then keep", madvise(k, 4096, MADV_WIPEONFORK) | madvise(k, 4096, MADV_KEEPONFORK));
              fflush(stdout);
              pid_t c = fork();
              if (c == 0) {
                printf("child: wiped %d kept %d keep %d\n", w[0], w[4096], k[0]);
                unsigned char v;
                int rc = mincore(d, 4096, &v);
                printf("child: dontfork mincore %d %s\n", rc, rc ? strerrorname_np(errno) : "");
                void *again = mmap(d, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
                printf("child: dontfork range free %d\n", again == d);
                fflush(stdout);
                _exit(0);
              }
              waitpid(c, 0, 0);
              printf("parent: %d %d %d\n", w[0], d[0], k[0]);
              r("dofork", madvise(d, 4096, MADV_DOFORK));
              /* MADV_FREE: anonymous only */
              r("free anon", madvise(a, 4096, MADV_FREE));
              r("free file", madvise(p, 4096, MADV_FREE));
              /* advice only */
              int adv[] = {MADV_NORMAL, MADV_RANDOM, MADV_SEQUENTIAL, MADV_WILLNEED, MADV_COLD, MADV_PAGEOUT,
                           MADV_HUGEPAGE, MADV_NOHUGEPAGE, MADV_DONTDUMP, MADV_DODUMP, MADV_MERGEABLE, MADV_UNMERGEABLE,
                           MADV_POPULATE_READ, MADV_POPULATE_WRITE};
              a[0] = 9;
              for (unsigned i = 0; i < sizeof adv / sizeof *adv; i++) {
                char n[32]; snprintf(n, sizeof n, "advice %d", adv[i]);
                r(n, madvise(a, 8192, adv[i]));
              }
              printf("anon kept: %d\n", a[0]);
              char *ro = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
              r("populate write on read-only", madvise(ro, 4096, MADV_POPULATE_WRITE));
              r("populate read on read-only", madvise(ro, 4096, MADV_POPULATE_READ));
              char *none = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
              r("populate read on none", madvise(none, 4096, MADV_POPULATE_READ));
              r("willneed on none", madvise(none, 4096, MADV_WILLNEED));
              r("bad advice", madvise(a, 4096, 999));
              r("advice 26", madvise(a, 4096, 26));
              r("unaligned", madvise(a + 1, 4096, MADV_NORMAL));
              r("zero length", madvise(a, 0, MADV_DONTNEED));
              r("negative length", madvise(a, (size_t)-1, MADV_NORMAL));
              munmap(a + 4096, 4096);
              r("hole", madvise(a, 8192, MADV_NORMAL));
              r("hole dontneed", madvise(a, 8192, MADV_DONTNEED));
              r("hwpoison", madvise(a, 4096, MADV_HWPOISON + 1000));
              return 0;
            }
            """#, name: "madvise", args: [dir.path], in: dir)
        #expect(out.contains("after: fZ Y\n"))
        #expect(out.contains("shared anon after remove: 0 4\n"))
        #expect(out.contains("child: wiped 0 kept 6 keep 8\n"))
        #expect(out.contains("child: dontfork mincore -1 ENOMEM\n"))
    }

    /// A JIT page in its code phase: MADV_DONTNEED zeroes it, and code
    /// written there again has its rdtsc patched (recorded) once more.
    @Test func dontneedDropsTheCodePhase() throws {
        let exe = try Harness.compile(#"""
            #define _GNU_SOURCE
            #include <stdio.h>
            #include <string.h>
            #include <sys/mman.h>
            static const unsigned char code[] = {0x0f, 0x31, 0x48, 0xc1, 0xe2, 0x20, 0x48, 0x09, 0xd0, 0xc3};  /* rdtsc; shl rdx,32; or rax,rdx; ret */
            int main(void) {
              unsigned char *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
              memcpy(page, code, sizeof code);
              unsigned long (*f)(void) = (unsigned long (*)(void))page;
              unsigned long a = f();
              madvise(page, 4096, MADV_DONTNEED);
              printf("after DONTNEED: %d %d\n", page[0], page[1]);
              memcpy(page, code, sizeof code);
              unsigned long b = f();
              unsigned long c = f();
              printf("counter runs on: %d %d\n", b > a, c > b);
              return 0;
            }
            """#, name: "jitdontneed", in: dir)
        let native = try Harness.run([exe])
        let (rec, trace) = try Harness.roundTrip([exe], in: dir)
        #expect(rec.stdout == native.stdout)
        #expect(rec.stdout == "after DONTNEED: 0 0\ncounter runs on: 1 1\n")
        let readings = try Harness.dumpJSON(trace).filter { ($0["number"] as? Int) == 0x4000_0031 }
        #expect(readings.count == 3)
    }

    @Test func mremapAsLinux() throws {
        let out = try Harness.matchesNative(#"""
            #define _GNU_SOURCE
            #include <errno.h>
            #include <fcntl.h>
            #include <stdio.h>
            #include <string.h>
            #include <sys/mman.h>
            #include <sys/wait.h>
            #include <unistd.h>
            #include <sys/syscall.h>
            #define DU(a, o, n, f) ((void *)syscall(SYS_mremap, a, o, n, f, 0))
            static void show(const char *what, void *p) {
              if (p == MAP_FAILED) printf("%s: %s\n", what, strerrorname_np(errno)); else printf("%s: ok\n", what);
            }
            int main(int argc, char **argv) {
              setvbuf(stdout, NULL, _IONBF, 0);
              char path[256]; snprintf(path, sizeof path, "%s/mremap-file", argv[1]);
              int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
              char block[16384];
              for (int i = 0; i < 4; i++) memset(block + 4096 * i, 'a' + i, 4096);
              write(fd, block, 16384);
              /* growth in place: reserve a region, free its tail, grow into it */
              char *r = mmap(NULL, 16384, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
              munmap(r + 4096, 12288);
              r[0] = 'r';
              char *g = mremap(r, 4096, 12288, 0);
              printf("grown in place: %d %c %d\n", g == r, g[0], g[8192]);
              show("grow blocked without MAYMOVE", (mmap(r + 12288, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0), mremap(r, 12288, 16384, 0)));
              char *m = mremap(r, 12288, 16384, MREMAP_MAYMOVE);
              printf("moved: %d %c %d\n", m != r, m[0], m[12288]);
              unsigned char v; printf("old gone: %d\n", mincore(r, 4096, &v) == -1 && errno == ENOMEM);
              /* shrink */
              char *s = mremap(m, 16384, 4096, 0);
              printf("shrunk: %d tail gone: %d\n", s == m, mincore(m + 4096, 4096, &v) == -1);
              /* fixed */
              char *target = mmap(NULL, 8192, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
              char *f = mremap(s, 4096, 8192, MREMAP_MAYMOVE | MREMAP_FIXED, target);
              printf("fixed: %d %c %d\n", f == target, f[0], f[4096]);
              f[4096] = 'w';
              /* dontunmap: the old range stays, empty */
              char *du = DU(f, 8192, 8192, MREMAP_MAYMOVE | MREMAP_DONTUNMAP);
              printf("dontunmap: moved %d %c %c old %d %d\n", du != f, du[0], du[4096], f[0], f[4096]);
              show("dontunmap size change", DU(du, 8192, 4096, MREMAP_MAYMOVE | MREMAP_DONTUNMAP));
              show("dontunmap without maymove", DU(du, 8192, 8192, MREMAP_DONTUNMAP));
              show("dontunmap unaligned hint", (void *)syscall(SYS_mremap, du, 8192, 8192, MREMAP_MAYMOVE | MREMAP_DONTUNMAP, 12345));
              /* file mappings: growth maps more of the file */
              char *fm = mmap(NULL, 16384, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
              munmap(fm + 4096, 12288);
              char *fg = mremap(fm, 4096, 12288, 0);
              printf("file grown: %d %c %c %c\n", fg == fm, fg[0], fg[4096], fg[8192]);
              char *fmv = mremap(fg, 12288, 16384, MREMAP_MAYMOVE);
              printf("file moved: %c %c\n", fmv[4096], fmv[12288]);
              /* shared mappings: both views stay coherent */
              char *sh = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
              char *sm = mremap(sh, 8192, 8192, MREMAP_MAYMOVE | MREMAP_FIXED, fmv + 65536 * 4);
              show("shared fixed move", sm);
              sm[0] = 'S';
              char b[2] = {0}; pread(fd, b, 1, 0);
              printf("file sees: %c\n", b[0]);
              char *an = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
              an[0] = 'A';
              pid_t c = fork();
              if (c == 0) { char *moved = mremap(an, 4096, 4096, MREMAP_MAYMOVE | MREMAP_FIXED, an + 4096 * 64); moved[1] = 'C'; _exit(0); }
              waitpid(c, 0, 0);
              printf("shared anon after child moved and wrote: %c%c\n", an[0], an[1]);
              char *ag = mremap(an, 4096, 8192, MREMAP_MAYMOVE);
              printf("shared anon grown: %c\n", ag[0]);
              show("duplicate private", mremap(du, 0, 4096, MREMAP_MAYMOVE));
              /* errors */
              show("unaligned", mremap(du + 1, 4096, 4096, 0));
              show("zero new size", mremap(du, 4096, 0, 0));
              show("bad flags", mremap(du, 4096, 4096, 8));
              show("fixed without maymove", mremap(du, 4096, 4096, MREMAP_FIXED, target));
              show("unmapped", mremap((void *)0x10000, 4096, 8192, MREMAP_MAYMOVE));
              show("across mappings", mremap(du, 8192 * 4, 8192 * 8, MREMAP_MAYMOVE));
              show("overlapping fixed", mremap(du, 8192, 8192, MREMAP_MAYMOVE | MREMAP_FIXED, du + 4096));
              show("unaligned fixed", mremap(du, 4096, 4096, MREMAP_MAYMOVE | MREMAP_FIXED, du + 65537));
              return 0;
            }
            """#, name: "mremap", args: [dir.path], in: dir)
        #expect(out.contains("grown in place: 1 r 0\n"))
        #expect(out.contains("file grown: 1 a b c\n"))
        #expect(out.contains("shared anon after child moved and wrote: AC\n"))
    }

    @Test func growsDownStacks() throws {
        let out = try Harness.matchesNative(#"""
            #define _GNU_SOURCE
            #include <errno.h>
            #include <setjmp.h>
            #include <signal.h>
            #include <stdio.h>
            #include <string.h>
            #include <sys/mman.h>
            #include <unistd.h>
            static sigjmp_buf back;
            static void segv(int s) { siglongjmp(back, 1); }
            static int touch(volatile char *p) {
              if (sigsetjmp(back, 1)) return 0;
              *p = 1;
              return 1;
            }
            static int mapped(void *p) { unsigned char v; return mincore((void *)((unsigned long)p & ~4095UL), 4096, &v) == 0; }
            int main(void) {
              static char altstack[65536];
              stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack};
              sigaltstack(&ss, 0);
              struct sigaction sa = {.sa_handler = segv, .sa_flags = SA_ONSTACK};
              sigaction(SIGSEGV, &sa, 0);
              /* a region with room below, then a GROWSDOWN mapping at its top */
              char *region = mmap(NULL, 64 << 20, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
              munmap(region, 64 << 20);
              char *top = region + (32 << 20);
              char *s = mmap(top, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_GROWSDOWN | MAP_FIXED, -1, 0);
              printf("mapped: %d\n", s == top);
              printf("touch just below: %d mapped %d\n", touch(s - 1), mapped(s - 1));
              printf("touch 100 pages below: %d\n", touch(s - 4096 * 100));
              char buf[512]; FILE *f = fopen("/proc/self/maps", "r"); int n = 0;
              while (fgets(buf, sizeof buf, f)) { unsigned long a, b; sscanf(buf, "%lx-%lx", &a, &b); if (b == (unsigned long)s + 8192) printf("grown to %lu pages\n", (b - a) / 4096), n++; }
              fclose(f);
              /* a mapping just below blocks growth within the guard gap */
              char *blocker = mmap(s - 4096 * 300, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
              printf("blocker: %d\n", blocker == s - 4096 * 300);
              printf("touch within the gap: %d\n", touch(s - 4096 * 150));
              printf("touch far below, not growsdown: %d\n", touch(blocker - 4096 * 10));
              /* beyond RLIMIT_STACK (8 MiB) */
              munmap(blocker, 4096);
              printf("touch 9 MiB below: %d\n", touch(s - (9 << 20)));
              /* GROWSDOWN refused for files and shared memory */
              void *bad = mmap(NULL, 4096, PROT_READ, MAP_SHARED | MAP_ANONYMOUS | MAP_GROWSDOWN, -1, 0);
              printf("shared growsdown: %s\n", bad == MAP_FAILED ? strerrorname_np(errno) : "mapped");
              f = fopen("/proc/self/smaps", "r"); int gd = 0;
              while (fgets(buf, sizeof buf, f)) if (!strncmp(buf, "VmFlags:", 8) && strstr(buf, " gd ")) gd++;
              printf("smaps gd mappings: %d\n", gd);
              return 0;
            }
            """#, name: "growsdown", in: dir)
        #expect(out.contains("grown to 102 pages\n"))
        #expect(out.contains("touch within the gap: 0\n"))
    }

    @Test func mlockAndMincore() throws {
        let out = try Harness.matchesNative(#"""
            #define _GNU_SOURCE
            #include <stdio.h>
            #include <errno.h>
            #include <string.h>
            #include <sys/mman.h>
            int main(void) {
              char *n = mmap(NULL, 8192, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
              int r = mlock(n, 8192); printf("mlock none %d %s\n", r, r ? strerrorname_np(errno) : "");
              char *a = mmap(NULL, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
              unsigned char v[2];
              mincore(a, 8192, v); printf("before %d %d\n", v[0], v[1]);
              r = mlock(a + 100, 4096); printf("mlock unaligned %d %s\n", r, r ? strerrorname_np(errno) : "");
              mincore(a, 8192, v); printf("after %d %d\n", v[0], v[1]);
              r = mlock2(a, 4096, 2); printf("mlock2 bad %d %s\n", r, r ? strerrorname_np(errno) : "");
              r = madvise(a, 4096, MADV_DONTNEED); printf("dontneed locked %d %s\n", r, r ? strerrorname_np(errno) : "");
              r = mincore(a + 1, 4096, v); printf("mincore unaligned %d %s\n", r, r ? strerrorname_np(errno) : "");
              r = mincore(a, 4096, (void*)8); printf("mincore bad vec %d %s\n", r, r ? strerrorname_np(errno) : "");
              r = mlockall(0); printf("mlockall 0 %d %s\n", r, r ? strerrorname_np(errno) : "");
              r = mlockall(MCL_ONFAULT); printf("mlockall onfault %d %s\n", r, r ? strerrorname_np(errno) : "");
              r = munlock(a, 8192 * 16); printf("munlock hole %d %s\n", r, r ? strerrorname_np(errno) : "");
              char buf[256]; FILE *f = fopen("/proc/self/status", "r"); while (fgets(buf, 256, f)) if (!strncmp(buf, "VmLck", 5)) fputs(buf, stdout);
              return 0;
            }
            """#, name: "mlock", in: dir)
        #expect(out.contains("after 1 1\n"))
    }

    @Test func mmapFlagsAsLinux() throws {
        let out = try Harness.matchesNative(#"""
            #define _GNU_SOURCE
            #include <stdio.h>
            #include <errno.h>
            #include <string.h>
            #include <fcntl.h>
            #include <sys/mman.h>
            #define T(n, e) do { void *p = (e); printf("%s: %s %s\n", n, p == MAP_FAILED ? strerrorname_np(errno) : "ok", p == MAP_FAILED ? "" : (unsigned long)p >= 0x40000000 && (unsigned long)p < 0x80000000 ? "low" : "high"); } while (0)
            int main(int argc, char **argv) {
              int fd = open(argv[0], O_RDONLY);
              T("huge anon", mmap(NULL, 2 << 20, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_HUGETLB, -1, 0));
              T("huge anon shared", mmap(NULL, 2 << 20, PROT_READ|PROT_WRITE, MAP_SHARED|MAP_ANONYMOUS|MAP_HUGETLB, -1, 0));
              T("huge 1g", mmap(NULL, 2 << 20, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_HUGETLB|(30 << 26), -1, 0));
              T("huge bad size", mmap(NULL, 2 << 20, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_HUGETLB|(25 << 26), -1, 0));
              T("huge file", mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|MAP_HUGETLB, fd, 0));
              T("32bit", mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS|MAP_32BIT, -1, 0));
              T("32bit again", mmap(NULL, 8192, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS|MAP_32BIT, -1, 0));
              T("32bit hint", mmap((void*)0x50000000, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS|MAP_32BIT, -1, 0));
              T("32bit high hint", mmap((void*)0x300000000, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS|MAP_32BIT, -1, 0));
              T("validate unknown", mmap(NULL, 4096, PROT_READ, MAP_SHARED_VALIDATE|0x40, fd, 0));
              T("validate sync", mmap(NULL, 4096, PROT_READ, MAP_SHARED_VALIDATE|MAP_SYNC, fd, 0));
              T("validate noreplace", mmap(NULL, 4096, PROT_READ, MAP_SHARED_VALIDATE|MAP_FIXED_NOREPLACE, fd, 0));
              T("validate anon unknown", mmap(NULL, 4096, PROT_READ, MAP_SHARED_VALIDATE|MAP_ANONYMOUS|0x40, -1, 0));
              T("validate ok", mmap(NULL, 4096, PROT_READ, MAP_SHARED_VALIDATE|MAP_POPULATE, fd, 0));
              T("growsdown shared", mmap(NULL, 4096, PROT_READ, MAP_SHARED|MAP_ANONYMOUS|MAP_GROWSDOWN, -1, 0));
              T("growsdown file", mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|MAP_GROWSDOWN, fd, 0));
              T("type 0", mmap(NULL, 4096, PROT_READ, MAP_ANONYMOUS, -1, 0));
              T("type droppable", mmap(NULL, 4096, PROT_READ, 0x8|MAP_ANONYMOUS, -1, 0));
              T("type 5", mmap(NULL, 4096, PROT_READ, 0x5|MAP_ANONYMOUS, -1, 0));
              T("noreserve", mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE, -1, 0));
              char *a = mmap(NULL, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_POPULATE, -1, 0);
              unsigned char v[2]; mincore(a, 8192, v); printf("populate %d %d\n", v[0], v[1]);
              char *b = mmap(NULL, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0);
              mincore(b, 8192, v); printf("plain %d %d\n", v[0], v[1]);
              b[0] = 1;
              mincore(b, 8192, v); printf("touched %d %d\n", v[0], v[1]);
              T("noreplace taken", mmap(b, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED_NOREPLACE, -1, 0));
              T("noreplace unaligned", mmap(b + 1, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED_NOREPLACE, -1, 0));
              T("noreplace free", mmap(b - 4096 * 16, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED_NOREPLACE, -1, 0));
              return 0;
            }
            """#, name: "mapflags", in: dir)
        #expect(out.contains("32bit: ok low\n"))
        #expect(out.contains("huge anon: ENOMEM \n"))
        #expect(out.contains("populate 1 1\nplain 0 0\ntouched 1 0\n"))
    }

    /// Pages the guest has touched (so the vCPU holds translations of them)
    /// and that munmap or a MAP_FIXED mapping then takes away: the next
    /// access faults or sees the new page, never the old frame, also when
    /// the frames come back at other addresses; and pages written, then
    /// narrowed by mprotect, fault on a write and keep their bytes
    /// (GuestMemory's translationsChanged: a discarded frame needs no
    /// memslot round trip; a narrowed page moves to a fresh frame).
    @Test func touchedPagesUnmappedOrReplaced() throws {
        let out = try Harness.matchesNative(#"""
            #define _GNU_SOURCE
            #include <fcntl.h>
            #include <setjmp.h>
            #include <signal.h>
            #include <stdio.h>
            #include <string.h>
            #include <sys/mman.h>
            #include <sys/wait.h>
            #include <unistd.h>
            static sigjmp_buf env;
            static void segv(int s) { (void)s; siglongjmp(env, 1); }
            static int reads(volatile char *p) { if (sigsetjmp(env, 1)) return -1; return *p; }
            static int writes(volatile char *p) { if (sigsetjmp(env, 1)) return -1; *p = 'w'; return 0; }
            int main(int argc, char **argv) {
              signal(SIGSEGV, segv);
              char path[256]; snprintf(path, sizeof path, "%s/touched-file", argv[1]);
              int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
              char block[4096]; memset(block, 'f', sizeof block); write(fd, block, sizeof block);
              int faults = 0, stale = 0;
              char *s = mmap(NULL, 2 * 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
              for (int round = 0; round < 40; round++) {
                char *a = mmap(NULL, 4 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                for (int i = 0; i < 4; i++) a[i * 4096] = 'a' + round % 20;
                /* replaced by fresh anonymous pages, and by a file's page */
                mmap(a, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
                if (a[0] != 0) stale++;
                mmap(a + 4096, 4096, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, 0);
                if (a[4096] != 'f') stale++;
                if (writes(a + 4096) == -1) faults++;
                /* gone, while other mappings take the frames */
                munmap(a + 2 * 4096, 2 * 4096);
                char *b = mmap(s, 2 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
                b[0] = 'b'; b[4096] = 'b';
                if (reads(a + 2 * 4096) == -1) faults++;
                if (reads(a + 3 * 4096) == -1) faults++;
                if (writes(a + 3 * 4096) == -1) faults++;
                /* narrowed: read-only, then nothing, then writable again: the bytes stay */
                a[0] = 'c';
                mprotect(a, 4096, PROT_READ);
                if (writes(a) == -1) faults++;
                if (a[0] != 'c') stale++;
                mprotect(a, 4096, PROT_NONE);
                if (reads(a) == -1) faults++;
                mprotect(a, 4096, PROT_READ | PROT_WRITE);
                if (a[0] != 'c') stale++;
                munmap(a, 2 * 4096);
                if (reads(a) == -1) faults++;
                if (reads(a + 4096) == -1) faults++;
                if (b[0] != 'b' || b[4096] != 'b') stale++;
                mmap(s, 2 * 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
              }
              /* a large region narrowed at once */
              char *big = mmap(NULL, 200 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
              for (int i = 0; i < 200; i++) big[i * 4096] = 'g';
              mprotect(big, 200 * 4096, PROT_READ);
              if (writes(big + 150 * 4096) == -1) faults++;
              if (big[150 * 4096] != 'g') stale++;
              /* a fork child's pages keep their protections (its machine ran nothing yet) */
              fflush(stdout);
              pid_t c = fork();
              if (c == 0) {
                printf("child: %s %c\n", writes(big) == -1 ? "read-only" : "writable", big[0]);
                fflush(stdout);
                _exit(0);
              }
              waitpid(c, 0, 0);
              printf("faults %d stale %d\n", faults, stale);
              return 0;
            }
            """#, name: "touched", args: [dir.path], in: dir)
        #expect(out == "child: read-only g\nfaults 321 stale 0\n")
    }

    @Test func msyncAsLinux() throws {
        let out = try Harness.matchesNative(#"""
            #define _GNU_SOURCE
            #include <errno.h>
            #include <fcntl.h>
            #include <stdio.h>
            #include <string.h>
            #include <sys/mman.h>
            #include <sys/wait.h>
            #include <unistd.h>
            static void show(const char *what, int r) { printf("%s: %d %s\n", what, r, r < 0 ? strerrorname_np(errno) : ""); }
            int main(int argc, char **argv) {
              char path[256]; snprintf(path, sizeof path, "%s/msync-file", argv[1]);
              int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
              ftruncate(fd, 8192);
              char *m = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
              strcpy(m, "async");
              show("MS_ASYNC", msync(m, 8192, MS_ASYNC));
              char b[16] = {0}; pread(fd, b, 5, 0); printf("file: %s\n", b);
              strcpy(m + 4096, "sync");
              show("MS_SYNC", msync(m + 4096, 4096, MS_SYNC));
              memset(b, 0, sizeof b); pread(fd, b, 4, 4096); printf("file: %s\n", b);
              pwrite(fd, "by pwrite", 9, 100);
              show("MS_INVALIDATE", msync(m, 4096, MS_INVALIDATE));
              printf("mapping: %s\n", m + 100);
              show("both", msync(m, 4096, MS_SYNC | MS_ASYNC));
              show("bad flag", msync(m, 4096, 8));
              show("unaligned", msync(m + 1, 4096, MS_SYNC));
              show("zero", msync(m, 0, MS_SYNC));
              show("outside", msync((void *)0x800000000000, 4096, MS_SYNC));
              show("wraps", msync(m, (size_t)-4096, MS_SYNC));
              munmap(m + 4096, 4096);
              show("hole", msync(m, 8192, MS_SYNC));
              char *l = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_LOCKED, -1, 0);
              show("invalidate locked", msync(l, 4096, MS_INVALIDATE));
              show("sync locked", msync(l, 4096, MS_SYNC));
              pid_t c = fork();
              if (c == 0) { strcpy(m + 200, "from the child"); msync(m, 4096, MS_SYNC); _exit(0); }
              waitpid(c, 0, 0);
              memset(b, 0, sizeof b); pread(fd, b, 14, 200); printf("file after the child's msync: %s\n", b);
              unlink(path);
              return 0;
            }
            """#, name: "msync", args: [dir.path], in: dir)
        #expect(out.contains("invalidate locked: -1 EBUSY\n"))
        #expect(out.hasSuffix("file after the child's msync: from the child\n"))
    }

    /// RLIMIT_NOFILE on the guest's own table: EMFILE for every call that
    /// makes a descriptor, EBADF for dup2/dup3 at the limit, and SCM_RIGHTS
    /// cut short with MSG_CTRUNC.
    @Test func openFileLimit() throws {
        let out = try Harness.matchesNative(#"""
            #define _GNU_SOURCE
            #include <errno.h>
            #include <fcntl.h>
            #include <stdio.h>
            #include <string.h>
            #include <sys/epoll.h>
            #include <sys/eventfd.h>
            #include <sys/resource.h>
            #include <sys/socket.h>
            #include <sys/uio.h>
            #include <sys/wait.h>
            #include <unistd.h>
            #define T(name, e) do { int r_ = (e); printf("%s: %s\n", name, r_ >= 0 ? "ok" : strerrorname_np(errno)); } while (0)
            int main(void) {
              struct rlimit rl; getrlimit(RLIMIT_NOFILE, &rl);
              printf("inherited limit matches /proc: ");
              { char b[256]; FILE *f = fopen("/proc/self/limits", "r"); long s = -1; while (fgets(b, 256, f)) if (!strncmp(b, "Max open files", 14)) sscanf(b + 26, "%ld", &s); fclose(f); printf("%d\n", s == (long)rl.rlim_cur); }
              int sv[2]; socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
              rl.rlim_cur = 16; setrlimit(RLIMIT_NOFILE, &rl);
              int last = -1, n = 0;
              while ((last = open("/dev/null", O_RDONLY)) >= 0) n++;
              printf("opened %d more, then %s\n", n, strerrorname_np(errno));
              T("dup", dup(0));
              T("dup2 below", dup2(0, 15));
              T("dup2 at limit", dup2(0, 16));
              T("dup3 at limit", dup3(0, 16, O_CLOEXEC));
              T("fcntl F_DUPFD at limit", fcntl(0, F_DUPFD, 16));
              T("fcntl F_DUPFD below", fcntl(0, F_DUPFD, 3));
              int p[2]; T("pipe", pipe(p));
              T("socket", socket(AF_UNIX, SOCK_STREAM, 0));
              T("epoll_create1", epoll_create1(0));
              T("eventfd", eventfd(0, 0));
              /* SCM_RIGHTS: room for one of the three descriptors sent */


              int fds[3] = {0, 1, 2};
              char cbuf[CMSG_SPACE(sizeof fds)] = {0};
              char byte = 'x';
              struct iovec iov = {&byte, 1};
              struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
              struct cmsghdr *c = CMSG_FIRSTHDR(&m);
              c->cmsg_level = SOL_SOCKET; c->cmsg_type = SCM_RIGHTS; c->cmsg_len = CMSG_LEN(sizeof fds);
              memcpy(CMSG_DATA(c), fds, sizeof fds);
              /* sv[1] was opened before the limit dropped: close one low fd to make room for exactly... */
              T("sendmsg", sendmsg(sv[0], &m, 0));
              char rbuf[CMSG_SPACE(sizeof fds)] = {0};
              struct msghdr r = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = rbuf, .msg_controllen = sizeof rbuf};
              close(12);
              T("recvmsg", recvmsg(sv[1], &r, 0));
              struct cmsghdr *rc = CMSG_FIRSTHDR(&r);
              printf("MSG_CTRUNC %d controllen %zu fds %zu\n", !!(r.msg_flags & MSG_CTRUNC), (size_t)r.msg_controllen,
                     rc ? (rc->cmsg_len - CMSG_LEN(0)) / sizeof(int) : 0);
              if (rc) { int got[3]; memcpy(got, CMSG_DATA(rc), rc->cmsg_len - CMSG_LEN(0)); printf("received as %d\n", got[0]); }
              T("sendmsg again", sendmsg(sv[0], &m, 0));
              struct msghdr r2 = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = rbuf, .msg_controllen = sizeof rbuf};
              T("recvmsg full", recvmsg(sv[1], &r2, 0));
              printf("MSG_CTRUNC %d controllen %zu\n", !!(r2.msg_flags & MSG_CTRUNC), (size_t)r2.msg_controllen);
              /* raising it again gives room */
              rl.rlim_cur = 32; setrlimit(RLIMIT_NOFILE, &rl);
              T("open after raising", open("/dev/null", O_RDONLY));
              return 0;
            }
            """#, name: "nofile", in: dir)
        #expect(out.contains(" more, then EMFILE\n"))
        #expect(out.contains("MSG_CTRUNC 1 controllen 24 fds 1\n"))
    }

    @Test func processVMReadvWritev() throws {
        let out = try Harness.matchesNative(#"""
            #define _GNU_SOURCE
            #include <errno.h>
            #include <signal.h>
            #include <stdio.h>
            #include <string.h>
            #include <sys/mman.h>
            #include <sys/uio.h>
            #include <sys/wait.h>
            #include <unistd.h>
            static char secret[8192] = "the child's words";
            static void show(const char *what, ssize_t r) { printf("%s: %zd %s\n", what, r, r < 0 ? strerrorname_np(errno) : ""); }
            int main(void) {
              setvbuf(stdout, NULL, _IONBF, 0);
              int go[2], done[2]; pipe(go); pipe(done);
              char *ro = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
              strcpy(ro, "read-only page");
              mprotect(ro, 4096, PROT_READ);
              mprotect(ro + 4096, 4096, PROT_NONE);
              pid_t child = fork();
              if (child == 0) {
                strcpy(secret, "changed by the child");
                char c; write(done[1], "r", 1); read(go[0], &c, 1);
                printf("child sees: %s\n", secret + 4000);
                _exit(0);
              }
              char c; read(done[0], &c, 1);
              char a[8] = {0}, b[32] = {0};
              struct iovec local[2] = {{a, 7}, {b, 20}};
              struct iovec remote[1] = {{secret, 27}};
              show("readv", process_vm_readv(child, local, 2, remote, 1, 0));
              printf("got: [%s] [%s]\n", a, b);
              /* partial: the second remote range is PROT_NONE in the child */
              char buf[64] = {0};
              struct iovec l1 = {buf, sizeof buf};
              struct iovec r2[2] = {{ro, 10}, {ro + 4096, 10}};
              show("readv partial", process_vm_readv(child, &l1, 1, r2, 2, 0));
              struct iovec r3 = {ro + 4096, 10};
              show("readv none", process_vm_readv(child, &l1, 1, &r3, 1, 0));
              /* a write to a read-only page of the target fails; to a writable one it lands */
              struct iovec w = {"written in", 10};
              struct iovec rw1 = {ro, 10};
              show("writev read-only", process_vm_writev(child, &w, 1, &rw1, 1, 0));
              struct iovec rw2 = {secret + 4000, 11};
              struct iovec w2 = {"by writev!", 11};
              show("writev", process_vm_writev(child, &w2, 1, &rw2, 1, 0));
              show("flags", process_vm_readv(child, &l1, 1, remote, 1, 1));
              show("nothing", process_vm_readv(child, &l1, 0, remote, 1, 0));
              show("bad local", process_vm_readv(child, (struct iovec *)8, 1, remote, 1, 0));
              struct iovec badl = {(void *)0x800000000000, 8};
              show("local outside", process_vm_readv(child, &badl, 1, remote, 1, 0));
              show("too many", process_vm_readv(child, &l1, 1025, remote, 1, 0));
              show("self", process_vm_readv(getpid(), &l1, 1, remote, 1, 0));
              write(go[1], "g", 1);
              waitpid(child, 0, 0);
              show("ended", process_vm_readv(child, &l1, 1, remote, 1, 0));
              show("pid 0", process_vm_readv(0, &l1, 1, remote, 1, 0));
              return 0;
            }
            """#, name: "processvm", in: dir)
        #expect(out.contains("got: [changed] [ by the child]\n"))
        #expect(out.contains("child sees: by writev!\n"))
    }
}
