import Foundation
import Testing

/// vfork and clone(CLONE_VM): a child that runs on its parent's memory
/// while the parent waits for it to exec or end, as glibc's posix_spawn,
/// system and popen and gcc's driver use it; and the other clone flag
/// combinations runtimes pass for new processes.
@Suite(.serialized) struct VforkTests {
    let dir = Harness.temporaryDirectory()

    @Test func posixSpawnSystemAndPopenMatchNative() throws {
        let out = try Harness.matchesNative(#"""
            #include <spawn.h>
            #include <stdio.h>
            #include <stdlib.h>
            #include <string.h>
            #include <sys/wait.h>
            #include <unistd.h>
            extern char **environ;
            int main(void) {
              pid_t pid; int st;
              char *argv[] = {"/bin/echo", "spawned", NULL};
              posix_spawn_file_actions_t fa; posix_spawn_file_actions_init(&fa);
              posix_spawn_file_actions_addopen(&fa, 3, "/dev/null", 0, 0);
              int r = posix_spawn(&pid, "/bin/echo", &fa, NULL, argv, environ);
              printf("spawn %d wait %d status %d\n", r, waitpid(pid, &st, 0) == pid, WEXITSTATUS(st));
              fflush(stdout);
              char *missing[] = {"/nonexistent", NULL};
              printf("missing %d\n", posix_spawn(&pid, "/nonexistent", NULL, NULL, missing, environ));
              fflush(stdout);
              st = system("exit 3");
              printf("system %d\n", WEXITSTATUS(st));
              fflush(stdout);
              FILE *p = popen("echo from-popen; echo second", "r");
              char line[128] = {0}, all[256] = {0};
              while (fgets(line, sizeof line, p)) strcat(all, line);
              printf("popen read [%s] close %d\n", all, pclose(p));
              return 0;
            }
            """#, name: "spawn", in: dir)
        #expect(out.contains("spawn 0 wait 1 status 0"))
        #expect(out.contains("missing 2"))
        #expect(out.contains("system 3"))
        #expect(out.contains("popen read [from-popen\nsecond\n] close 0"))
    }

    /// The child writes the parent's memory before it ends or execs (the
    /// parent sees it: the memory is the same), the parent resumes only
    /// then, and a failed exec leaves the child on the borrowed memory.
    @Test func vforkChildBorrowsTheParentsMemory() throws {
        let out = try Harness.matchesNative(#"""
            #include <stdio.h>
            #include <sys/wait.h>
            #include <unistd.h>
            static volatile int shared;
            static volatile int order;
            int main(void) {
              pid_t c = vfork();
              if (c == 0) { shared = 42; order = 1; _exit(7); }
              int st; waitpid(c, &st, 0);
              printf("exit: shared=%d order=%d status=%d\n", shared, order, WEXITSTATUS(st));
              c = vfork();
              if (c == 0) {
                execl("/nonexistent", "x", (char *)0);
                shared = 43;
                execl("/bin/echo", "echo", "exec'd", (char *)0);
                _exit(127);
              }
              waitpid(c, &st, 0);
              printf("exec: shared=%d status=%d pid-differs=%d\n", shared, WEXITSTATUS(st), c != getpid());
              return 0;
            }
            """#, name: "vfork", in: dir)
        #expect(out.contains("exit: shared=42 order=1 status=7"))
        #expect(out.contains("exec: shared=43 status=0 pid-differs=1"))
    }

    /// clone(CLONE_VM) without CLONE_VFORK: the child runs beside its
    /// parent on the same memory, on its own stack; its exit signal is 0,
    /// so only a __WCLONE (or __WALL) wait sees it. clone3 with
    /// CLONE_CLEAR_SIGHAND gives the child default handlers; CLONE_PIDFD
    /// and CLONE_INTO_CGROUP are refused.
    @Test func cloneFlagCombinations() throws {
        let out = try Harness.matchesNative(#"""
            #define _GNU_SOURCE
            #include <errno.h>
            #include <linux/sched.h>
            #include <sched.h>
            #include <signal.h>
            #include <stdio.h>
            #include <stdint.h>
            #include <string.h>
            #include <sys/syscall.h>
            #include <sys/wait.h>
            #include <unistd.h>
            static volatile int flag;
            static char stack[65536] __attribute__((aligned(16)));
            static int child(void *arg) { flag = 1; while (flag != 2) syscall(SYS_sched_yield); return 5; }
            static void handler(int s) { (void)s; }
            int main(void) {
              pid_t c = clone(child, stack + sizeof stack, CLONE_VM, NULL);
              while (flag != 1) syscall(SYS_sched_yield);
              int st;
              int plain = waitpid(c, &st, WNOHANG);
              int plainErr = errno;
              flag = 2;
              int cloned = waitpid(c, &st, __WCLONE);
              printf("vm child: plain wait %d (%s), __WCLONE wait %d status %d\n", plain, strerror(plainErr),
                     cloned == c, WEXITSTATUS(st));
              signal(SIGUSR1, handler);
              signal(SIGUSR2, SIG_IGN);
              struct clone_args a; memset(&a, 0, sizeof a);
              a.flags = CLONE_CLEAR_SIGHAND; a.exit_signal = SIGCHLD;
              long r = syscall(SYS_clone3, &a, sizeof a);
              if (r == 0) {
                struct sigaction u1, u2; sigaction(SIGUSR1, NULL, &u1); sigaction(SIGUSR2, NULL, &u2);
                _exit((u1.sa_handler == SIG_DFL) * 10 + (u2.sa_handler == SIG_IGN));
              }
              waitpid(r, &st, 0);
              printf("clear sighand: %d\n", WEXITSTATUS(st));
              memset(&a, 0, sizeof a);
              a.flags = CLONE_VM | CLONE_VFORK; a.exit_signal = SIGCHLD;
              static char stack2[65536];
              a.stack = (uintptr_t)stack2; a.stack_size = 0;
              r = syscall(SYS_clone3, &a, sizeof a);
              printf("stack without size: %ld %s\n", r, strerror(errno));
              r = syscall(SYS_clone, CLONE_SIGHAND | SIGCHLD, 0, 0, 0, 0);
              printf("sighand without vm: %ld %s\n", r, strerror(errno));
              r = syscall(SYS_clone, CLONE_THREAD | CLONE_VM | SIGCHLD, 0, 0, 0, 0);
              printf("thread without sighand: %ld %s\n", r, strerror(errno));
              return 0;
            }
            """#, name: "cloneflags", in: dir)
        #expect(out.contains("plain wait -1 (No child processes), __WCLONE wait 1 status 5"))
        #expect(out.contains("clear sighand: 11"))
        #expect(out.contains("stack without size: -1 Invalid argument"))
        #expect(out.contains("sighand without vm: -1 Invalid argument"))
        #expect(out.contains("thread without sighand: -1 Invalid argument"))
    }

    @Test func refusedCloneFlagsAreNamed() throws {
        let exe = try Harness.compile(#"""
            #define _GNU_SOURCE
            #include <errno.h>
            #include <sched.h>
            #include <signal.h>
            #include <stdio.h>
            #include <string.h>
            #include <sys/syscall.h>
            #include <unistd.h>
            int main(void) {
              /* signal handlers shared between processes (valid with CLONE_VM on Linux) */
              long r = syscall(SYS_clone, CLONE_VM | CLONE_SIGHAND | SIGCHLD, 0, 0, 0, 0);
              if (r == 0) _exit(0);
              printf("shared handlers: %s\n", r < 0 ? strerror(errno) : "made");
              return 0;
            }
            """#, name: "pidfd", in: dir)
        let trace = dir.appendingPathComponent("pidfd-trace")
        let rec = try Harness.record([exe], trace: trace)
        #expect(rec.stdout == "shared handlers: Invalid argument\n")
        #expect(rec.stderr.contains("CLONE_SIGHAND"))
        let rep = try Harness.replay(trace)
        #expect(rep.stdout == rec.stdout)
    }

    /// gcc's driver vforks cc1 and as: "vfork: Function not implemented" before.
    @Test func gccCompilesUnderRecording() throws {
        let src = dir.appendingPathComponent("t.c")
        try "int f(int x) { return x * 3; }\n".write(to: src, atomically: true, encoding: .utf8)
        let object = dir.appendingPathComponent("t.o")
        let (rec, _) = try Harness.roundTrip(["/usr/bin/gcc", "-c", "-o", object.path, src.path], in: dir)
        #expect(rec.status == 0, "\(rec.stderr)")
        #expect(FileManager.default.fileExists(atPath: object.path))
    }
}
