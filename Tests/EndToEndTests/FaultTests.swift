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
