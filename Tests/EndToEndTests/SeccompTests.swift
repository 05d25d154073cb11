import Foundation
import Testing

/// seccomp: strict mode and classic-BPF filters that detrec applies to the
/// recorded program's own syscalls, with Linux's verdicts, checks and
/// inheritance. Each program must print and end as a native run does, and
/// each replay as its recording.
@Suite(.serialized) struct SeccompTests {
    let dir = Harness.temporaryDirectory()

    static let prelude = #"""
        #define _GNU_SOURCE
        #include <errno.h>
        #include <linux/audit.h>
        #include <linux/filter.h>
        #include <linux/seccomp.h>
        #include <pthread.h>
        #include <signal.h>
        #include <stddef.h>
        #include <stdio.h>
        #include <stdlib.h>
        #include <string.h>
        #include <sys/prctl.h>
        #include <sys/syscall.h>
        #include <sys/wait.h>
        #include <ucontext.h>
        #include <unistd.h>

        static int install(struct sock_filter *f, unsigned short n, unsigned flags) {
          struct sock_fprog prog = { n, f };
          long r = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog);
          return r < 0 ? -errno : (int)r;
        }
        #define NR_IS(nr, ret) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1), BPF_STMT(BPF_RET | BPF_K, (ret))
        #define LOAD(field) BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, field))
        static void waitfor(const char *what, pid_t pid) {
          int st; waitpid(pid, &st, 0);
          if (WIFSIGNALED(st)) printf("%s: killed by %d\n", what, WTERMSIG(st));
          else printf("%s: exit %d\n", what, WEXITSTATUS(st));
          fflush(stdout);
        }

        """#

    @Test func filterVerdictsAndInheritance() throws {
        let out = try Harness.matchesNative(Self.prelude + #"""
            static volatile int trapped_nr, trapped_errno, trapped_code, trapped_arch, rax_seen, at_syscall;
            static void on_sigsys(int sig, siginfo_t *si, void *uc) {
              ucontext_t *u = uc;
              trapped_nr = si->si_syscall; trapped_errno = si->si_errno; trapped_code = si->si_code;
              trapped_arch = si->si_arch == AUDIT_ARCH_X86_64;
              rax_seen = u->uc_mcontext.gregs[REG_RAX];
              at_syscall = *(unsigned short *)((char *)si->si_call_addr - 2) == 0x050f
                  && (greg_t)si->si_call_addr == u->uc_mcontext.gregs[REG_RIP];
              u->uc_mcontext.gregs[REG_RAX] = 1234;    // emulate the call
            }
            static void *thread_getpid(void *a) { return (void *)(long)(syscall(SYS_getpid) < 0 ? -errno : 1); }

            int main(int argc, char **argv) {
              if (argc > 1) {   // after execve: the filter is still there
                long r = syscall(SYS_getpid);
                printf("exec: mode %d, getpid %ld errno %d\n", prctl(PR_GET_SECCOMP), r, errno);
                return 0;
              }
              printf("mode %d nnp %d\n", prctl(PR_GET_SECCOMP), prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0));
              unsigned actions[] = { SECCOMP_RET_KILL_PROCESS, SECCOMP_RET_KILL_THREAD, SECCOMP_RET_TRAP, SECCOMP_RET_ERRNO,
                                     SECCOMP_RET_USER_NOTIF, SECCOMP_RET_TRACE, SECCOMP_RET_LOG, SECCOMP_RET_ALLOW, 0x12340000 };
              for (int i = 0; i < 9; i++)
                printf("avail %x: %d\n", actions[i], syscall(SYS_seccomp, SECCOMP_GET_ACTION_AVAIL, 0, &actions[i]) < 0 ? -errno : 0);
              struct seccomp_notif_sizes sizes;
              long got = syscall(SYS_seccomp, SECCOMP_GET_NOTIF_SIZES, 0, &sizes);
              printf("sizes %ld: %d %d %d\n", got, sizes.seccomp_notif, sizes.seccomp_notif_resp, sizes.seccomp_data);
              printf("bad op %d\n", syscall(SYS_seccomp, 99, 0, 0) < 0 ? -errno : 0);

              prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
              struct sock_filter f[] = {
                LOAD(arch), BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
                BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
                LOAD(nr),
                NR_IS(SYS_getpid, SECCOMP_RET_ERRNO | 42),
                NR_IS(SYS_uname, SECCOMP_RET_TRAP | 7),
                NR_IS(SYS_getppid, SECCOMP_RET_TRACE | 1),
                NR_IS(SYS_getpgrp, SECCOMP_RET_USER_NOTIF),
                NR_IS(SYS_gettid, SECCOMP_RET_LOG),
                NR_IS(SYS_getsid, SECCOMP_RET_ERRNO | 0xffff),
                // close(fd): low word of args[0] == 1000 -> EBADF-like 77, via the scratch memory and X.
                BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_close, 0, 5),
                LOAD(args[0]), BPF_STMT(BPF_ST, 3), BPF_STMT(BPF_LDX | BPF_MEM, 3),
                BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 1000, 0, 1), BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | 77),
                // instruction_pointer is where the call returns: nonzero.
                LOAD(instruction_pointer), BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 1),
                BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
                BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
              };
              int installed = install(f, sizeof f / sizeof f[0], 0);
              printf("install %d, mode %d\n", installed, prctl(PR_GET_SECCOMP));
              errno = 0; long r = syscall(SYS_getpid); printf("getpid %ld errno %d\n", r, errno);
              errno = 0; r = syscall(SYS_getsid, 0); printf("getsid %ld errno %d\n", r, errno);
              errno = 0; r = syscall(SYS_getppid); printf("getppid (trace, no tracer) %ld errno %d\n", r, errno);
              errno = 0; r = syscall(SYS_getpgrp); printf("getpgrp (user notif) %ld errno %d\n", r, errno);
              printf("gettid (log) ok %d\n", syscall(SYS_gettid) > 0);
              errno = 0; r = close(1000); printf("close 1000 %ld errno %d; close 1001 errno %d\n", r, errno, close(1001) < 0 ? errno : 0);

              struct sigaction sa = { 0 };
              sa.sa_sigaction = on_sigsys; sa.sa_flags = SA_SIGINFO;
              sigaction(SIGSYS, &sa, 0);
              r = syscall(SYS_uname, 0);
              printf("uname trapped: ret %ld nr %d errno %d code %d arch %d rax %d at syscall %d\n", r, trapped_nr, trapped_errno,
                     trapped_code, trapped_arch, rax_seen, at_syscall);
              // A blocked SIGSYS is forced through: unblocked, back to its default action, fatal.
              fflush(stdout);
              pid_t b = fork();
              if (b == 0) {
                sigset_t set; sigemptyset(&set); sigaddset(&set, SIGSYS); sigprocmask(SIG_BLOCK, &set, 0);
                syscall(SYS_uname, 0);
                _exit(1);
              }
              waitfor("uname with SIGSYS blocked", b);

              // Stacked: the newer filter's ERRNO ties with the older one's and wins; its TRAP beats ALLOW.
              struct sock_filter g[] = { LOAD(nr), NR_IS(SYS_getpid, SECCOMP_RET_ERRNO | 43),
                                         NR_IS(SYS_getuid, SECCOMP_RET_TRAP | 9), BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW) };
              printf("second install %d\n", install(g, sizeof g / sizeof g[0], SECCOMP_FILTER_FLAG_LOG));
              errno = 0; r = syscall(SYS_getpid); printf("stacked getpid %ld errno %d\n", r, errno);
              r = syscall(SYS_getuid); printf("stacked getuid %ld trapped nr %d errno %d\n", r, trapped_nr, trapped_errno);

              // Threads and children inherit the filters.
              pthread_t t; void *tr; pthread_create(&t, 0, thread_getpid, 0); pthread_join(t, &tr);
              printf("thread getpid %ld\n", (long)tr);
              fflush(stdout);
              pid_t c = fork();
              if (c == 0) { errno = 0; r = syscall(SYS_getpid); printf("child getpid %ld errno %d mode %d\n", r, errno, prctl(PR_GET_SECCOMP)); fflush(stdout); _exit(0); }
              waitfor("child", c);
              c = fork();
              if (c == 0) { execl("/proc/self/exe", argv[0], "exec", (char *)0); _exit(99); }
              waitfor("exec child", c);
              return 0;
            }
            """#, name: "seccomp_verdicts", in: dir)
        #expect(out.contains("install 0, mode 2"), "\(out)")
        #expect(out.contains("getpid -1 errno 42"), "\(out)")
        #expect(out.contains("uname trapped: ret 1234 nr 63 errno 7 code 1 arch 1 rax 63 at syscall 1"), "\(out)")
        #expect(out.contains("stacked getpid -1 errno 43"), "\(out)")
        #expect(out.contains("exec: mode 2, getpid -1 errno 43"), "\(out)")
        #expect(out.contains("uname with SIGSYS blocked: killed by 31"), "\(out)")
    }

    @Test func verifierRefusesWhatLinuxRefuses() throws {
        let out = try Harness.matchesNative(Self.prelude + #"""
            #define RET_ALLOW BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)
            int main(void) {
              prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
              struct sock_filter ok[] = { RET_ALLOW };
              struct sock_filter badcode[] = { BPF_STMT(0xff, 0), RET_ALLOW };
              struct sock_filter unaligned[] = { BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 2), RET_ALLOW };
              struct sock_filter outside[] = { BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 64), RET_ALLOW };
              struct sock_filter halfword[] = { BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 0), RET_ALLOW };
              struct sock_filter farjump[] = { BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 5, 0), RET_ALLOW };
              struct sock_filter farja[] = { BPF_STMT(BPF_JMP | BPF_JA, 1), RET_ALLOW };
              struct sock_filter noret[] = { BPF_STMT(BPF_LD | BPF_IMM, 0) };
              struct sock_filter divzero[] = { BPF_STMT(BPF_ALU | BPF_DIV | BPF_K, 0), RET_ALLOW };
              struct sock_filter mod[] = { BPF_STMT(BPF_ALU | BPF_MOD | BPF_K, 3), RET_ALLOW };
              struct sock_filter bigshift[] = { BPF_STMT(BPF_ALU | BPF_LSH | BPF_K, 32), RET_ALLOW };
              struct sock_filter badmem[] = { BPF_STMT(BPF_ST, 16), RET_ALLOW };
              struct sock_filter unstored[] = { BPF_STMT(BPF_LD | BPF_MEM, 2), RET_ALLOW };
              struct sock_filter onepath[] = { BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 1), BPF_STMT(BPF_ST, 2),
                                               BPF_STMT(BPF_LD | BPF_MEM, 2), RET_ALLOW };
              struct sock_filter retx[] = { BPF_STMT(BPF_RET | BPF_X, 0) };
              // X is zero: the division ends the program with 0, KILL_THREAD; it is never run here.
              struct sock_filter divx[] = { BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 0), BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 99999, 0, 1),
                                            BPF_STMT(BPF_ALU | BPF_DIV | BPF_X, 0), RET_ALLOW };
              struct { const char *name; struct sock_filter *f; int n; } cases[] = {
                { "empty", ok, 0 }, { "bad code", badcode, 2 }, { "unaligned", unaligned, 2 }, { "outside", outside, 2 },
                { "halfword", halfword, 2 }, { "far jump", farjump, 2 }, { "far ja", farja, 2 }, { "no ret", noret, 1 },
                { "div 0", divzero, 2 }, { "mod", mod, 2 }, { "shift 32", bigshift, 2 }, { "mem 16", badmem, 2 },
                { "unstored", unstored, 2 }, { "stored on one path", onepath, 4 }, { "ret x", retx, 1 },
                { "div x", divx, 4 }, { "too long", ok, 4097 },
              };
              for (unsigned i = 0; i < sizeof cases / sizeof cases[0]; i++)
                printf("%s: %d\n", cases[i].name, install(cases[i].f, cases[i].n, 0));
              struct sock_fprog wild = { 1, (struct sock_filter *)8 };
              printf("wild program %d\n", syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &wild) < 0 ? -errno : 0);
              printf("wild fprog %d\n", syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, (void *)8) < 0 ? -errno : 0);
              printf("unknown flag %d\n", install(ok, 1, 1u << 10));
              printf("strict with args %d\n", syscall(SYS_seccomp, SECCOMP_SET_MODE_STRICT, 0, ok) < 0 ? -errno : 0);
              printf("prctl bad mode %d\n", prctl(PR_SET_SECCOMP, 7, 0) < 0 ? -errno : 0);
              int spec = install(ok, 1, SECCOMP_FILTER_FLAG_SPEC_ALLOW);
              printf("spec allow %d, mode %d\n", spec, prctl(PR_GET_SECCOMP));
              printf("strict over filter %d\n", prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT) < 0 ? -errno : 0);
              // Filters of one path: 4096 + 4 per earlier filter at most 32768 instructions.
              static struct sock_filter big[4096];
              for (int i = 0; i < 4095; i++) big[i] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_IMM, i);
              big[4095] = (struct sock_filter)RET_ALLOW;
              int n = 0, r;
              while ((r = install(big, 4096, 0)) == 0) n++;
              printf("%d big filters, then %d\n", n, r);
              return 0;
            }
            """#, name: "seccomp_verifier", in: dir)
        #expect(out.contains("bad code: -22"), "\(out)")
        #expect(out.contains("stored on one path: -22"), "\(out)")
        #expect(out.contains("div x: 0"), "\(out)")
        #expect(out.contains("wild program -14"), "\(out)")
        #expect(out.contains("7 big filters, then -12"), "\(out)")
    }

    @Test func strictModeAndKills() throws {
        let out = try Harness.matchesNative(Self.prelude + #"""
            static void *killed_thread(void *a) { syscall(SYS_getppid); return a; }
            int main(void) {
              fflush(stdout);
              pid_t c = fork();
              if (c == 0) {
                prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT);
                write(1, "strict: write ok\n", 17);
                syscall(SYS_getpid);
                write(1, "not reached\n", 12);
                syscall(SYS_exit, 5);
              }
              waitfor("strict getpid", c);
              c = fork();
              if (c == 0) {
                syscall(SYS_seccomp, SECCOMP_SET_MODE_STRICT, 0, 0);
                char b[1]; read(0, b, 0);
                syscall(SYS_exit, 3);    // exit_group would be killed: only exit is allowed
              }
              waitfor("strict exit", c);
              c = fork();
              if (c == 0) {
                syscall(SYS_seccomp, SECCOMP_SET_MODE_STRICT, 0, 0);
                syscall(SYS_exit_group, 4);
              }
              waitfor("strict exit_group", c);
              prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
              struct sock_filter f[] = { LOAD(nr), NR_IS(SYS_getpid, SECCOMP_RET_KILL_PROCESS),
                                         NR_IS(SYS_getppid, SECCOMP_RET_KILL_THREAD), NR_IS(SYS_getuid, SECCOMP_RET_TRAP),
                                         NR_IS(SYS_getgid, 0x12340000), BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW) };
              c = fork();
              if (c == 0) { install(f, sizeof f / sizeof f[0], 0); syscall(SYS_getpid); _exit(1); }
              waitfor("kill process", c);
              c = fork();
              if (c == 0) { install(f, sizeof f / sizeof f[0], 0); syscall(SYS_getppid); _exit(1); }
              waitfor("kill thread, last one", c);
              c = fork();
              if (c == 0) {
                install(f, sizeof f / sizeof f[0], 0);
                pthread_t t; pthread_create(&t, 0, killed_thread, 0);
                pthread_join(t, 0);
                printf("main thread goes on\n"); fflush(stdout);
                _exit(6);
              }
              waitfor("kill thread, others left", c);
              c = fork();
              if (c == 0) { install(f, sizeof f / sizeof f[0], 0); syscall(SYS_getuid); _exit(1); }
              waitfor("trap without handler", c);
              c = fork();
              if (c == 0) { signal(SIGSYS, SIG_IGN); install(f, sizeof f / sizeof f[0], 0); syscall(SYS_getuid); _exit(1); }
              waitfor("trap with SIGSYS ignored", c);
              c = fork();
              if (c == 0) { install(f, sizeof f / sizeof f[0], 0); syscall(SYS_getgid); _exit(1); }
              waitfor("unknown action", c);
              return 0;
            }
            """#, name: "seccomp_strict", in: dir)
        #expect(out.contains("strict getpid: killed by 9"), "\(out)")
        #expect(out.contains("strict exit: exit 3"), "\(out)")
        #expect(out.contains("kill process: killed by 31"), "\(out)")
        #expect(out.contains("kill thread, others left: exit 6"), "\(out)")
    }

    @Test func threadSync() throws {
        let out = try Harness.matchesNative(Self.prelude + #"""
            static int go[2], done[2];
            static void *worker(void *a) {
              char b; read(go[0], &b, 1);
              long r = syscall(SYS_getpid);
              int e = errno;
              write(done[1], &e, sizeof e);
              return (void *)r;
            }
            static void *own_filter(void *a) {
              struct sock_filter f[] = { BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW) };
              install(f, 1, 0);
              *(pid_t *)a = gettid();
              char b; read(go[0], &b, 1);
              return 0;
            }
            int main(void) {
              pipe(go); pipe(done);
              prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
              pthread_t t; pthread_create(&t, 0, worker, 0);
              struct sock_filter f[] = { LOAD(nr), NR_IS(SYS_getpid, SECCOMP_RET_ERRNO | 33), BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW) };
              printf("tsync %d\n", install(f, sizeof f / sizeof f[0], SECCOMP_FILTER_FLAG_TSYNC));
              write(go[1], "x", 1);
              int e; read(done[0], &e, sizeof e);
              void *r; pthread_join(t, &r);
              printf("worker getpid %ld errno %d\n", (long)r, e);
              // A thread with a filter of its own cannot be synced: TSYNC names it, or ESRCH.
              pid_t tid = 0; pthread_create(&t, 0, own_filter, &tid);
              while (!__atomic_load_n(&tid, __ATOMIC_SEQ_CST)) usleep(1000);
              int bad = install(f, sizeof f / sizeof f[0], SECCOMP_FILTER_FLAG_TSYNC);
              printf("tsync names the thread %d\n", bad == tid);
              printf("tsync esrch %d\n", install(f, sizeof f / sizeof f[0], SECCOMP_FILTER_FLAG_TSYNC | SECCOMP_FILTER_FLAG_TSYNC_ESRCH));
              write(go[1], "x", 1); pthread_join(t, 0);
              return 0;
            }
            """#, name: "seccomp_tsync", in: dir)
        #expect(out.contains("worker getpid -1 errno 33"), "\(out)")
        #expect(out.contains("tsync names the thread 1"), "\(out)")
    }

    /// User-space notification needs a listener descriptor detrec does not
    /// provide: NEW_LISTENER is refused with a report (a native run gets a descriptor).
    @Test func newListenerIsRefusedWithAReport() throws {
        let exe = try Harness.compile(Self.prelude + #"""
            int main(void) {
              prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
              struct sock_filter f[] = { BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW) };
              printf("listener %d, mode %d\n", install(f, 1, SECCOMP_FILTER_FLAG_NEW_LISTENER), prctl(PR_GET_SECCOMP));
              return 0;
            }
            """#, name: "seccomp_listener", in: dir)
        let (rec, _) = try Harness.roundTrip([exe], in: dir)
        #expect(rec.stdout == "listener -22, mode 0\n")
        #expect(rec.stderr.contains("NEW_LISTENER"))
    }
}

/// seccomp meeting ptrace and libseccomp: TRACE with a tracer that asked
/// for PTRACE_O_TRACESECCOMP, and a filter built by libseccomp (when its
/// headers are installed).
@Suite(.serialized) struct SeccompTracerTests {
    let dir = Harness.temporaryDirectory()

    @Test func traceActionStopsForTheTracer() throws {
        let out = try Harness.matchesNative(SeccompTests.prelude + #"""
            #include <sys/ptrace.h>
            #include <sys/user.h>
            int main(void) {
              setvbuf(stdout, 0, _IOLBF, 0);
              pid_t c = fork();
              if (c == 0) {
                ptrace(PTRACE_TRACEME, 0, 0, 0);
                raise(SIGSTOP);
                prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
                struct sock_filter f[] = { LOAD(nr), NR_IS(SYS_getpid, SECCOMP_RET_TRACE | 5),
                                           NR_IS(SYS_getppid, SECCOMP_RET_TRACE | 6), BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW) };
                install(f, sizeof f / sizeof f[0], 0);
                long a = syscall(SYS_getpid), b = syscall(SYS_getppid);
                printf("child: getpid is mine %d, getppid %ld\n", a == getpid(), b);
                _exit(0);
              }
              int st; waitpid(c, &st, 0);
              ptrace(PTRACE_SETOPTIONS, c, 0, PTRACE_O_TRACESECCOMP);
              ptrace(PTRACE_CONT, c, 0, 0);
              while (waitpid(c, &st, 0) == c && WIFSTOPPED(st)) {
                unsigned long msg = 0; ptrace(PTRACE_GETEVENTMSG, c, 0, &msg);
                struct user_regs_struct r; ptrace(PTRACE_GETREGS, c, 0, &r);
                printf("stop event %d data %lu nr %lld rax %lld\n", st >> 16, msg, r.orig_rax, r.rax);
                if (msg == 6) { r.orig_rax = -1; r.rax = 777; ptrace(PTRACE_SETREGS, c, 0, &r); }
                ptrace(PTRACE_CONT, c, 0, 0);
              }
              printf("child ended: %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
              return 0;
            }
            """#, name: "seccomp_trace", in: dir)
        #expect(out.contains("stop event 7 data 5 nr 39 rax -38"), "\(out)")
        #expect(out.contains("child: getpid is mine 1, getppid 777"), "\(out)")
    }

    @Test(.enabled(if: FileManager.default.fileExists(atPath: "/usr/include/seccomp.h")))
    func libseccompFilter() throws {
        let out = try Harness.matchesNative(#"""
            #include <errno.h>
            #include <seccomp.h>
            #include <stdio.h>
            #include <sys/prctl.h>
            #include <sys/syscall.h>
            #include <sys/wait.h>
            #include <unistd.h>
            int main(void) {
              scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
              seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(getpid), 0);
              seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOTSUP), SCMP_SYS(write), 1, SCMP_A0(SCMP_CMP_EQ, 99));
              seccomp_rule_add(ctx, SCMP_ACT_KILL_PROCESS, SCMP_SYS(getppid), 0);
              seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EACCES), SCMP_SYS(dup3), 1, SCMP_A2(SCMP_CMP_MASKED_EQ, 0x80000, 0x80000));
              printf("api %d\n", seccomp_api_get() > 0);
              fflush(stdout);
              printf("load %d, mode %d, nnp %d\n", seccomp_load(ctx), prctl(PR_GET_SECCOMP), prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0));
              errno = 0; long r = syscall(SYS_getpid); printf("getpid %ld errno %d\n", r, errno);
              errno = 0; r = write(99, "x", 1); printf("write 99 %ld errno %d\n", r, errno);
              errno = 0; r = write(98, "x", 1); printf("write 98 %ld errno %d\n", r, errno);
              errno = 0; r = dup3(1, 50, 0x80000); printf("dup3 cloexec %ld errno %d\n", r, errno);
              errno = 0; r = dup3(1, 50, 0); printf("dup3 %ld errno %d\n", r, errno);
              fflush(stdout);
              pid_t c = fork();
              if (c == 0) { syscall(SYS_getppid); _exit(0); }
              int st; waitpid(c, &st, 0);
              printf("getppid child: signalled %d by %d\n", WIFSIGNALED(st), WTERMSIG(st));
              seccomp_release(ctx);
              return 0;
            }
            """#, name: "libseccomp_filter", flags: ["-Wl,--no-as-needed", "-lseccomp"], in: dir)
        #expect(out.contains("getpid -1 errno 1"), "\(out)")
        #expect(out.contains("write 99 -1 errno 95"), "\(out)")
        #expect(out.contains("getppid child: signalled 1 by 31"), "\(out)")
    }
}
