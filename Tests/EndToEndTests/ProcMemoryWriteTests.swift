import Foundation
import Testing

/// A debugger writes another process's memory through /proc/<pid>/mem
/// (gdb plants its breakpoints so), even a read-only page; replay writes
/// the same bytes there again.
@Suite(.serialized) struct ProcMemoryWriteTests {
    let dir = Harness.temporaryDirectory()

    @Test func pwriteIntoAnotherProcessMemory() throws {
        let out = try Harness.matchesNative(#"""
            #define _GNU_SOURCE
            #include <fcntl.h>
            #include <stdio.h>
            #include <string.h>
            #include <unistd.h>
            #include <sys/wait.h>
            static char word[16] = "before";
            static const char text[8] = "rodata!";
            int main(void) {
              int go[2]; pipe(go);
              pid_t c = fork();
              if (c == 0) {
                char x; read(go[0], &x, 1);
                printf("child sees %s %s\n", word, text);
                return 0;
              }
              char path[64]; snprintf(path, sizeof path, "/proc/%d/mem", c);
              int m = open(path, O_RDWR);
              // Into its data, and into a read-only page, as a debugger's breakpoint would.
              ssize_t a = pwrite(m, "after", 6, (off_t)(unsigned long)word);
              ssize_t b = pwrite(m, "RODATA", 6, (off_t)(unsigned long)text);
              char back[8] = {0}; ssize_t r = pread(m, back, 6, (off_t)(unsigned long)text);
              write(go[1], "g", 1);
              int st; waitpid(c, &st, 0);
              printf("parent %zd %zd %zd %s; own %s\n", a, b, r, back, word);
              return 0;
            }
            """#, name: "pmem", in: dir)
        #expect(out == "child sees after RODATA!\nparent 6 6 6 RODATA; own before\n")
    }

    /// write(2) at the descriptor's offset (lseek to the address), as
    /// pwrite64: the child sees it, and replay writes it there again.
    @Test func writeIntoAnotherProcessMemory() throws {
        let out = try Harness.matchesNative(#"""
            #define _GNU_SOURCE
            #include <fcntl.h>
            #include <stdio.h>
            #include <unistd.h>
            #include <sys/wait.h>
            static char word[16] = "before";
            int main(void) {
              int go[2]; pipe(go);
              pid_t c = fork();
              if (c == 0) {
                char x; read(go[0], &x, 1);
                printf("child sees %s\n", word);
                return 0;
              }
              char path[64]; snprintf(path, sizeof path, "/proc/%d/mem", c);
              int m = open(path, O_RDWR);
              off_t at = lseek(m, (off_t)(unsigned long)word, SEEK_SET);
              ssize_t a = write(m, "written", 8);
              off_t now = lseek(m, 0, SEEK_CUR);
              write(go[1], "g", 1);
              int st; waitpid(c, &st, 0);
              printf("parent %zd moved %ld; own %s\n", a, (long)(now - at), word);
              return 0;
            }
            """#, name: "pmemwrite", in: dir)
        #expect(out == "child sees written\nparent 8 moved 8; own before\n")
    }

    /// readv, writev and pwritev on a /proc/PID/mem, the process's own and
    /// a child's: as read/write/pwrite64 (they once reached the placeholder
    /// memfd: readv read nothing, writev "wrote" without writing).
    @Test func vectorCallsOnProcMem() throws {
        let out = try Harness.matchesNative(#"""
            #define _GNU_SOURCE
            #include <fcntl.h>
            #include <stdio.h>
            #include <string.h>
            #include <unistd.h>
            #include <sys/uio.h>
            #include <sys/wait.h>
            static char word[32] = "original text";
            static char other[32] = "other";
            int main(void) {
              setvbuf(stdout, NULL, _IONBF, 0);
              int self = open("/proc/self/mem", O_RDWR);
              lseek(self, (off_t)(unsigned long)word, SEEK_SET);
              char a[5] = {0}, b[9] = {0};
              struct iovec rv[2] = {{a, 4}, {b, 8}};
              ssize_t r = readv(self, rv, 2);
              off_t pos = lseek(self, 0, SEEK_CUR) - (off_t)(unsigned long)word;
              printf("readv %zd [%s][%s] moved %ld\n", r, a, b, (long)pos);
              struct iovec wv[2] = {{"NEW", 3}, {"ER", 2}};
              lseek(self, (off_t)(unsigned long)word, SEEK_SET);
              printf("writev %zd: %s\n", writev(self, wv, 2), word);
              struct iovec pv[1] = {{"PWV", 3}};
              printf("pwritev %zd: %s\n", pwritev(self, pv, 1, (off_t)(unsigned long)other), other);
              int go[2]; pipe(go);
              pid_t c = fork();
              if (c == 0) {
                char x; read(go[0], &x, 1);
                printf("child sees %s / %s\n", word, other);
                return 0;
              }
              char path[64]; snprintf(path, sizeof path, "/proc/%d/mem", c);
              int m = open(path, O_RDWR);
              lseek(m, (off_t)(unsigned long)word, SEEK_SET);
              struct iovec cv[2] = {{"chi", 3}, {"ld!", 4}};
              ssize_t w1 = writev(m, cv, 2);
              struct iovec cp[1] = {{"pv", 3}};
              ssize_t w2 = pwritev(m, cp, 1, (off_t)(unsigned long)other);
              write(go[1], "g", 1);
              int st; waitpid(c, &st, 0);
              printf("parent %zd %zd; own %s / %s\n", w1, w2, word, other);
              return 0;
            }
            """#, name: "pmemvec", in: dir)
        #expect(out == """
            readv 12 [orig][inal tex] moved 12
            writev 5: NEWERnal text
            pwritev 3: PWVer
            child sees child! / pv
            parent 7 3; own NEWERnal text / PWVer

            """)
    }
}
