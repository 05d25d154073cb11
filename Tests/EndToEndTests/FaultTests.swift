import Foundation
import Testing

/// Faults end the program as Linux would, in the recording and every
/// replay; handlers run where the program installed them.
@Suite(.serialized) struct FaultTests {
    let dir = Harness.temporaryDirectory()

    func expectDeath(_ body: String, status: Int32, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let exe = try Harness.compile("""
            #include <stdio.h>
            #include <stdlib.h>
            #include <sys/mman.h>
            int main(void) { printf("before\\n"); fflush(stdout); \(body) printf("after\\n"); return 0; }
            """, name: "fault\(status)", in: dir)
        let (rec, _) = try Harness.roundTrip([exe], in: dir, sourceLocation: sourceLocation)
        #expect(rec.status == status, "\(rec.stderr)", sourceLocation: sourceLocation)
        #expect(rec.stdout == "before\n", sourceLocation: sourceLocation)
    }

    @Test func nullDereferenceIsSIGSEGV() throws { try expectDeath("*(volatile int *)0 = 1;", status: 139) }
    @Test func writeToReadOnlyPageIsSIGSEGV() throws {
        try expectDeath("char *p = mmap(0, 4096, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0); p[0] = 1; mprotect(p, 4096, PROT_READ); p[1] = 2;", status: 139)
    }
    @Test func trapIsSIGILL() throws { try expectDeath("__builtin_trap();", status: 132) }
    @Test func divisionByZeroIsSIGFPE() throws { try expectDeath("volatile int z = 0; printf(\"%d\", 7 / z);", status: 136) }
    @Test func abortIsSIGABRT() throws { try expectDeath("abort();", status: 134) }

    /// Each CPU exception reaches an SA_SIGINFO handler as Linux sends it:
    /// signal, si_code, and whether si_addr is the faulting instruction.
    @Test func eachFaultKindRunsItsHandlerWithLinuxSiginfo() throws {
        let exe = try Harness.compile(#"""
            #define _GNU_SOURCE
            #include <setjmp.h>
            #include <signal.h>
            #include <stdint.h>
            #include <stdio.h>
            #include <string.h>
            static sigjmp_buf env; static siginfo_t got; static uintptr_t rip;
            static void on(int s, siginfo_t *i, void *u) {
              __asm__ volatile("pushf; andl $~0x40000, (%%rsp); popf" ::: "memory");   /* Linux leaves AC set in a handler */
              got = *i; rip = ((ucontext_t *)u)->uc_mcontext.gregs[REG_RIP]; (void)s; siglongjmp(env, 1);
            }
            static void show(const char *what) {
              printf("%s: signo %d code %d addr %s\n", what, got.si_signo, got.si_code,
                     got.si_addr == 0 ? "0" : (uintptr_t)got.si_addr == rip ? "rip" : "other");
            }
            int main(void) {
              sigset_t none; sigemptyset(&none); sigprocmask(SIG_SETMASK, &none, 0);
              struct sigaction sa; memset(&sa, 0, sizeof sa); sa.sa_sigaction = on; sa.sa_flags = SA_SIGINFO | SA_NODEFER;
              int sigs[] = { SIGSEGV, SIGILL, SIGFPE, SIGTRAP, SIGBUS };
              for (int k = 0; k < 5; k++) sigaction(sigs[k], &sa, 0);
              if (!sigsetjmp(env, 1)) __asm__ volatile("int3"); show("int3");
              if (!sigsetjmp(env, 1)) __asm__ volatile("ud2"); show("ud2");
              if (!sigsetjmp(env, 1)) { volatile int a = 1, b = 0; a /= b; } show("div");
              if (!sigsetjmp(env, 1)) __asm__ volatile("hlt"); show("hlt");
              if (!sigsetjmp(env, 1)) *(volatile int *)0x10 = 1; show("unmapped");
              if (!sigsetjmp(env, 1)) *(volatile long *)0x8000000000000000ul = 1; show("noncanonical");
              static char buf[16];
              if (!sigsetjmp(env, 1)) {
                __asm__ volatile("pushf; orl $0x40000, (%%rsp); popf; movl (%0), %%eax; pushf; andl $~0x40000, (%%rsp); popf"
                                 :: "r"(buf + 1) : "eax", "memory");
              }
              show("misaligned");
              return 0;
            }
            """#, name: "fault_kinds", in: dir)
        let native = try Harness.run([exe])
        let (rec, _) = try Harness.roundTrip([exe], in: dir)
        #expect(rec.stdout == native.stdout)
        #expect(rec.stdout.contains("misaligned: signo 7 code 1"), "\(rec.stdout)")
    }

    @Test func handlersRunAndSiglongjmpWorks() throws {
        let exe = try Harness.compile(#"""
            #include <setjmp.h>
            #include <signal.h>
            #include <stdio.h>
            #include <string.h>
            static sigjmp_buf env; static volatile void *addr; static volatile int code;
            static void on(int s, siginfo_t *i, void *u) { addr = i->si_addr; code = i->si_code; siglongjmp(env, s); }
            static void usr(int s) { printf("usr %d\n", s); }
            int main(void) {
              struct sigaction sa; memset(&sa, 0, sizeof sa); sa.sa_sigaction = on; sa.sa_flags = SA_SIGINFO;
              sigaction(SIGSEGV, &sa, 0);
              if (sigsetjmp(env, 1) == 0) *(volatile int *)0x1234 = 1;
              printf("segv at %p code %d\n", (void *)addr, code);
              signal(SIGUSR1, usr);
              sigset_t b; sigemptyset(&b); sigaddset(&b, SIGUSR1); sigprocmask(SIG_BLOCK, &b, 0);
              raise(SIGUSR1); printf("blocked\n");
              sigprocmask(SIG_UNBLOCK, &b, 0);
              printf("done\n");
              return 0;
            }
            """#, name: "handlers", in: dir)
        let (rec, _) = try Harness.roundTrip([exe], in: dir)
        #expect(rec.stdout == "segv at 0x1234 code 1\nblocked\nusr 10\ndone\n")
    }
}
