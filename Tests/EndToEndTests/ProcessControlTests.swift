import Foundation
import Testing

/// prctl, capabilities, CPU affinity and getcpu as a one-CPU Linux answers
/// them: each program's output must match a native run where the host's
/// answer is the same (names, flags, errors), and every replay the
/// recording.
@Suite(.serialized) struct ProcessControlTests {
    let dir = Harness.temporaryDirectory()

    static let prelude = EpollTests.prelude + #"""
        #include <sched.h>
        #include <sys/prctl.h>
        #include <sys/syscall.h>
        #include <linux/capability.h>

        """#

    @Test func prctlOptionsRuntimesUseAtStartUp() throws {
        let out = try Harness.matchesNative(Self.prelude + #"""
            static void *named(void *a) {
              char name[16] = {0}; prctl(PR_GET_NAME, name);
              printf("thread inherits %s\n", name);
              prctl(PR_SET_NAME, "worker-thread-with-a-long-name");
              prctl(PR_GET_NAME, name);
              printf("thread %s\n", name);
              return a;
            }
            int main(void) {
              char name[16] = {0};
              prctl(PR_GET_NAME, name); printf("name %s\n", name);
              prctl(PR_SET_NAME, "main"); prctl(PR_GET_NAME, name); printf("renamed %s\n", name);
              pthread_t t; pthread_create(&t, 0, named, 0); pthread_join(t, 0);
              prctl(PR_GET_NAME, name); printf("main still %s\n", name);
              printf("bad name %d\n", prctl(PR_SET_NAME, (void *)8) < 0 ? -errno : 0);
              int sig = -1;
              printf("pdeathsig %d", prctl(PR_SET_PDEATHSIG, SIGUSR1)); prctl(PR_GET_PDEATHSIG, &sig); printf(" -> %d\n", sig);
              printf("bad pdeathsig %d\n", prctl(PR_SET_PDEATHSIG, 99) < 0 ? -errno : 0);
              printf("dumpable %d", prctl(PR_GET_DUMPABLE)); prctl(PR_SET_DUMPABLE, 0); printf(" -> %d, bad %d\n", prctl(PR_GET_DUMPABLE),
                     prctl(PR_SET_DUMPABLE, 2) < 0 ? -errno : 0);
              printf("nnp %d", prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0));
              printf(" set %d", prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0));
              printf(" -> %d", prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0));
              printf(", bad %d", prctl(PR_SET_NO_NEW_PRIVS, 2, 0, 0, 0) < 0 ? -errno : 0);
              printf(" %d\n", prctl(PR_SET_NO_NEW_PRIVS, 1, 1, 0, 0) < 0 ? -errno : 0);
              printf("capbset 0 %d, cap 200 %d\n", prctl(PR_CAPBSET_READ, 0) >= 0, prctl(PR_CAPBSET_READ, 200) < 0 ? -errno : 0);
              printf("timerslack %d", prctl(PR_GET_TIMERSLACK)); prctl(PR_SET_TIMERSLACK, 1000);
              printf(" -> %d", prctl(PR_GET_TIMERSLACK)); prctl(PR_SET_TIMERSLACK, 0); printf(" -> %d\n", prctl(PR_GET_TIMERSLACK));
              int sub = -1; prctl(PR_SET_CHILD_SUBREAPER, 1); prctl(PR_GET_CHILD_SUBREAPER, &sub); printf("subreaper %d\n", sub);
              printf("thp %d", prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0)); prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0);
              printf(" -> %d\n", prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0));
              printf("seccomp mode %d, keepcaps %d, unaligned %d, unknown %d\n", prctl(PR_GET_SECCOMP), prctl(PR_GET_KEEPCAPS),
                     prctl(PR_GET_UNALIGN, &sig) < 0 ? -errno : 0, prctl(12345) < 0 ? -errno : 0);
              int *tid = (int *)1; prctl(PR_GET_TID_ADDRESS, &tid); printf("tid address set %d\n", tid != (int *)1);
              unsigned long auxv[64] = {0};
              int size = prctl(0x41555856, auxv, sizeof auxv, 0, 0);
              int pagesz = 0; for (int i = 0; auxv[i]; i += 2) if (auxv[i] == 6) pagesz = auxv[i + 1];
              printf("auxv %d page size %d\n", size, pagesz);
              fflush(stdout);
              pid_t child = fork();
              if (child == 0) {
                int s = -1; prctl(PR_GET_PDEATHSIG, &s); prctl(PR_GET_CHILD_SUBREAPER, &sub); prctl(PR_GET_NAME, name);
                printf("child: pdeathsig %d subreaper %d dumpable %d nnp %d name %s\n", s, sub, prctl(PR_GET_DUMPABLE),
                       prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0), name);
                fflush(stdout); _exit(0);
              }
              waitpid(child, 0, 0);
              return 0;
            }
            """#, name: "prctl_options", in: dir)
        #expect(out.contains("name prctl_options\nrenamed main\nthread inherits main\nthread worker-thread-w\nmain still main\n"))
        #expect(out.contains("pdeathsig 0 -> 10\nbad pdeathsig -22\ndumpable 1 -> 0, bad -22\n"))
        #expect(out.contains("nnp 0 set 0 -> 1, bad -22 -22\n"))
        #expect(out.contains("child: pdeathsig 0 subreaper 0 dumpable 0 nnp 1 name main\n"))
        #expect(out.contains("auxv 448 page size 4096\n"))
    }

    /// A child that asked for PR_SET_PDEATHSIG gets the signal when its
    /// parent ends, and is reparented to the subreaper above it.
    @Test func parentDeathSignalAndSubreaper() throws {
        let out = try Harness.matchesNative(Self.prelude + #"""
            int main(void) {
              prctl(PR_SET_CHILD_SUBREAPER, 1);
              pid_t top = getpid();
              int p[2]; pipe(p);
              pid_t middle = fork();
              if (middle == 0) {
                pid_t grandchild = fork();
                if (grandchild == 0) {
                  close(p[0]);
                  sigset_t s; sigemptyset(&s); sigaddset(&s, SIGUSR1); sigprocmask(SIG_BLOCK, &s, 0);
                  prctl(PR_SET_PDEATHSIG, SIGUSR1);
                  write(p[1], "r", 1);
                  int sig; sigwait(&s, &sig);
                  char m[64]; int n = snprintf(m, sizeof m, "grandchild got %d, parent is the subreaper %d\n", sig, getppid() == top);
                  write(1, m, n);
                  _exit(3);
                }
                char c; read(p[0], &c, 1);
                _exit(0);
              }
              close(p[1]);
              int st, st2; waitpid(middle, &st, 0);
              pid_t reaped = wait(&st2);
              printf("middle exited %d\n", WEXITSTATUS(st));
              printf("reaped the grandchild %d status %d\n", reaped > 0, WEXITSTATUS(st2));
              return 0;
            }
            """#, name: "pdeathsig", in: dir)
        #expect(out.contains("grandchild got 10, parent is the subreaper 1\n"))
        #expect(out.contains("reaped the grandchild 1 status 3\n"))
    }

    /// Not compared with a native run: the host may have more CPUs and
    /// protection keys; the recording has one CPU and none.
    @Test func oneCPUCapabilitiesAndProtectionKeys() throws {
        let exe = try Harness.compile(Self.prelude + #"""
            int main(void) {
              unsigned cpu = 99, node = 99;
              long got = syscall(SYS_getcpu, &cpu, &node, 0);
              printf("getcpu %ld cpu %u node %u\n", got, cpu, node);
              cpu_set_t set; CPU_ZERO(&set);
              long n = syscall(SYS_sched_getaffinity, 0, sizeof set, &set);
              printf("affinity %ld count %d cpu0 %d\n", n, CPU_COUNT(&set), CPU_ISSET(0, &set));
              printf("short %d, odd %d\n", syscall(SYS_sched_getaffinity, 0, 0, &set) < 0 ? -errno : 0,
                     syscall(SYS_sched_getaffinity, 0, 12, &set) < 0 ? -errno : 0);
              CPU_ZERO(&set); CPU_SET(0, &set);
              printf("set cpu0 %d\n", sched_setaffinity(0, sizeof set, &set));
              CPU_ZERO(&set); CPU_SET(5, &set);
              printf("set cpu5 %d\n", sched_setaffinity(0, sizeof set, &set) < 0 ? -errno : 0);
              struct __user_cap_header_struct h = {0x12345678, 0};
              struct __user_cap_data_struct d[2];
              int bad = syscall(SYS_capget, &h, d) < 0 ? -errno : 0;
              printf("capget bad version %d -> %x\n", bad, h.version);
              h.version = _LINUX_CAPABILITY_VERSION_3;
              printf("capget probe %ld\n", syscall(SYS_capget, &h, NULL));
              printf("capget %ld\n", syscall(SYS_capget, &h, d));
              printf("capset same %ld\n", syscall(SYS_capset, &h, d));
              printf("pkey_alloc %d pkey_free %d\n", syscall(SYS_pkey_alloc, 0, 0) < 0 ? -errno : 0, syscall(SYS_pkey_free, 1) < 0 ? -errno : 0);
              return 0;
            }
            """#, name: "one_cpu", in: dir)
        let rec = try Harness.roundTrip([exe], in: dir).0.stdout
        #expect(rec.contains("getcpu 0 cpu 0 node 0\naffinity 8 count 1 cpu0 1\nshort -22, odd -22\nset cpu0 0\nset cpu5 -22\n"))
        #expect(rec.contains("capget bad version -22 -> 20080522\ncapget probe 0\ncapget 0\ncapset same 0\npkey_alloc -28 pkey_free -22\n"))
    }

    /// The scheduling calls about the recording's parent (getppid: a process
    /// outside the recording) get the host's answer, and a negative pid is
    /// what Linux says: EINVAL for the policy calls, ESRCH for affinity
    /// (Python's test_posix). Before: ESRCH for the parent, EINVAL for
    /// affinity, so Python's sched_getaffinity(-1) doubled its set forever.
    @Test func schedulingCallsAboutTheParentAndBadPids() throws {
        let out = try Harness.matchesNative(#"""
            #define _GNU_SOURCE
            #include <errno.h>
            #include <sched.h>
            #include <stdio.h>
            #include <string.h>
            #include <unistd.h>
            static void show(const char *what, long r) { printf("%s: %s\n", what, r < 0 ? strerror(errno) : "ok"); }
            int main(void) {
              int policy = sched_getscheduler(getppid());
              printf("parent's policy: %s\n", policy < 0 ? strerror(errno) : policy == SCHED_OTHER || policy == SCHED_BATCH || policy == SCHED_IDLE ? "a normal one" : "other");
              struct sched_param sp = { 99 };
              show("parent's param", sched_getparam(getppid(), &sp));
              printf("parent's priority: %d\n", sp.sched_priority);
              show("getscheduler(-1)", sched_getscheduler(-1));
              show("getparam(-1)", sched_getparam(-1, &sp));
              show("getparam(0, NULL)", sched_getparam(0, NULL));
              cpu_set_t set; CPU_ZERO(&set);
              show("getaffinity(-1)", sched_getaffinity(-1, sizeof set, &set));
              CPU_SET(0, &set);
              show("setaffinity(-1)", sched_setaffinity(-1, sizeof set, &set));
              show("getaffinity(0)", sched_getaffinity(0, sizeof set, &set));
              return 0;
            }
            """#, name: "schedparent", in: dir)
        #expect(out == """
            parent's policy: a normal one
            parent's param: ok
            parent's priority: 0
            getscheduler(-1): Invalid argument
            getparam(-1): Invalid argument
            getparam(0, NULL): Invalid argument
            getaffinity(-1): No such process
            setaffinity(-1): No such process
            getaffinity(0): ok

            """)
    }
}
