import Foundation
import Testing

/// What makes new processes cheap must not show (docs/architecture.md,
/// "Processes"): a machine reused from an ended process starts as a new
/// one (zeroed memory, default MXCSR and vector registers), fork copies
/// every page the parent holds, and an exec'd file changed between two
/// execs is stored again.
@Suite(.serialized) struct ProcessReuseTests {
    let dir = Harness.temporaryDirectory()

    /// Each child dirties memory and the vector state and ends; the next
    /// exec'd or forked process (on a reused machine in the recording)
    /// must see fresh pages, a default MXCSR and zero vector registers.
    @Test func aReusedMachineStartsAsANewOne() throws {
        let out = try Harness.matchesNative(#"""
            #include <stdint.h>
            #include <stdio.h>
            #include <stdlib.h>
            #include <string.h>
            #include <sys/mman.h>
            #include <sys/wait.h>
            #include <unistd.h>
            #define AT ((void *)0x6f0000000000)
            #define LEN (4 << 20)
            static int fresh(void) {
              unsigned char *m = mmap(AT, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
              if (m == MAP_FAILED) return -1;
              for (size_t i = 0; i < LEN; i++) if (m[i]) return 0;
              return 1;
            }
            static unsigned mxcsr(void) { unsigned v; __asm__ volatile("stmxcsr %0" : "=m"(v)); return v; }
            static int xmm_leaked(void) {
              uint64_t v[2]; __asm__ volatile("movdqu %%xmm7, %0" : "=m"(v));
              return v[0] == 0x1122334455667788ull && v[1] == 0x99aabbccddeeff00ull;
            }
            static void dirty(void) {
              unsigned char *m = mmap(AT, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
              if (m != MAP_FAILED) memset(m, 0xa5, LEN);
              unsigned char *heap = malloc(LEN);
              memset(heap, 0x5a, LEN);
              unsigned v = 0x7f80 | 0x6000;   /* all masked, round toward zero */
              __asm__ volatile("ldmxcsr %0" :: "m"(v));
              uint64_t x[2] = {0x1122334455667788ull, 0x99aabbccddeeff00ull};
              __asm__ volatile("movdqu %0, %%xmm7" :: "m"(x));
            }
            int main(int argc, char **argv) {
              if (argc > 1) {
                printf("exec'd: fresh %d mxcsr %#x xmm7 leaked %d\n", fresh(), mxcsr(), xmm_leaked());
                return 0;
              }
              for (int round = 0; round < 3; round++) {
                pid_t c = fork();
                if (c == 0) { dirty(); _exit(0); }
                int st; waitpid(c, &st, 0);
                c = vfork();
                if (c == 0) { execl(argv[0], argv[0], "check", (char *)0); _exit(127); }
                waitpid(c, &st, 0);
                c = fork();
                if (c == 0) {
                  printf("forked: fresh %d\n", fresh());
                  fflush(stdout);
                  _exit(0);
                }
                waitpid(c, &st, 0);
              }
              return 0;
            }
            """#, name: "reuse", in: dir)
        // xmm7 is whatever the C library's start-up left there, which
        // depends on the string functions the CPU model makes it pick; what
        // must never be there is the previous process's value.
        #expect(out.components(separatedBy: "exec'd: fresh 1 mxcsr 0x1f80 xmm7 leaked 0\n").count == 4)
        #expect(out.components(separatedBy: "forked: fresh 1\n").count == 4)
    }

    /// fork copies what the parent wrote everywhere: the heap, a stack
    /// array, a large mapping touched sparsely, and a page written only
    /// through a syscall (read(2) into it).
    @Test func forkCopiesEveryPageTheParentTouched() throws {
        let out = try Harness.matchesNative(#"""
            #include <fcntl.h>
            #include <stdio.h>
            #include <stdlib.h>
            #include <string.h>
            #include <sys/mman.h>
            #include <sys/wait.h>
            #include <unistd.h>
            int main(void) {
              size_t len = 16 << 20;
              unsigned char *big = mmap(0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
              for (size_t i = 0; i < len; i += 1 << 20) big[i + 7] = (unsigned char)(i >> 20);
              unsigned char *heap = malloc(1 << 20);
              memset(heap, 0x3c, 1 << 20);
              volatile unsigned char stack[20000];
              for (int i = 0; i < 20000; i++) stack[i] = (unsigned char)i;
              char buf[64] = {0};
              int fd = open("/proc/self/cmdline", O_RDONLY);
              read(fd, buf, sizeof buf - 1);
              close(fd);
              pid_t c = fork();
              if (c == 0) {
                long sum = 0;
                for (size_t i = 0; i < len; i++) sum += big[i];
                int heapok = 1;
                for (int i = 0; i < 1 << 20; i++) heapok &= heap[i] == 0x3c;
                int stackok = 1;
                for (int i = 0; i < 20000; i++) stackok &= stack[i] == (unsigned char)i;
                printf("child: big sum %ld heap %d stack %d read buf %d\n", sum, heapok, stackok, strstr(buf, "forkcopy") != 0);
                return 0;
              }
              int st; waitpid(c, &st, 0);
              return WEXITSTATUS(st);
            }
            """#, name: "forkcopy", in: dir)
        #expect(out == "child: big sum 120 heap 1 stack 1 read buf 1\n")
    }

    /// A script rewritten in place (same size) between two execs runs its
    /// new text, in the recording and in each replay.
    @Test func aFileRewrittenBetweenExecsIsStoredAgain() throws {
        let script = dir.appendingPathComponent("rewritten.sh").path
        let body = #"""
            printf '#!/bin/sh\necho one\n' > "$0"; chmod +x "$0"; "$0"
            printf '#!/bin/sh\necho two\n' > "$0"; "$0"
            """#
        let native = try Harness.run(["/bin/sh", "-c", body, script])
        let (rec, _) = try Harness.roundTrip(["/bin/sh", "-c", body, script], in: dir)
        #expect(native.stdout == "one\ntwo\n")
        #expect(rec.stdout == native.stdout, "\(rec.stderr)")
    }
}
