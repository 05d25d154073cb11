import Foundation
import Testing

/// detrec's own pages (GDT, IDT, TSS, entry stubs, exception stack, at
/// Layout.systemBase) lie above the guest's TASK_SIZE: every mapping call,
/// syscall buffer, /proc/self/mem access and instruction that reaches them
/// gets what Linux gives an address at or past its TASK_SIZE. The program
/// runs natively against 0x7ffffffff000 (Linux's TASK_SIZE) and under
/// detrec against each of detrec's pages; the outputs must be the same.
@Suite struct SystemAreaTests {
    let dir = Harness.temporaryDirectory()

    static let source = #"""
        #define _GNU_SOURCE
        #include <errno.h>
        #include <fcntl.h>
        #include <setjmp.h>
        #include <signal.h>
        #include <stdio.h>
        #include <stdlib.h>
        #include <string.h>
        #include <sys/mman.h>
        #include <unistd.h>

        static sigjmp_buf back;
        static volatile siginfo_t got;
        static void on_segv(int sig, siginfo_t *si, void *uc) { (void)sig; (void)uc; got = *si; siglongjmp(back, 1); }

        static void fault(const char *what, unsigned long address, int store) {
          memset((void *)&got, 0, sizeof got);
          if (sigsetjmp(back, 1) == 0) {
            if (store) *(volatile char *)address = 1; else (void)*(volatile char *)address;
            printf("%s: no fault\n", what);
          } else {
            printf("%s: signal %d code %d at-address %d\n", what, got.si_signo, got.si_code,
                   (unsigned long)got.si_addr == address);
          }
        }

        static void instruction(const char *what, int which) {
          static unsigned char table[10];
          memset((void *)&got, 0, sizeof got);
          if (sigsetjmp(back, 1) == 0) {
            if (which == 0) __asm__ volatile("lgdt %0" : : "m"(table));
            if (which == 1) __asm__ volatile("lidt %0" : : "m"(table));
            if (which == 2) __asm__ volatile("ltr %w0" : : "r"(0x40));
            printf("%s: no fault\n", what);
          } else {
            printf("%s: signal %d code %d\n", what, got.si_signo, got.si_code);
          }
        }

        #define SHOW(label, expr) do { errno = 0; long r_ = (long)(expr); printf("%s: %ld errno %d\n", label, r_ < 0 && r_ > -4096 ? -1L : (r_ == 0 ? 0L : 1L), errno); } while (0)

        int main(int argc, char **argv) {
          struct sigaction sa = {0};
          sa.sa_sigaction = on_segv; sa.sa_flags = SA_SIGINFO | SA_NODEFER;
          sigaction(SIGSEGV, &sa, 0);
          sigset_t none; sigemptyset(&none); sigprocmask(SIG_SETMASK, &none, 0);
          int fds[2]; pipe(fds);
          int mem = open("/proc/self/mem", O_RDWR);
          for (int i = 1; i < argc; i++) {
            unsigned long a = strtoul(argv[i], 0, 16);
            char *page = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            page[0] = 'p';
            SHOW("mmap fixed", mmap((void *)a, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0));
            SHOW("mmap noreplace", mmap((void *)a, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0));
            void *hinted = mmap((void *)a, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            printf("mmap hint elsewhere: %d\n", hinted != MAP_FAILED && (unsigned long)hinted != a);
            munmap(hinted, 4096);
            SHOW("munmap", munmap((void *)a, 4096));
            SHOW("mprotect", mprotect((void *)a, 4096, PROT_READ | PROT_WRITE));
            SHOW("madvise", madvise((void *)a, 4096, MADV_DONTNEED));
            SHOW("mremap onto", mremap(page, 4096, 4096, MREMAP_MAYMOVE | MREMAP_FIXED, (void *)a));
            SHOW("mremap from", mremap((void *)a, 4096, 8192, MREMAP_MAYMOVE));
            printf("page kept: %c\n", page[0]);
            void *old = sbrk(0);
            printf("brk onto: %d\n", (void *)syscall(12, a) == old);
            write(fds[1], "0123456789", 10);
            SHOW("read into", read(fds[0], (void *)a, 10));
            char drain[16]; read(fds[0], drain, sizeof drain);
            SHOW("write from", write(fds[1], (void *)a, 4));
            SHOW("mem read", pread(mem, drain, 4, a));
            SHOW("mem write", pwrite(mem, "xxxx", 4, a));
            if (i < argc - 1 || argc == 2) fault("load", a, 0);
            fault("store", a, 1);
            munmap(page, 4096);
          }
          instruction("lgdt", 0);
          instruction("lidt", 1);
          instruction("ltr", 2);
          /* brk past every limit returns the old break and maps nothing */
          char *before = sbrk(0);
          printf("brk huge: %d\n", (char *)syscall(12, before + (1UL << 45)) == before);
          printf("brk top: %d\n", (char *)syscall(12, (void *)-4096L) == before);
          fault("after brk", (unsigned long)before + 4096 * 16, 1);
          return 0;
        }
        """#

    @Test func detrecsPagesAreBeyondTheGuestsReach() throws {
        let exe = try Harness.compile(SystemAreaTests.source, name: "systemarea", in: dir)
        // GDT, IDT, TSS, the exception stack's lowest and highest pages, then the stubs
        // (which PVM runs with user privilege: only stores are checked there).
        let detrecPages = ["7fffffff0000", "7fffffff1000", "7fffffff2000", "7fffffff6000", "7fffffff9000", "7fffffff5000"]
        let linuxLimit = Array(repeating: "7ffffffff000", count: detrecPages.count)
        let native = try Harness.run([exe] + linuxLimit)
        #expect(native.status == 0)
        let (rec, _) = try Harness.roundTrip([exe] + detrecPages, in: dir)
        #expect(rec.stdout == native.stdout)
        #expect(rec.stdout.contains("mremap onto: -1 errno 22"))
        #expect(rec.stdout.contains("store: signal 11 code 1 at-address 1"))
        #expect(rec.stdout.contains("lgdt: signal 11 code 128"))
        let (atLimit, _) = try Harness.roundTrip([exe] + linuxLimit, in: dir)
        #expect(atLimit.stdout == native.stdout)
    }
}
