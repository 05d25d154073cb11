import Foundation
import Testing

/// Signal frames as Linux lays them out, and where signals land: each
/// program's output must match a native run, and every replay the recording.
@Suite(.serialized) struct SignalTests {
    let dir = Harness.temporaryDirectory()

    func matchesNative(_ source: String, name: String, args: [String] = [],
                       sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        try Harness.matchesNative(source, name: name, args: args, in: dir, sourceLocation: sourceLocation)
    }

    @Test func interruptedReadIsEINTROrRestartsUnderSA_RESTART() throws {
        let source = #"""
            #include <errno.h>
            #include <signal.h>
            #include <stdio.h>
            #include <string.h>
            #include <sys/time.h>
            #include <unistd.h>
            static int p[2]; static volatile int ticks;
            static void on(int s) { (void)s; ticks++; write(p[1], "x", 1); }
            int main(int argc, char **argv) {
              sigset_t none; sigemptyset(&none); sigprocmask(SIG_SETMASK, &none, 0);   /* the test runner blocks some */
              struct sigaction sa; memset(&sa, 0, sizeof sa); sa.sa_handler = on; sa.sa_flags = argc > 1 ? SA_RESTART : 0;
              sigaction(SIGALRM, &sa, 0); pipe(p);
              struct itimerval it = {{0, 0}, {0, 20000}}; setitimer(ITIMER_REAL, &it, 0);
              char b[4] = {0}; ssize_t n = read(p[0], b, 1);
              printf("read %zd [%s] %s ticks %d\n", n, b, n < 0 ? strerror(errno) : "-", ticks);
              return 0;
            }
            """#
        #expect(try matchesNative(source, name: "eintr") == "read -1 [] Interrupted system call ticks 1\n")
        #expect(try matchesNative(source, name: "restart", args: ["restart"]) == "read 1 [x] - ticks 1\n")
    }

    @Test func handlerRunsOnTheAlternateStack() throws {
        let out = try matchesNative(#"""
            #include <signal.h>
            #include <stdio.h>
            #include <stdlib.h>
            #include <string.h>
            static char *alt; static int on_alt;
            static void on(int s) { char here; (void)s; on_alt = &here >= alt && &here < alt + 65536; }
            int main(void) {
              sigset_t none; sigemptyset(&none); sigprocmask(SIG_SETMASK, &none, 0);   /* the test runner blocks some */
              alt = malloc(65536); stack_t ss = {.ss_sp = alt, .ss_size = 65536, .ss_flags = 0}; sigaltstack(&ss, 0);
              struct sigaction sa; memset(&sa, 0, sizeof sa); sa.sa_handler = on; sa.sa_flags = SA_ONSTACK;
              sigaction(SIGUSR1, &sa, 0); raise(SIGUSR1);
              stack_t cur; sigaltstack(0, &cur);
              printf("on alt %d flags %d\n", on_alt, cur.ss_flags);
              return 0;
            }
            """#, name: "altstack")
        #expect(out == "on alt 1 flags 0\n")
    }

    @Test func handlerEditsItsUcontextToSkipAFault() throws {
        let out = try matchesNative(#"""
            #define _GNU_SOURCE
            #include <signal.h>
            #include <stdio.h>
            #include <string.h>
            #include <ucontext.h>
            static int faults; static unsigned long addr;
            static void on(int s, siginfo_t *i, void *u) { (void)s; ucontext_t *uc = u; faults++; addr = (unsigned long)i->si_addr;
              uc->uc_mcontext.gregs[REG_RIP] += 6;   /* skip: movl $1, (%rax) is c7 00 01 00 00 00 */
              uc->uc_mcontext.gregs[REG_RBX] = 42; }
            int main(void) {
              sigset_t none; sigemptyset(&none); sigprocmask(SIG_SETMASK, &none, 0);   /* the test runner blocks some */
              struct sigaction sa; memset(&sa, 0, sizeof sa); sa.sa_sigaction = on; sa.sa_flags = SA_SIGINFO;
              sigaction(SIGSEGV, &sa, 0);
              long rbx;
              __asm__ volatile("mov $0x40, %%rax\n\tmovl $1, (%%rax)\n\tmov %%rbx, %0" : "=r"(rbx) : : "rax", "rbx", "memory");
              printf("faults %d addr 0x%lx rbx %ld\n", faults, addr, rbx);
              return 0;
            }
            """#, name: "ucontext")
        #expect(out == "faults 1 addr 0x40 rbx 42\n")
    }

    @Test func siginfoOfKillAndOfAFault() throws {
        let out = try matchesNative(#"""
            #include <signal.h>
            #include <stdio.h>
            #include <string.h>
            #include <unistd.h>
            #include <setjmp.h>
            static sigjmp_buf env; static siginfo_t got;
            static void on(int s, siginfo_t *i, void *u) { (void)u; got = *i; if (s == SIGSEGV) siglongjmp(env, 1); }
            int main(void) {
              sigset_t none; sigemptyset(&none); sigprocmask(SIG_SETMASK, &none, 0);   /* the test runner blocks some */
              struct sigaction sa; memset(&sa, 0, sizeof sa); sa.sa_sigaction = on; sa.sa_flags = SA_SIGINFO;
              sigaction(SIGUSR2, &sa, 0); sigaction(SIGSEGV, &sa, 0);
              kill(getpid(), SIGUSR2);
              printf("usr2 signo %d code %d pid-ok %d uid-ok %d\n", got.si_signo, got.si_code, got.si_pid == getpid(), got.si_uid == getuid());
              if (!sigsetjmp(env, 1)) *(volatile int *)0x10 = 0;
              printf("segv signo %d code %d addr %p\n", got.si_signo, got.si_code, got.si_addr);
              return 0;
            }
            """#, name: "siginfo")
        #expect(out == "usr2 signo 12 code 0 pid-ok 1 uid-ok 1\nsegv signo 11 code 1 addr 0x10\n")
    }

    @Test func timerSignalsInterruptSleeps() throws {
        let out = try matchesNative(#"""
            #include <errno.h>
            #include <signal.h>
            #include <stdio.h>
            #include <sys/time.h>
            #include <time.h>
            static volatile int ticks;
            static void on(int s) { (void)s; ticks++; }
            int main(void) {
              sigset_t none; sigemptyset(&none); sigprocmask(SIG_SETMASK, &none, 0);   /* the test runner blocks some */
              signal(SIGALRM, on);
              struct itimerval it = {{0, 10000}, {0, 10000}}; setitimer(ITIMER_REAL, &it, 0);
              int interrupted = 0;
              while (ticks < 5) { struct timespec ts = {0, 50000000}; if (nanosleep(&ts, 0) != 0 && errno == EINTR) interrupted++; }
              printf("ticks %d interrupted %d\n", ticks, interrupted >= 4);
              return 0;
            }
            """#, name: "itimer")
        #expect(out == "ticks 5 interrupted 1\n")
    }
}
