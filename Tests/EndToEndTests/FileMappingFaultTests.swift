import Testing

/// Touching a whole page of a file mapping that lies past the end of the
/// file raises SIGBUS (BUS_ADRERR) on Linux, while the rest of the file's
/// last page reads as zeros. Each program's output must match a native run,
/// and every replay the recording.
@Suite struct FileMappingFaultTests {
    /// Headers, and `touch`: reads or writes base[offset] and reports the
    /// SIGBUS or SIGSEGV it raised (with `on_fault` installed) or none.
    static let faultHelpers = #"""
    #include <errno.h>
    #include <fcntl.h>
    #include <setjmp.h>
    #include <signal.h>
    #include <stdio.h>
    #include <string.h>
    #include <sys/mman.h>
    #include <sys/wait.h>
    #include <unistd.h>
    static sigjmp_buf back;
    static volatile int signo, code;
    static volatile unsigned long address;
    static void on_fault(int s, siginfo_t *si, void *uc) {
        (void)s; (void)uc;
        signo = si->si_signo; code = si->si_code; address = (unsigned long)si->si_addr;
        siglongjmp(back, 1);
    }
    static void touch(const char *what, volatile char *base, long offset, int write) {
        if (!sigsetjmp(back, 1)) {
            if (write) base[offset] = 1; else { volatile char c = base[offset]; (void)c; }
            printf("%s: no signal\n", what);
        } else {
            printf("%s: signo=%d code=%d offset=%ld\n", what, signo, code, (long)(address - (unsigned long)base));
        }
    }

    """#
    /// Writes a 100-byte file (argv[1]) and maps 3 pages of it. With
    /// "handle", a SIGBUS handler reports each fault on pages 1 and 2 and
    /// jumps back; without it, touching page 1 ends the program.
    static let program = faultHelpers + #"""
    int main(int argc, char **argv) {
        int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
        char buf[100];
        memset(buf, 'x', sizeof buf);
        if (write(fd, buf, sizeof buf) != sizeof buf) return 2;
        volatile char *m = mmap(0, 3 * 4096, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) return 3;
        printf("byte99=%c byte100=%d byte4095=%d\n", m[99], m[100], m[4095]);
        /* The mapping still shows whole, with its own rights. */
        FILE *f = fopen("/proc/self/maps", "r");
        char line[512];
        while (f && fgets(line, sizeof line, f)) {
            unsigned long start, end, offset; char perms[5];
            if (strstr(line, "data.bin") && sscanf(line, "%lx-%lx %4s %lx", &start, &end, perms, &offset) == 4)
                printf("maps: %s offset=%lx size=%lu at base=%d\n", perms, offset, end - start, start == (unsigned long)m);
        }
        if (f) fclose(f);
        fflush(stdout);
        if (argc > 2 && !strcmp(argv[2], "handle")) {
            sigset_t none; sigemptyset(&none); sigprocmask(SIG_SETMASK, &none, 0);   /* the test runner blocks some */
            struct sigaction sa; memset(&sa, 0, sizeof sa);
            sa.sa_sigaction = on_fault; sa.sa_flags = SA_SIGINFO;
            sigaction(SIGBUS, &sa, 0);
            touch("page 1", m, 4096 + 7, 0);
            touch("page 2", m, 2 * 4096, 0);
            /* mprotect gives the mapping new rights, but the pages past the file still fault. */
            printf("mprotect=%d\n", mprotect((void *)m, 3 * 4096, PROT_READ | PROT_WRITE));
            touch("page 0 write", m, 5, 1);
            touch("page 2 write", m, 2 * 4096 + 1, 1);
            printf("done\n");
            return 0;
        }
        printf("touching page 1\n");
        fflush(stdout);
        return m[4096 + 7];
    }
    """#

    @Test func aHandlerSeesBUS_ADRERRAtTheAddressTouched() throws {
        let s = Scratch(); defer { s.remove() }
        let exe = try compile(Self.program)
        let native = try run([exe, s.file("data.bin"), "handle"], in: s.path)
        let r = try recordAndReplay(exe, [s.file("data.bin"), "handle"], in: s)
        #expect(r.record.stdout == native.stdout, "native: \(native)\nrecorded: \(r.record)")
        #expect(r.record.status == native.status, "native: \(native)\nrecorded: \(r.record)")
        #expect(r.record.stdout == """
            byte99=x byte100=0 byte4095=0
            maps: r--p offset=0 size=12288 at base=1
            page 1: signo=7 code=2 offset=4103
            page 2: signo=7 code=2 offset=8192
            mprotect=0
            page 0 write: no signal
            page 2 write: signo=7 code=2 offset=8193
            done

            """)
    }

    @Test func withoutAHandlerTheProgramDiesOfSIGBUS() throws {
        let s = Scratch(); defer { s.remove() }
        let exe = try compile(Self.program)
        let native = try run([exe, s.file("data.bin")], in: s.path)
        let r = try recordAndReplay(exe, [s.file("data.bin")], in: s)
        #expect(native.status == 135, "\(native)")
        #expect(r.record.status == 135, "\(r.record)")
        #expect(r.record.stdout == native.stdout)
        #expect(r.record.stdout.hasSuffix("touching page 1\n"))
        for replay in r.replays {
            #expect(replay.status == 135, "replay: \(replay)")
            #expect(!replay.stderr.contains("diverged"), "\(replay.stderr)")
        }
        let last = try dumpJSON(r.trace, in: s).events.last
        #expect(last?.string("kind") == "fatalSignal")
        #expect(last?.int("signal") == 7)
        #expect(last?.int("code") == 2)
    }

    /// Where the file ends holds through an offset past it, MAP_SHARED,
    /// mremap, MADV_DONTNEED, munmap of a middle page and fork; the
    /// mapping's rights come first (SEGV_ACCERR), and a syscall reading
    /// such a page gets EFAULT.
    @Test func pagesPastTheFileKeepFaultingAsTheMappingChanges() throws {
        let source = "#define _GNU_SOURCE\n" + Self.faultHelpers + #"""
        int main(int argc, char **argv) {
            if (argc < 2) return 2;
            sigset_t none; sigemptyset(&none); sigprocmask(SIG_SETMASK, &none, 0);
            struct sigaction sa; memset(&sa, 0, sizeof sa);
            sa.sa_sigaction = on_fault; sa.sa_flags = SA_SIGINFO;
            sigaction(SIGBUS, &sa, 0); sigaction(SIGSEGV, &sa, 0);
            int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
            char buf[5000]; memset(buf, 'x', sizeof buf);
            if (write(fd, buf, sizeof buf) != sizeof buf) return 2;   /* page 1 is partly the file's */
            volatile char *a = mmap(0, 4 * 4096, PROT_READ, MAP_PRIVATE, fd, 4096);
            touch("offset 1 page 0", a, 10, 0);
            touch("offset 1 page 1", a, 4096, 0);
            volatile char *b = mmap(0, 4096, PROT_READ, MAP_PRIVATE, fd, 3 * 4096);
            touch("offset 3 page 0", b, 0, 0);
            volatile char *s = mmap(0, 3 * 4096, PROT_READ, MAP_SHARED, fd, 0);
            touch("shared page 1", s, 4096 + 5, 0);
            touch("shared page 2", s, 2 * 4096, 0);
            touch("shared page 2 write", s, 2 * 4096, 1);
            errno = 0;
            ssize_t n = write(1, (void *)(s + 2 * 4096), 10);
            printf("write from page 2: %zd errno=%d\n", n, errno);
            volatile char *c = mmap(0, 2 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
            c = mremap((void *)c, 2 * 4096, 4 * 4096, MREMAP_MAYMOVE);
            touch("grown page 1", c, 4096 + 5, 0);
            touch("grown page 2", c, 2 * 4096, 0);
            touch("grown page 3 write", c, 3 * 4096 + 1, 1);
            volatile char *d = mmap(0, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
            madvise((void *)d, 3 * 4096, MADV_DONTNEED);
            touch("dontneed page 2 write", d, 2 * 4096, 1);
            mprotect((void *)d, 3 * 4096, PROT_NONE);
            touch("none page 2", d, 2 * 4096, 0);
            mprotect((void *)d, 3 * 4096, PROT_READ);
            touch("read-only page 2 write", d, 2 * 4096, 1);
            munmap((void *)(d + 4096), 4096);
            touch("split page 2", d, 2 * 4096 + 3, 0);
            fflush(stdout);
            pid_t pid = fork();
            if (pid == 0) { touch("child page 2", s, 2 * 4096, 0); fflush(stdout); _exit(0); }
            int status; waitpid(pid, &status, 0);
            printf("done\n");
            return 0;
        }
        """#
        let s = Scratch(); defer { s.remove() }
        let exe = try compile(source)
        let native = try run([exe, s.file("data.bin")], in: s.path)
        let r = try recordAndReplay(exe, [s.file("data.bin")], in: s)
        #expect(r.record.stdout == native.stdout, "native: \(native)\nrecorded: \(r.record)")
        #expect(r.record.status == native.status)
        #expect(native.stdout.contains("offset 3 page 0: signo=7 code=2 offset=0\n"), "\(native)")
        #expect(native.stdout.contains("none page 2: signo=11 code=2 offset=8192\n"), "\(native)")
        #expect(native.stdout.hasSuffix("done\n"), "\(native)")
    }
}
