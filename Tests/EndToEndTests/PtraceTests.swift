import Foundation
import Testing

/// ptrace between processes of the recording: a tracer in the recording
/// stops, inspects, changes and lets go of a tracee in the same
/// recording. Each program must print and end as a native run does, and
/// each replay as its recording.
@Suite(.serialized) struct PtraceTests {
    let dir = Harness.temporaryDirectory()

    static let prelude = #"""
        #define _GNU_SOURCE
        #include <elf.h>
        #include <errno.h>
        #include <signal.h>
        #include <stddef.h>
        #include <stdio.h>
        #include <stdlib.h>
        #include <string.h>
        #include <sys/ptrace.h>
        #include <sys/syscall.h>
        #include <sys/uio.h>
        #include <sys/user.h>
        #include <sys/wait.h>
        #include <unistd.h>

        static const char *describe(int st) {
          static char b[64];
          if (WIFEXITED(st)) snprintf(b, sizeof b, "exited %d", WEXITSTATUS(st));
          else if (WIFSIGNALED(st)) snprintf(b, sizeof b, "killed by %d", WTERMSIG(st));
          else if (WIFSTOPPED(st)) snprintf(b, sizeof b, "stopped sig 0x%x event %d", WSTOPSIG(st), st >> 16);
          else snprintf(b, sizeof b, "status 0x%x", st);
          return b;
        }

        """#

    /// A tiny strace: TRACEME, stop, PEEK/POKE, syscall stops with
    /// GETREGS/SETREGS/POKEUSER changing a call's argument and another's
    /// result, the exit event and EXITKILL.
    @Test func tinyStraceOfAChild() throws {
        let out = try Harness.matchesNative(Self.prelude + #"""
            static volatile long global = 7;
            int main(void) {
              setvbuf(stdout, 0, _IOLBF, 0);
              pid_t c = fork();
              if (c == 0) {
                ptrace(PTRACE_TRACEME, 0, 0, 0);
                raise(SIGSTOP);
                syscall(SYS_getpid, 0x5eed);       // where the tracer starts counting
                write(1, "hello\n", 6);            // the tracer makes it 3 bytes
                long r = syscall(SYS_getppid);     // the tracer makes it return 4242
                if (r == 4242) write(1, "poked\n", 6);
                syscall(SYS_exit_group, global);   // the tracer poked 9
              }
              int st;
              printf("not traced yet: %s\n", waitpid(c, &st, 0) == c ? describe(st) : "?");
              siginfo_t si; ptrace(PTRACE_GETSIGINFO, c, 0, &si);
              printf("siginfo signo %d code %d\n", si.si_signo, si.si_code);
              printf("setoptions %ld, bad %d\n", ptrace(PTRACE_SETOPTIONS, c, 0, PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACEEXIT | PTRACE_O_EXITKILL),
                     ptrace(PTRACE_SETOPTIONS, c, 0, 1 << 30) < 0 ? errno : 0);
              errno = 0; long w = ptrace(PTRACE_PEEKDATA, c, &global, 0);
              printf("peek %ld errno %d\n", w, errno);
              printf("poke %ld\n", ptrace(PTRACE_POKEDATA, c, &global, 9));
              errno = 0; w = ptrace(PTRACE_PEEKDATA, c, (void *)8, 0);
              printf("peek wild %ld errno %d\n", w, errno);
              errno = 0; w = ptrace(PTRACE_PEEKUSER, c, (void *)3, 0);
              printf("peekuser unaligned errno %d\n", errno);
              struct user_regs_struct regs;
              struct iovec iov = { &regs, sizeof regs };
              printf("regset %ld len %zu, bad note errno %d\n", ptrace(PTRACE_GETREGSET, c, NT_PRSTATUS, &iov), iov.iov_len,
                     ptrace(PTRACE_GETREGSET, c, 77, &iov) < 0 ? errno : 0);
              struct user_fpregs_struct fp;
              printf("fpregs %ld mxcsr %x cs %llx ss %llx\n", ptrace(PTRACE_GETFPREGS, c, 0, &fp), fp.mxcsr, regs.cs, regs.ss);
              int counting = 0, entering = 1, syscalls = 0, cut = 0;
              ptrace(PTRACE_SYSCALL, c, 0, 0);     // and the SIGSTOP is not delivered
              while (waitpid(c, &st, 0) == c) {
                if (!WIFSTOPPED(st)) { printf("end: %s\n", describe(st)); break; }
                if (WSTOPSIG(st) == (SIGTRAP | 0x80)) {
                  ptrace(PTRACE_GETREGS, c, 0, &regs);
                  if (entering && regs.orig_rax == SYS_getpid && regs.rdi == 0x5eed) counting = 1;
                  if (counting && entering) {
                    syscalls++;
                    printf("enter %lld rax %lld\n", regs.orig_rax, regs.rax);
                    if (regs.orig_rax == SYS_write && !cut++) { regs.rdx = 3; ptrace(PTRACE_SETREGS, c, 0, &regs); }
                  } else if (counting) {
                    long orig = ptrace(PTRACE_PEEKUSER, c, offsetof(struct user_regs_struct, orig_rax), 0);
                    long long shown = orig == SYS_getpid ? regs.rax == c : orig == SYS_getppid ? regs.rax == getpid() : regs.rax;
                    printf("exit %ld = %lld\n", orig, shown);
                    if (orig == SYS_getppid) ptrace(PTRACE_POKEUSER, c, offsetof(struct user_regs_struct, rax), 4242);
                  }
                  entering = !entering;
                } else if (st >> 8 == (SIGTRAP | PTRACE_EVENT_EXIT << 8)) {
                  unsigned long msg = 0; ptrace(PTRACE_GETEVENTMSG, c, 0, &msg);
                  ptrace(PTRACE_GETSIGINFO, c, 0, &si);
                  printf("exit event: status %lu, siginfo code 0x%x\n", msg >> 8, si.si_code);
                } else {
                  printf("other stop: %s\n", describe(st));
                }
                ptrace(PTRACE_SYSCALL, c, 0, 0);
              }
              printf("%d syscalls counted\n", syscalls);
              printf("after the end: %d\n", ptrace(PTRACE_CONT, c, 0, 0) < 0 ? errno : 0);
              return 0;
            }
            """#, name: "ptrace_tiny_strace", in: dir)
        #expect(out.contains("helexit 1 = 3"), "\(out)")
        #expect(out.contains("poked\n"), "\(out)")
        #expect(out.contains("peek 7 errno 0"), "\(out)")
        #expect(out.contains("exit event: status 9"), "\(out)")
        #expect(out.contains("end: exited 9"), "\(out)")
        #expect(out.contains("5 syscalls counted"), "\(out)")
    }

    /// execve of a tracee: SIGTRAP after it without TRACEEXEC, the exec
    /// event with it; signals the tracee gets are signal-delivery-stops, and
    /// the tracer chooses what is delivered.
    @Test func execAndSignalStops() throws {
        let out = try Harness.matchesNative(Self.prelude + #"""
            static volatile int got;
            static void on_usr1(int s) { got = s; }
            int main(int argc, char **argv) {
              setvbuf(stdout, 0, _IOLBF, 0);
              if (argc > 1) {
                signal(SIGUSR1, on_usr1);
                raise(SIGUSR1);     // the tracer delivers SIGUSR2 instead, then SIGUSR1
                printf("exec'd child got %d\n", got);
                return 3;
              }
              for (int traceexec = 0; traceexec < 2; traceexec++) {
                pid_t c = fork();
                if (c == 0) {
                  ptrace(PTRACE_TRACEME, 0, 0, 0);
                  if (traceexec) raise(SIGSTOP);
                  execl("/proc/self/exe", argv[0], "child", (char *)0);
                  _exit(99);
                }
                int st;
                if (traceexec) {
                  waitpid(c, &st, 0); printf("first: %s\n", describe(st));
                  ptrace(PTRACE_SETOPTIONS, c, 0, PTRACE_O_TRACEEXEC);
                  ptrace(PTRACE_CONT, c, 0, 0);
                }
                waitpid(c, &st, 0); printf("after exec: %s\n", describe(st));
                unsigned long msg = 0; ptrace(PTRACE_GETEVENTMSG, c, 0, &msg);
                if (traceexec) printf("event message is the pid %d\n", msg == (unsigned long)c);
                ptrace(PTRACE_CONT, c, 0, 0);
                waitpid(c, &st, 0); printf("next: %s\n", describe(st));
                siginfo_t si; ptrace(PTRACE_GETSIGINFO, c, 0, &si);
                printf("siginfo signo %d code %d from itself %d\n", si.si_signo, si.si_code, si.si_pid == c);
                ptrace(PTRACE_CONT, c, 0, traceexec ? SIGUSR1 : SIGUSR2);
                waitpid(c, &st, 0); printf("end: %s\n", describe(st));
              }
              return 0;
            }
            """#, name: "ptrace_exec", in: dir)
        #expect(out.contains("after exec: stopped sig 0x5 event 0"), "\(out)")
        #expect(out.contains("after exec: stopped sig 0x5 event 4"), "\(out)")
        #expect(out.contains("end: killed by 12"), "\(out)")
        #expect(out.contains("exec'd child got 10"), "\(out)")
    }

    /// ATTACH and DETACH, SEIZE with INTERRUPT, SINGLESTEP and KILL, and the
    /// errors of requests on processes that are not stopped or not traced.
    @Test func attachSeizeStepAndKill() throws {
        let out = try Harness.matchesNative(Self.prelude + #"""
            static volatile long flag, spins;
            static pid_t spinner(void) {
              pid_t c = fork();
              if (c == 0) { while (!flag) { spins++; syscall(SYS_getppid); } _exit(flag); }
              return c;
            }
            int main(void) {
              setvbuf(stdout, 0, _IOLBF, 0);
              pid_t c = spinner();
              int st;
              printf("not traced: %d\n", ptrace(PTRACE_PEEKDATA, c, &flag, 0) < 0 ? errno : 0);
              printf("attach self: %d\n", ptrace(PTRACE_ATTACH, getpid(), 0, 0) < 0 ? errno : 0);
              printf("attach %ld\n", ptrace(PTRACE_ATTACH, c, 0, 0));
              printf("attach again: %d\n", ptrace(PTRACE_ATTACH, c, 0, 0) < 0 ? errno : 0);
              waitpid(c, &st, 0); printf("attached: %s\n", describe(st));
              printf("interrupt without seize: %d\n", ptrace(PTRACE_INTERRUPT, c, 0, 0) < 0 ? errno : 0);
              ptrace(PTRACE_POKEDATA, c, &flag, 5);
              printf("detach %ld\n", ptrace(PTRACE_DETACH, c, 0, 0));
              waitpid(c, &st, 0); printf("detached: %s\n", describe(st));

              c = spinner();
              printf("seize %ld\n", ptrace(PTRACE_SEIZE, c, 0, PTRACE_O_EXITKILL));
              printf("running: %d\n", ptrace(PTRACE_GETREGS, c, 0, 0) < 0 ? errno : 0);
              printf("interrupt %ld\n", ptrace(PTRACE_INTERRUPT, c, 0, 0));
              waitpid(c, &st, 0); printf("interrupted: %s\n", describe(st));
              struct user_regs_struct r0, r;
              ptrace(PTRACE_GETREGS, c, 0, &r0);
              int moved = 0;
              for (int i = 0; i < 3; i++) {
                ptrace(PTRACE_SINGLESTEP, c, 0, 0);
                waitpid(c, &st, 0);
                ptrace(PTRACE_GETREGS, c, 0, &r);
                printf("step %d: %s\n", i, describe(st));
                moved += r.rip != r0.rip;
                r0 = r;
              }
              printf("rip moved %d times\n", moved);
              printf("kill %ld\n", ptrace(PTRACE_KILL, c, 0, 0));
              waitpid(c, &st, 0); printf("killed: %s\n", describe(st));
              printf("gone: %d\n", ptrace(PTRACE_CONT, c, 0, 0) < 0 ? errno : 0);
              return 0;
            }
            """#, name: "ptrace_attach", in: dir)
        #expect(out.contains("attached: stopped sig 0x13 event 0"), "\(out)")
        #expect(out.contains("detached: exited 5"), "\(out)")
        #expect(out.contains("interrupted: stopped sig 0x5 event 128"), "\(out)")
        #expect(out.contains("killed: killed by 9"), "\(out)")
    }

    /// A tracee attached while parked in a call: the signal-delivery-stop
    /// shows the call's -ERESTART* code in RAX and its number in orig_rax;
    /// let go without a signal, the call runs again (LeakSanitizer's
    /// tracer does that to every thread); with a handled signal, read runs
    /// again after an SA_RESTART handler, and fails with EINTR otherwise,
    /// as pause always does.
    @Test func interruptedCallsRestartAfterASignalDeliveryStop() throws {
        let out = try Harness.matchesNative(Self.prelude.replacingOccurrences(of: "#include <elf.h>", with: "#include <elf.h>\n#include <sched.h>") + #"""
            static int fds[2];
            static volatile int handled;
            static void on(int s) { (void)s; handled++; }
            static void waitBlocked(pid_t c) {
              char path[64], buf[256];
              snprintf(path, sizeof path, "/proc/%d/stat", c);
              for (;;) {
                FILE *f = fopen(path, "r");
                if (!f) return;
                size_t n = fread(buf, 1, sizeof buf - 1, f);
                fclose(f);
                buf[n] = 0;
                char *close = strrchr(buf, ')');
                if (close && close[2] == 'S') return;
                sched_yield();
              }
            }
            /* what: 0 read (ERESTARTSYS), 1 pause (ERESTARTNOHAND) */
            static void child(int what, int flags) {
              struct sigaction sa = {0};
              sa.sa_handler = on; sa.sa_flags = flags;
              sigaction(SIGUSR1, &sa, 0);
              char c;
              long r = what == 0 ? read(fds[0], &c, 1) : pause();
              printf("  %s returned %ld %s after %d handler(s)\n", what == 0 ? "read" : "pause", r, r < 0 ? strerrorname_np(errno) : "", handled);
              _exit(0);
            }
            static void attachAndLetGo(int what, int flags, int inject) {
              pid_t c = fork();
              if (c == 0) child(what, flags);
              waitBlocked(c);
              int st;
              ptrace(PTRACE_ATTACH, c, 0, 0);
              waitpid(c, &st, 0);
              struct user_regs_struct r;
              ptrace(PTRACE_GETREGS, c, 0, &r);
              printf("%s%s, detach with %s: %s, rax %lld, orig_rax %lld\n", what == 0 ? "read" : "pause",
                     flags ? " (SA_RESTART)" : "", inject ? "SIGUSR1" : "0", describe(st), (long long)r.rax, (long long)r.orig_rax);
              ptrace(PTRACE_DETACH, c, 0, inject ? SIGUSR1 : 0);
              if (!inject || (flags && what == 0)) {
                waitBlocked(c);
                if (what == 0) write(fds[1], "x", 1); else kill(c, SIGUSR1);
              }
              waitpid(c, &st, 0);
            }
            int main(void) {
              setvbuf(stdout, 0, _IOLBF, 0);
              pipe(fds);
              attachAndLetGo(0, 0, 0);
              attachAndLetGo(1, 0, 0);
              attachAndLetGo(0, SA_RESTART, 1);
              attachAndLetGo(0, 0, 1);
              attachAndLetGo(1, SA_RESTART, 1);
              return 0;
            }
            """#, name: "ptrace_restart", in: dir)
        #expect(out.contains("read, detach with 0: stopped sig 0x13 event 0, rax -512, orig_rax 0\n  read returned 1  after 0 handler(s)"), "\(out)")
        #expect(out.contains("pause, detach with 0: stopped sig 0x13 event 0, rax -514, orig_rax 34\n  pause returned -1 EINTR after 1 handler(s)"))
        #expect(out.contains("read (SA_RESTART), detach with SIGUSR1: stopped sig 0x13 event 0, rax -512, orig_rax 0\n  read returned 1  after 1 handler(s)"))
        #expect(out.contains("read, detach with SIGUSR1: stopped sig 0x13 event 0, rax -512, orig_rax 0\n  read returned -1 EINTR after 1 handler(s)"))
    }

    /// kernel_clone's rules: CLONE_UNTRACED keeps a child out of its
    /// parent's TRACEFORK (no event, not traced: LeakSanitizer's tracer is
    /// made so), and CLONE_PTRACE traces a child without the option.
    @Test func untracedAndPtraceCloneFlags() throws {
        let out = try Harness.matchesNative(Self.prelude + #"""
            #include <sched.h>
            /* The tracee forks three ways; the tracer reports every stop it sees. */
            static void tracee(void) {
              raise(SIGSTOP);
              pid_t a = syscall(SYS_clone, CLONE_UNTRACED | SIGCHLD, 0, 0, 0, 0);
              if (a == 0) _exit(1);
              waitpid(a, 0, 0);
              pid_t b = syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
              if (b == 0) _exit(2);
              waitpid(b, 0, 0);
              _exit(0);
            }
            int main(void) {
              setvbuf(stdout, 0, _IOLBF, 0);
              pid_t c = fork();
              if (c == 0) { ptrace(PTRACE_TRACEME, 0, 0, 0); tracee(); }
              int st;
              waitpid(c, &st, 0);
              printf("tracee: %s\n", describe(st));
              ptrace(PTRACE_SETOPTIONS, c, 0, PTRACE_O_TRACEFORK);
              ptrace(PTRACE_CONT, c, 0, 0);
              for (;;) {
                pid_t w = waitpid(-1, &st, __WALL);
                if (w < 0) break;
                printf("%s: %s\n", w == c ? "tracee" : "its child", describe(st));
                if (WIFSTOPPED(st)) ptrace(PTRACE_CONT, w, 0, 0);
              }
              /* CLONE_PTRACE without TRACEFORK: the child is traced too, from a SIGSTOP. */
              c = fork();
              if (c == 0) {
                ptrace(PTRACE_TRACEME, 0, 0, 0);
                raise(SIGSTOP);
                pid_t a = syscall(SYS_clone, CLONE_PTRACE | SIGCHLD, 0, 0, 0, 0);
                if (a == 0) _exit(3);
                waitpid(a, 0, 0);
                _exit(0);
              }
              waitpid(c, &st, 0);
              printf("second tracee: %s\n", describe(st));
              ptrace(PTRACE_CONT, c, 0, 0);
              for (;;) {
                pid_t w = waitpid(-1, &st, __WALL);
                if (w < 0) break;
                printf("%s: %s\n", w == c ? "second tracee" : "its child", describe(st));
                if (WIFSTOPPED(st)) ptrace(PTRACE_CONT, w, 0, 0);
              }
              return 0;
            }
            """#, name: "ptrace_untraced", in: dir)
        #expect(out.hasPrefix("tracee: stopped sig 0x13 event 0\ntracee: stopped sig 0x11 event 0\ntracee: stopped sig 0x5 event 1\n"), "\(out)")
        #expect(!out.contains("its child: exited 1"))
        #expect(out.contains("second tracee: stopped sig 0x13 event 0\nits child: stopped sig 0x13 event 0\nits child: exited 3"))
    }

    /// The first process's parent and any process outside the recording
    /// cannot be tracers or tracees: EPERM, with a report.
    @Test func tracingOutsideTheRecordingIsRefused() throws {
        let exe = try Harness.compile(Self.prelude + #"""
            int main(void) {
              printf("traceme %d\n", ptrace(PTRACE_TRACEME, 0, 0, 0) < 0 ? errno : 0);
              printf("attach init %d\n", ptrace(PTRACE_ATTACH, 1, 0, 0) < 0 ? errno : 0);
              return 0;
            }
            """#, name: "ptrace_outside", in: dir)
        let (rec, _) = try Harness.roundTrip([exe], in: dir)
        #expect(rec.stdout == "traceme 1\nattach init 1\n")
        #expect(rec.stderr.contains("outside the recording"))
    }
}

/// The real strace inside a recording: it traces with SEIZE or TRACEME,
/// PTRACE_SYSCALL stops, GET_SYSCALL_INFO, PEEKDATA (process_vm_readv
/// is ENOSYS here) and follows forks with -f. Its output must be the same
/// on replay, and list the syscalls a native strace lists.
@Suite(.serialized) struct StraceTests {
    let dir = Harness.temporaryDirectory()
    static let strace = "/usr/bin/strace"

    func straceRoundTrip(_ program: [String]) throws -> (recorded: [String], native: [String]) {
        let trace = dir.appendingPathComponent("strace-\(UUID().uuidString.prefix(8))")
        let rec = try Harness.record([Self.strace, "-f"] + program, trace: trace)
        #expect(rec.status == 0, "\(rec.stderr)")
        let rep = try Harness.replay(trace)
        #expect(rep.status == 0)
        #expect(rep.stdout == rec.stdout)
        let lines = { (s: String) in s.split(separator: "\n").map(String.init).filter { !$0.hasPrefix("detrec:") } }
        #expect(lines(rep.stderr) == lines(rec.stderr))
        let native = try Harness.run([Self.strace, "-f"] + program)
        return (lines(rec.stderr), lines(native.stderr))
    }

    /// The syscall names of strace's lines, without pids and arguments.
    static func names(_ lines: [String]) -> [String] {
        lines.map { line in
            var l = Substring(line)
            if l.hasPrefix("[pid ") { l = l.drop { $0 != "]" }.dropFirst(2) }
            return String(l.prefix { $0 != "(" && $0 != " " })
        }
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: StraceTests.strace)))
    func straceOfTrue() throws {
        let (rec, native) = try straceRoundTrip(["/bin/true"])
        #expect(rec.first?.hasPrefix("execve(\"/bin/true\"") == true, "\(rec)")
        #expect(rec.last == "+++ exited with 0 +++", "\(rec)")
        // The dynamic loader's calls; native's first mmap may differ in place.
        let wanted = ["execve", "brk", "openat", "read", "arch_prctl", "set_tid_address", "mprotect", "exit_group"]
        for name in wanted { #expect(Self.names(rec).contains(name) == Self.names(native).contains(name), "\(name)") }
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: StraceTests.strace)))
    func straceFollowsAFork() throws {
        let exe = try Harness.compile(#"""
            #include <signal.h>
            #include <stdio.h>
            #include <sys/wait.h>
            #include <unistd.h>
            int main(void) {
              pid_t c = fork();
              if (!c) { write(1, "child\n", 6); _exit(3); }
              int st; waitpid(c, &st, 0);
              printf("parent %d\n", WEXITSTATUS(st));
              return 0;
            }
            """#, name: "strace_fork", in: dir)
        let (rec, native) = try straceRoundTrip([exe])
        #expect(rec.contains { $0.hasSuffix("+++ exited with 3 +++") }, "\(rec)")
        #expect(rec.last == "+++ exited with 0 +++", "\(rec)")
        #expect(rec.contains { $0.hasPrefix("--- SIGCHLD {si_signo=SIGCHLD, si_code=CLD_EXITED") }, "\(rec)")
        let tail = { (l: [String]) in Array(Self.names(l).drop { $0 != "clone" && $0 != "fork" && $0 != "vfork" }) }
        // strace splits a call into "<unfinished ...>" and "<... resumed>"
        // lines when another tracee's stop comes between, which natively
        // depends on timing: count each call once, by its first line.
        let calls = { (l: [String]) in tail(l).filter { $0 != "---" && !$0.hasPrefix("<") } }
        #expect(calls(rec).count == calls(native).count, "\(rec)\n\(native)")
    }
}
