import Foundation
import Testing

/// MAP_SHARED as Linux has it: writable file mappings, /dev/shm and memfds
/// coherent with read/write and between recorded processes, shared
/// anonymous memory across fork, futexes in it, and a replay that takes
/// the shared pages from the trace without touching the files.
@Suite(.serialized) struct SharedMemoryTests {
    let dir = Harness.temporaryDirectory()

    @Test func sharedFileMappingsAreCoherentWithReadWriteAndAcrossFork() throws {
        let path = dir.appendingPathComponent("shared-\(UUID().uuidString.prefix(8))").path
        let out = try Harness.matchesNative(#"""
            #define _GNU_SOURCE
            #include <fcntl.h>
            #include <stdio.h>
            #include <string.h>
            #include <sys/mman.h>
            #include <sys/wait.h>
            #include <unistd.h>
            int main(int argc, char **argv) {
              int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
              ftruncate(fd, 8192);
              char *m = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
              strcpy(m, "through the mapping");
              char buf[64] = {0};
              pread(fd, buf, 19, 0);
              printf("read sees: %s\n", buf);
              pwrite(fd, "by pwrite", 9, 4096);
              printf("mapping sees: %s\n", m + 4096);
              pid_t c = fork();
              if (c == 0) { strcpy(m + 100, "from the child"); _exit(0); }
              waitpid(c, 0, 0);
              printf("parent sees: %s\n", m + 100);
              msync(m, 8192, MS_SYNC);
              int other = open(argv[1], O_RDWR);
              memset(buf, 0, sizeof buf);
              pread(other, buf, 14, 100);
              printf("another descriptor reads: %s\n", buf);
              strcpy(m + 300, "before munmap");
              munmap(m, 8192);
              memset(buf, 0, sizeof buf);
              pread(fd, buf, 13, 300);
              printf("after munmap the file has: %s\n", buf);
              int ro = open(argv[1], O_RDONLY);
              void *bad = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, ro, 0);
              printf("read-only descriptor: %s\n", bad == MAP_FAILED ? "refused" : "mapped");
              unlink(argv[1]);
              return 0;
            }
            """#, name: "sharedfile", args: [path], in: dir)
        #expect(out == """
            read sees: through the mapping
            mapping sees: by pwrite
            parent sees: from the child
            another descriptor reads: from the child
            after munmap the file has: before munmap
            read-only descriptor: refused

            """)
    }

    /// Each host call that can change a mapped file's contents (a write
    /// through another descriptor or process, O_TRUNC, ftruncate,
    /// copy_file_range, fallocate's hole) is followed by the mappings
    /// reading it again; other calls leave them alone (SharedFileChanges).
    @Test func callsThatChangeAMappedFileAreSeenByItsMappings() throws {
        let path = dir.appendingPathComponent("changed-\(UUID().uuidString.prefix(8))").path
        let out = try Harness.matchesNative(#"""
            #define _GNU_SOURCE
            #include <fcntl.h>
            #include <stdio.h>
            #include <string.h>
            #include <sys/mman.h>
            #include <sys/wait.h>
            #include <unistd.h>
            int main(int argc, char **argv) {
              int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
              ftruncate(fd, 8192);
              char *m = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
              strcpy(m, "first");
              pid_t c = fork();
              if (c == 0) {
                int other = open(argv[1], O_WRONLY);
                pwrite(other, "child's pwrite", 14, 16);
                _exit(0);
              }
              waitpid(c, 0, 0);
              printf("after the child: %s / %s\n", m, m + 16);
              int again = open(argv[1], O_WRONLY);
              write(again, "by write", 8);
              getpid();
              printf("after write: %.8s\n", m);
              int src = open("/proc/self/exe", O_RDONLY);
              off_t in = 1, out = 4096;
              copy_file_range(src, &in, fd, &out, 3, 0);
              printf("after copy_file_range: %.3s\n", m + 4096);
              fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096);
              printf("after punching a hole: %d %d\n", m[0], m[16]);
              pwrite(fd, "xyz", 3, 4200);
              close(open(argv[1], O_RDWR | O_TRUNC));
              ftruncate(fd, 8192);
              printf("after O_TRUNC: %d %d\n", m[4200], m[4096]);
              unlink(argv[1]);
              return 0;
            }
            """#, name: "sharedchanged", args: [path], in: dir)
        #expect(out == """
            after the child: first / child's pwrite
            after write: by write
            after copy_file_range: ELF
            after punching a hole: 0 0
            after O_TRUNC: 0 0

            """)
    }

    /// A read-only MAP_SHARED mapping of a file shows what the file gets,
    /// from write(2) in this process or another and from another
    /// process's writable mapping (LMDB and SQLite's mmap read pages so
    /// and write with pwrite); mprotect cannot make it writable when the
    /// file is not open for writing.
    @Test func readOnlySharedMappingsShowTheFilesChanges() throws {
        let path = dir.appendingPathComponent("readonly-\(UUID().uuidString.prefix(8))").path
        let out = try Harness.matchesNative(#"""
            #define _GNU_SOURCE
            #include <errno.h>
            #include <fcntl.h>
            #include <stdio.h>
            #include <string.h>
            #include <sys/mman.h>
            #include <sys/wait.h>
            #include <unistd.h>
            int main(int argc, char **argv) {
              int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
              ftruncate(fd, 8192);
              int rofd = open(argv[1], O_RDONLY);
              const char *ro = mmap(NULL, 8192, PROT_READ, MAP_SHARED, rofd, 0);
              pwrite(fd, "own pwrite", 10, 0);
              printf("own pwrite: %.10s\n", ro);
              pid_t c = fork();
              if (c == 0) { pwrite(fd, "child's pwrite", 14, 32); _exit(0); }
              waitpid(c, 0, 0);
              getppid();
              printf("child's pwrite: %.14s\n", ro + 32);
              c = fork();
              if (c == 0) {
                char *w = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
                strcpy(w + 4096, "child's mapping");
                _exit(0);
              }
              waitpid(c, 0, 0);
              printf("child's mapping: %s\n", ro + 4096);
              int r = mprotect((void *)ro, 4096, PROT_READ | PROT_WRITE);
              printf("mprotect of the O_RDONLY one: %d %s\n", r, r ? strerror(errno) : "");
              char *rw = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
              r = mprotect(rw, 4096, PROT_READ | PROT_WRITE);
              strcpy(rw + 64, "made writable");
              char buf[16] = {0};
              pread(rofd, buf, 13, 64);
              printf("mprotect of the O_RDWR one: %d, the file has: %s\n", r, buf);
              unlink(argv[1]);
              return 0;
            }
            """#, name: "sharedreadonly", args: [path], in: dir)
        #expect(out == """
            own pwrite: own pwrite
            child's pwrite: child's pwrite
            child's mapping: child's mapping
            mprotect of the O_RDONLY one: -1 Permission denied
            mprotect of the O_RDWR one: 0, the file has: made writable

            """)
    }

    /// A process-shared semaphore in MAP_SHARED|MAP_ANONYMOUS memory and
    /// one from sem_open (/dev/shm): the futex wake of one process reaches
    /// the waiter in another. A memfd shares its pages across fork and
    /// honours F_SEAL_WRITE.
    @Test func semaphoresBetweenProcessesAndMemfdSeals() throws {
        let out = try Harness.matchesNative(#"""
            #define _GNU_SOURCE
            #include <errno.h>
            #include <fcntl.h>
            #include <semaphore.h>
            #include <stdio.h>
            #include <string.h>
            #include <sys/mman.h>
            #include <sys/wait.h>
            #include <unistd.h>
            int main(void) {
              struct shared { sem_t ready, done; int value; } *s =
                mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
              sem_init(&s->ready, 1, 0); sem_init(&s->done, 1, 0);
              pid_t c = fork();
              if (c == 0) { sem_wait(&s->ready); s->value *= 2; sem_post(&s->done); _exit(0); }
              s->value = 21;
              sem_post(&s->ready);
              sem_wait(&s->done);
              waitpid(c, 0, 0);
              printf("anonymous shared: %d\n", s->value);

              char name[64]; snprintf(name, sizeof name, "/detrec-test-%d", getpid());
              sem_t *named = sem_open(name, O_CREAT | O_EXCL, 0600, 0);
              c = fork();
              if (c == 0) { sem_post(named); _exit(0); }
              sem_wait(named);
              waitpid(c, 0, 0);
              printf("named semaphore: posted\n");
              sem_close(named); sem_unlink(name);

              int fd = memfd_create("detrec", MFD_CLOEXEC | MFD_ALLOW_SEALING);
              ftruncate(fd, 4096);
              char *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
              c = fork();
              if (c == 0) { strcpy(m, "memfd from the child"); _exit(0); }
              waitpid(c, 0, 0);
              char buf[32] = {0}; pread(fd, buf, 20, 0);
              printf("memfd: %s / read: %s\n", m, buf);
              munmap(m, 4096);
              int r = fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE);
              printf("seal: %d seals %d\n", r, fcntl(fd, F_GET_SEALS));
              void *w = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
              int e = errno;
              printf("writable mapping of a sealed memfd: %s (%s)\n", w == MAP_FAILED ? "refused" : "mapped", strerror(e));
              return 0;
            }
            """#, name: "sems", in: dir)
        #expect(out.contains("anonymous shared: 42\n"))
        #expect(out.contains("named semaphore: posted\n"))
        #expect(out.contains("memfd: memfd from the child / read: memfd from the child\n"))
        #expect(out.contains("writable mapping of a sealed memfd: refused (Operation not permitted)\n"))
    }

    /// Replay takes the shared pages from the trace: the file may be gone.
    @Test func replayTouchesNoFile() throws {
        let path = dir.appendingPathComponent("gone-\(UUID().uuidString.prefix(8))").path
        let exe = try Harness.compile(#"""
            #include <fcntl.h>
            #include <stdio.h>
            #include <string.h>
            #include <sys/mman.h>
            #include <unistd.h>
            int main(int argc, char **argv) {
              int fd = open(argv[1], O_RDWR | O_CREAT, 0600);
              ftruncate(fd, 4096);
              char *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
              m[0]++;
              char buf[8] = {0}; pwrite(fd, "abc", 3, 1); pread(fd, buf, 4, 0);
              printf("count %d then %s\n", buf[0], m + 1);
              return 0;
            }
            """#, name: "gone", in: dir)
        let trace = dir.appendingPathComponent("gone-trace")
        let rec = try Harness.record([exe, path], trace: trace)
        #expect(rec.stdout == "count 1 then abc\n")
        try "changed".write(toFile: path, atomically: false, encoding: .utf8)
        let rep = try Harness.replay(trace)
        #expect(rep.stdout == rec.stdout)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "changed")
        try FileManager.default.removeItem(atPath: path)
        let again = try Harness.replay(trace)
        #expect(again.stdout == rec.stdout)
    }

    /// A shared mapping shows the file it was made from, not whatever
    /// file has its name: a file made again under the same name after the
    /// old one was unmapped and unlinked starts from its own content (as
    /// Python's test_mmap does test after test), and a file renamed over
    /// a name still mapped leaves the old mapping, and the old file, alone.
    @Test func aFileMadeAgainUnderTheSameNameIsAnotherObject() throws {
        let path = dir.appendingPathComponent("again-\(UUID().uuidString.prefix(8))").path
        let out = try Harness.matchesNative(#"""
            #include <fcntl.h>
            #include <stdio.h>
            #include <string.h>
            #include <sys/mman.h>
            #include <unistd.h>
            static int make(const char *path, const char *text, int fill) {
              int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
              char page[4096];
              memset(page, fill, sizeof page);
              write(fd, page, sizeof page);
              write(fd, text, strlen(text));
              ftruncate(fd, 8192);
              return fd;
            }
            static char *map(int fd) {
              return mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
            }
            int main(int argc, char **argv) {
              char tmp[300];
              snprintf(tmp, sizeof tmp, "%s.new", argv[1]);
              int fd = make(argv[1], "first", 'a');
              char *m = map(fd);
              close(fd);
              memset(m, 'c', 10);
              munmap(m, 8192);
              unlink(argv[1]);
              fd = make(argv[1], "second", 0);
              m = map(fd);
              close(fd);
              getppid();
              printf("made again: [%s] first byte %d\n", m + 4096, m[0]);
              munmap(m, 8192);
              int oldfd = make(argv[1], "third", 'x');
              char *old = map(oldfd);
              close(make(tmp, "fourth", 'y'));
              rename(tmp, argv[1]);
              fd = open(argv[1], O_RDWR);
              char *now = map(fd);
              strcpy(old + 4096, "old one");
              getppid();
              char buf[16] = {0};
              pread(oldfd, buf, 7, 4096);
              printf("old mapping [%s] %c, old file [%s], mapped after the rename [%s] %c\n",
                     old + 4096, old[0], buf, now + 4096, now[0]);
              unlink(argv[1]);
              return 0;
            }
            """#, name: "mapagain", args: [path], in: dir)
        #expect(out == """
            made again: [second] first byte 0
            old mapping [old one] x, old file [old one], mapped after the rename [fourth] y

            """)
    }
    /// Three processes take turns over one shared anonymous mapping and
    /// one memfd mapping, each changing a few pages per turn (postgres's
    /// shared buffers and its /dev/shm segments): a memory coming back to
    /// the vCPU pulls only the pages changed since it last ran, and sees
    /// every one of them, whichever process changed it and however many
    /// turns ago; a page written while the other mapping's file is read
    /// around host calls is not lost.
    @Test func processesTakingTurnsSeeEveryChangedPage() throws {
        let out = try Harness.matchesNative(#"""
            #define _GNU_SOURCE
            #include <stdio.h>
            #include <sys/mman.h>
            #include <sys/wait.h>
            #include <unistd.h>
            enum { PAGES = 128, TURNS = 18, PROCS = 3 };
            int main(void) {
              volatile long *anon = mmap(0, PAGES * 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
              int fd = memfd_create("turns", 0);
              ftruncate(fd, 16 * 4096);
              volatile long *file = mmap(0, 16 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
              int to[PROCS][2];
              for (int i = 0; i < PROCS; i++) pipe(to[i]);
              for (int me = 0; me < PROCS; me++) {
                if (fork() != 0) continue;
                char c;
                for (int turn = me; turn < TURNS; turn += PROCS) {
                  read(to[me][0], &c, 1);
                  long seen = 0;
                  for (int p = 0; p < PAGES; p++) seen += anon[p * 512];
                  for (int p = 0; p < 16; p++) seen += file[p * 512];
                  anon[(turn * 7) % PAGES * 512] += turn + 1;
                  anon[(turn * 13 + 5) % PAGES * 512] += 1000;
                  file[turn % 16 * 512] += 3;
                  printf("turn %d process %d saw %ld\n", turn, me, seen);
                  fflush(stdout);
                  write(to[(me + 1) % PROCS][1], &c, 1);
                }
                _exit(0);
              }
              char c = 0;
              write(to[0][1], &c, 1);
              for (int i = 0; i < PROCS; i++) wait(0);
              long total = 0;
              for (int p = 0; p < PAGES; p++) total += anon[p * 512];
              for (int p = 0; p < 16; p++) total += file[p * 512];
              printf("total %ld\n", total);
              return 0;
            }
            """#, name: "turns", in: dir)
        #expect(out.contains("turn 17 process 2 saw"))
        #expect(out.hasSuffix("total \(171 + 18 * 1000 + 54)\n"))
    }

    /// A read-only MAP_SHARED view (glibc's gconv cache, locale files) and
    /// many reads into ordinary memory: the reads' writes miss the view, so
    /// nothing asks KVM's dirty page log, which once armed write-protects
    /// every page the guest writes (a single-threaded program needs no
    /// checkpoint either). It once made a harvest at every read.
    @Test func hostWritesOutsideSharedViewsLeaveTheDirtyLogAlone() throws {
        let path = dir.appendingPathComponent("view-\(UUID().uuidString.prefix(8))").path
        try Data(repeating: 0x61, count: 8192).write(to: URL(fileURLWithPath: path))
        let exe = try Harness.compile(#"""
            #include <fcntl.h>
            #include <stdio.h>
            #include <sys/mman.h>
            #include <unistd.h>
            int main(int argc, char **argv) {
              int fd = open(argv[1], O_RDONLY);
              const char *view = mmap(NULL, 8192, PROT_READ, MAP_SHARED, fd, 0);
              if (view == MAP_FAILED) return 2;
              char buf[64];
              long sum = 0;
              for (int i = 0; i < 200; i++) sum += pread(fd, buf, sizeof buf, i * 8);
              printf("%ld %c\n", sum, view[4096]);
              return 0;
            }
            """#, name: "viewreads", in: dir)
        let native = try Harness.run([exe, path])
        let (rec, _) = try Harness.roundTrip([exe, path], in: dir, environment: ["DETREC_PREEMPTION_STATS": "1"])
        #expect(rec.status == 0, "\(rec)")
        #expect(rec.stdout == native.stdout)
        let harvests = rec.stderr.split(separator: "\n").first { $0.hasPrefix("preemption: ") }
            .flatMap { $0.split(separator: ",").first { $0.hasSuffix(" dirty page log harvests") } }
            .flatMap { $0.split(separator: " ").first }.flatMap { Int($0) }
        #expect(harvests == 0, "\(rec.stderr)")
    }
}
