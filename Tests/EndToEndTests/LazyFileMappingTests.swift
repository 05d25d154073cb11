import Foundation
import Testing

/// Private file mappings of 128 KiB or more get their pages filled from
/// the file at their first touch (docs/architecture.md, "Demand-mapped
/// memory"): copy-on-write pages, a fork's child reading pages its parent
/// never touched, MADV_DONTNEED reading the file again, mremap, preemption
/// rollbacks of slices that first-touch and write file pages, and rdtsc in
/// a library whose pages are filled lazily.
@Suite(.serialized) struct LazyFileMappingTests {
    let dir = Harness.temporaryDirectory()

    /// A file of a bit more than 1 MiB with a different byte at each offset
    /// (and each page), mapped privately over 2 MiB, is the shared setup.
    static let setup = #"""
        #define _GNU_SOURCE
        #include <fcntl.h>
        #include <stdio.h>
        #include <stdlib.h>
        #include <string.h>
        #include <sys/mman.h>
        #include <sys/wait.h>
        #include <unistd.h>
        static size_t size = (1 << 20) + 100;
        static unsigned char *file;
        static unsigned char *mapFile(const char *path, size_t len) {
          int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
          file = malloc(size);
          for (size_t i = 0; i < size; i++) file[i] = (unsigned char)(i * 7 + i / 4096);
          if (write(fd, file, size) != (ssize_t)size) return 0;
          unsigned char *p = mmap(0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
          close(fd); unlink(path);
          return p == MAP_FAILED ? 0 : p;
        }
        /* How many pages of [from, to) differ from the file (0 past its end). */
        static int wrong(unsigned char *p, size_t from, size_t to) {
          int n = 0;
          for (size_t page = from; page < to; page += 4096) {
            for (size_t i = page; i < page + 4096; i++) if (p[i] != (i < size ? file[i] : 0)) { n++; break; }
          }
          return n;
        }
        """#

    @Test func touchedWrittenAndForkedPagesReadTheFile() throws {
        let out = try Harness.matchesNative(LazyFileMappingTests.setup + #"""
            int main(void) {
              unsigned char *p = mapFile("lazy-fork.dat", 2 << 20);
              if (!p) { perror("map"); return 1; }
              unsigned long sum = 0;
              for (size_t off = 0; off < size; off += 37 * 4096) sum += p[off] + p[off + 100];
              printf("sum %lu tail %d %d\n", sum, p[size - 1], p[size]);
              p[5 * 4096 + 3] ^= 0x55;   /* copy on write */
              fflush(stdout);
              pid_t c = fork();
              if (c == 0) {
                /* every page but the written one, most never touched by the parent */
                printf("child: %d wrong pages, written %d\n", wrong(p, 0, 5 * 4096) + wrong(p, 6 * 4096, 256 * 4096 + 4096),
                       p[5 * 4096 + 3] ^ file[5 * 4096 + 3]);
                p[9 * 4096] = 1;
                fflush(stdout); _exit(0);
              }
              waitpid(c, 0, 0);
              printf("parent: written %d, child's write unseen %d, %d wrong pages\n", p[5 * 4096 + 3] ^ file[5 * 4096 + 3],
                     p[9 * 4096] == file[9 * 4096], wrong(p, 6 * 4096, 256 * 4096 + 4096));
              char *q = mremap(p, 2 << 20, 4 << 20, MREMAP_MAYMOVE);
              printf("moved: %d wrong pages\n", wrong((unsigned char *)q, 6 * 4096, 256 * 4096 + 4096));
              return 0;
            }
            """#, name: "lazy-fork", in: dir)
        #expect(out.contains("child: 0 wrong pages, written 85\n"), "\(out)")
        #expect(out.contains("parent: written 85, child's write unseen 1, 0 wrong pages\nmoved: 0 wrong pages\n"), "\(out)")
    }

    @Test func dontNeedReadsTheFileAgain() throws {
        let out = try Harness.matchesNative(LazyFileMappingTests.setup + #"""
            int main(void) {
              unsigned char *p = mapFile("lazy-dontneed.dat", 2 << 20);
              if (!p) { perror("map"); return 1; }
              for (size_t off = 0; off < 64 * 4096; off += 4096) p[off + 1] = 0xee;
              printf("written %d\n", p[3 * 4096 + 1]);
              madvise(p, 32 * 4096, MADV_DONTNEED);
              /* the first 32 pages read the file again, the next 32 keep the writes */
              int kept = 0; for (size_t off = 32 * 4096; off < 64 * 4096; off += 4096) kept += p[off + 1] == 0xee;
              printf("after: %d wrong pages, %d kept\n", wrong(p, 0, 32 * 4096), kept);
              madvise(p + 40 * 4096, 200 * 4096, MADV_DONTNEED);
              printf("again: %d wrong pages\n", wrong(p, 40 * 4096, 240 * 4096));
              return 0;
            }
            """#, name: "lazy-dontneed", in: dir)
        #expect(out == "written 238\nafter: 0 wrong pages, 32 kept\nagain: 0 wrong pages\n")
    }

    /// Two threads computing without syscalls until each sees the other's
    /// progress (so slices are preempted and rolled back), each iteration
    /// first-touching a page of a private file mapping (16 pages apart: a
    /// block no one touched) and writing it. A rolled-back slice filled
    /// those pages from the file: the rollback must leave them as filled,
    /// not zero, so each page reads the file plus its thread's count,
    /// with every checkpoint method.
    @Test(arguments: ["", "full-copy", "dirty-log"])
    func rollbacksOfSlicesThatFillFilePages(checkpoints: String) throws {
        let exe = try Harness.compile(#"""
            #include <fcntl.h>
            #include <pthread.h>
            #include <stdio.h>
            #include <stdint.h>
            #include <stdlib.h>
            #include <sys/mman.h>
            #include <unistd.h>
            #define PAGES 4096
            static volatile long progress[2];
            static unsigned char *area, *file;
            static void *run(void *a) { int me = (int)(long)a;
              while (progress[1 - me] < 100 || progress[me] < 100) {
                long i = progress[me];
                volatile uint32_t *c = (volatile uint32_t *)(area + ((size_t)(me * (PAGES / 2) + (i * 16) % (PAGES / 2)) << 12));
                *c = *c + 1;
                progress[me] = i + 1;
              }
              return a; }
            int main(void) {
              size_t size = (size_t)PAGES << 12;
              file = malloc(size);
              for (size_t i = 0; i < size; i++) file[i] = (unsigned char)(i * 13 + i / 4096 + 1);
              int fd = open("lazy-threads.dat", O_RDWR | O_CREAT | O_TRUNC, 0600);
              if (write(fd, file, size) != (ssize_t)size) return 1;
              area = mmap(0, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
              close(fd); unlink("lazy-threads.dat");
              if (area == MAP_FAILED) return 1;
              pthread_t t[2]; for (long i = 0; i < 2; i++) pthread_create(&t[i], 0, run, (void *)i);
              for (int i = 0; i < 2; i++) pthread_join(t[i], 0);
              int ok[2] = {1, 1};
              for (int me = 0; me < 2; me++) { long sum = 0;
                for (int k = 0; k < PAGES / 2; k++) { size_t at = (size_t)(me * (PAGES / 2) + k) << 12;
                  sum += *(uint32_t *)(area + at) - *(uint32_t *)(file + at);
                  for (int b = 4; b < 4096; b++) if (area[at + b] != file[at + b]) ok[me] = 0; }
                if (sum != progress[me]) ok[me] = 0; }
              printf("area %s %s\n", ok[0] ? "ok" : "WRONG", ok[1] ? "ok" : "WRONG"); return 0; }
            """#, name: "lazythreads", in: dir)
        let environment = checkpoints.isEmpty ? [:] : ["DETREC_CHECKPOINTS": checkpoints]
        let native = try Harness.run([exe])
        #expect(native.stdout == "area ok ok\n")
        let trace = dir.appendingPathComponent("lazythreads-\(checkpoints)-\(UUID().uuidString.prefix(8))")
        let rec = try Harness.record([exe], trace: trace, environment: environment)
        #expect(rec.status == 0, "\(rec.stderr)")
        #expect(rec.stdout == native.stdout)
        let rep = try Harness.run([Harness.detrec, "replay", trace.path], environment: environment)
        #expect(rep.stdout == rec.stdout, "\(rep.stderr)")
        let preemptions = try Harness.dumpJSON(trace).filter { $0["kind"] as? String == "preempt" }
        #expect(preemptions.count >= 1)
    }

    /// A library of more than 128 KiB (its text padded) is mapped lazily;
    /// its rdtsc and cpuid, on a page far from the first one touched, are
    /// still found (from the file's bytes, not guest memory) and patched
    /// when their page is filled: the reads are logged and replay.
    @Test func rdtscInALazilyMappedLibraryIsPatched() throws {
        let lib = try Harness.compile(#"""
            #include <cpuid.h>
            #include <x86intrin.h>
            __attribute__((section(".text.pad"), used)) static const unsigned char pad[512 << 10] = {1};
            unsigned long long tick(void) { return __rdtsc(); }
            unsigned vendor(void) { unsigned a, b, c, d; __cpuid(0, a, b, c, d); return b; }
            int padByte(int i) { return pad[i]; }
            """#, name: "liblazytick.so", flags: ["-shared", "-fPIC"], in: dir)
        let exe = try Harness.compile(#"""
            #include <stdio.h>
            #include <string.h>
            #include <x86intrin.h>
            unsigned long long tick(void);
            unsigned vendor(void);
            int padByte(int);
            int main(void) {
              unsigned long long a = tick(), b = tick(), c = __rdtsc();
              /* the kernel reads the library's code as the file has it */
              unsigned char code[16]; FILE *m = fopen("/proc/self/mem", "r");
              fseek(m, (long)tick, SEEK_SET); fread(code, 1, sizeof code, m); fclose(m);
              int seen = 0; for (int i = 0; i + 1 < 16; i++) if (code[i] == 0x0f && code[i + 1] == 0x31) seen = 1;
              /* unpatched, the library's reads would replay other values */
              printf("%llu %llu ordered %d vendor %d code %d pad %d\n", a, b, a <= b && b <= c, vendor() != 0, seen, padByte(0));
              return 0;
            }
            """#, name: "lazytick", flags: ["-Wl,--no-as-needed", lib], in: dir)
        let native = try Harness.run([exe])
        #expect(native.stdout.hasSuffix(" ordered 1 vendor 1 code 1 pad 1\n"), "\(native.stdout)")
        let (rec, trace) = try Harness.roundTrip([exe], in: dir)
        #expect(rec.stdout.hasSuffix(" ordered 1 vendor 1 code 1 pad 1\n"), "\(rec.stderr)")
        // ld.so reads the counter too: more than the program's three.
        let reads = try Harness.dumpJSON(trace).filter { $0["name"] as? String == "rdtsc" }.count
        #expect(reads > 3, "\(reads) rdtsc reads logged")
    }
}
