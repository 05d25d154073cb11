import Foundation
import Testing

/// Who a signal goes to: one thread (pthread_kill, tgkill), a process of
/// the recording (kill to a child or the parent), and what the parent
/// sees when a child dies of one. Output must match a native run, and
/// every replay the recording.
@Suite(.serialized) struct SignalTargetTests {
    let dir = Harness.temporaryDirectory()

    func matchesNative(_ source: String, name: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        try Harness.matchesNative(source, name: name, in: dir, sourceLocation: sourceLocation)
    }

    static let prelude = #"""
        #define _GNU_SOURCE
        #include <errno.h>
        #include <pthread.h>
        #include <signal.h>
        #include <stdio.h>
        #include <stdlib.h>
        #include <string.h>
        #include <sys/wait.h>
        #include <unistd.h>
        static void unblock_all(void) { sigset_t none; sigemptyset(&none); sigprocmask(SIG_SETMASK, &none, 0); }   /* the test runner blocks some */
        static void handle(int s, void (*f)(int)) { struct sigaction sa; memset(&sa, 0, sizeof sa); sa.sa_handler = f; sigaction(s, &sa, 0); }

        """#

    @Test func threadDirectedSignalsReachTheirThreadAndInterruptItsWait() throws {
        let out = try matchesNative(Self.prelude + #"""
            static pthread_t worker;
            static volatile int in_worker, in_main, stop, worker_tid;
            static int req[2], ready[2];
            /* Whether thread `tid` sleeps (state S in /proc/self/task/TID/stat). */
            static int sleeping(int tid) {
              char path[64], b[256] = {0}; snprintf(path, sizeof path, "/proc/self/task/%d/stat", tid);
              FILE *f = fopen(path, "r"); if (!f) return 0; fread(b, 1, sizeof b - 1, f); fclose(f);
              char *end = strrchr(b, ')'); return end && end[1] == ' ' && end[2] == 'S';
            }
            static void on(int s) { if (pthread_equal(pthread_self(), worker)) in_worker++; else in_main++; if (s == SIGUSR1) stop = 1; }
            static void *work(void *a) {
              (void)a;
              while (!stop) { }                       /* a spin only the signal ends */
              worker_tid = gettid();
              char c = 'r'; write(ready[1], &c, 1);
              ssize_t n = read(req[0], &c, 1);        /* interrupted: no SA_RESTART */
              printf("worker read %zd %s\n", n, n < 0 ? strerror(errno) : "");
              sigset_t m; sigemptyset(&m); sigaddset(&m, SIGUSR1); pthread_sigmask(SIG_BLOCK, &m, 0);
              pthread_kill(pthread_self(), SIGUSR1);
              sigset_t p; sigpending(&p);
              printf("worker pending usr1 %d\n", sigismember(&p, SIGUSR1));
              return 0;
            }
            int main(void) {
              unblock_all();
              handle(SIGUSR1, on); handle(SIGUSR2, on);
              pipe(req); pipe(ready);
              pthread_create(&worker, 0, work, 0);
              pthread_kill(worker, SIGUSR1);
              char c; read(ready[0], &c, 1);
              while (!sleeping(worker_tid)) sched_yield();   /* the worker waits in read() now: nothing else sleeps */
              /* Process-directed, blocked here: only the worker can take it. */
              sigset_t m; sigemptyset(&m); sigaddset(&m, SIGUSR2); pthread_sigmask(SIG_BLOCK, &m, 0);
              kill(getpid(), SIGUSR2);
              pthread_join(worker, 0);
              sigset_t p; sigpending(&p);
              printf("main pending usr1 %d usr2 %d\n", sigismember(&p, SIGUSR1), sigismember(&p, SIGUSR2));
              printf("handled in worker %d in main %d\n", in_worker, in_main);
              return 0;
            }
            """#, name: "thread_directed")
        #expect(out == """
            worker read -1 Interrupted system call
            worker pending usr1 1
            main pending usr1 0 usr2 0
            handled in worker 2 in main 0

            """)
    }

    @Test func signalsBetweenProcessesAndChildrenThatDieOfThem() throws {
        let out = try matchesNative(Self.prelude + #"""
            static volatile int got;
            static void on(int s) { got = s; }
            static void report(const char *what, int status) {
              if (WIFEXITED(status)) printf("%s: exited %d\n", what, WEXITSTATUS(status));
              else if (WIFSIGNALED(status)) printf("%s: killed by %d\n", what, WTERMSIG(status));
              else if (WIFSTOPPED(status)) printf("%s: stopped by %d\n", what, WSTOPSIG(status));
              else if (WIFCONTINUED(status)) printf("%s: continued\n", what);
              fflush(stdout);
            }
            int main(void) {
              unblock_all();
              int sync[2]; pipe(sync);
              int status; char c;
              /* A handler in the child runs for the parent's kill. */
              pid_t a = fork();
              if (a == 0) { handle(SIGUSR1, on); write(sync[1], "x", 1); while (!got) pause(); _exit(40 + got); }
              read(sync[0], &c, 1);
              kill(a, SIGUSR1);
              waitpid(a, &status, 0); report("handler", status);
              int r = kill(a, 0);
              printf("reaped child: kill %d %s\n", r, strerror(errno));
              /* A spinning child killed outright. */
              pid_t b = fork();
              if (b == 0) { write(sync[1], "x", 1); for (;;) { } }
              read(sync[0], &c, 1);
              kill(b, SIGKILL);
              waitpid(b, &status, 0); report("sigkill", status);
              /* A child that faults ends alone; the recording goes on. */
              pid_t d = fork();
              if (d == 0) { *(volatile int *)8 = 1; _exit(0); }
              waitpid(d, &status, 0); report("fault", status);
              /* Stop, continue, exit, each seen by waitpid. */
              /* The child waits for the parent to have seen it continue:
                 natively an exit before that waitpid would be reported instead. */
              int go[2]; pipe(go);
              pid_t e = fork();
              if (e == 0) { raise(SIGSTOP); read(go[0], &c, 1); _exit(5); }
              waitpid(e, &status, WUNTRACED); report("stop", status);
              kill(e, SIGCONT);
              waitpid(e, &status, WCONTINUED); report("cont", status);
              write(go[1], "x", 1);
              waitpid(e, &status, 0); report("end", status);
              /* The child signals its parent. */
              handle(SIGUSR2, on); got = 0;
              pid_t f = fork();
              if (f == 0) { kill(getppid(), SIGUSR2); _exit(0); }
              while (!got) pause();
              waitpid(f, &status, 0);
              printf("parent got %d\n", got);
              return 0;
            }
            """#, name: "process_signals")
        #expect(out == """
            handler: exited 50
            reaped child: kill -1 No such process
            sigkill: killed by 9
            fault: killed by 11
            stop: stopped by 19
            cont: continued
            end: exited 5
            parent got 12

            """)
    }

    @Test func waitidReportsEachChangeWithItsSiginfo() throws {
        let out = try matchesNative(Self.prelude + #"""
            static void show(const char *what, int r, siginfo_t *i) {
              printf("%s: r %d signo %d code %d status %d pid-known %d\n", what, r, i->si_signo, i->si_code, i->si_status, i->si_pid != 0);
              fflush(stdout);
            }
            int main(void) {
              unblock_all();
              siginfo_t i;
              pid_t a = fork();
              if (a == 0) { raise(SIGSTOP); pause(); _exit(3); }
              memset(&i, 0xff, sizeof i);
              show("stopped", waitid(P_PID, a, &i, WSTOPPED), &i);
              kill(a, SIGCONT);
              show("continued", waitid(P_PID, a, &i, WCONTINUED), &i);
              memset(&i, 0xff, sizeof i);
              show("nothing yet", waitid(P_ALL, 0, &i, WEXITED | WNOHANG), &i);
              kill(a, SIGTERM);
              show("peek", waitid(P_ALL, 0, &i, WEXITED | WNOWAIT), &i);
              show("reap", waitid(P_PID, a, &i, WEXITED), &i);
              int r = waitid(P_ALL, 0, &i, WEXITED);
              printf("no children: r %d %s\n", r, strerror(errno));
              return 0;
            }
            """#, name: "waitid")
        #expect(out == """
            stopped: r 0 signo 17 code 5 status 19 pid-known 1
            continued: r 0 signo 17 code 6 status 18 pid-known 1
            nothing yet: r 0 signo 0 code 0 status 0 pid-known 0
            peek: r 0 signo 17 code 2 status 15 pid-known 1
            reap: r 0 signo 17 code 2 status 15 pid-known 1
            no children: r -1 No child processes

            """)
    }

    /// pthread_kill to threads that are not on the vCPU (parked in a
    /// condition wait, or runnable and yielding): each handler runs on its
    /// own thread's state: its TLS (the index it bumps), its alternate
    /// signal stack, its registers.
    @Test func signalsToThreadsOffTheVCPURunOnTheirOwnState() throws {
        let out = try matchesNative(#"""
            #include <pthread.h>
            #include <sched.h>
            #include <signal.h>
            #include <stdatomic.h>
            #include <stdio.h>
            #include <string.h>
            #include <unistd.h>
            #define N 5
            static __thread int my_index = -1;
            static volatile int hits[N];
            static atomic_int ready, go;
            static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
            static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
            static char altstacks[N][65536];
            static void *volatile handler_stack[N];
            static void on(int s) { (void)s; int local; hits[my_index]++; handler_stack[my_index] = &local; }
            static void *run(void *a) {
              my_index = (int)(long)a;
              stack_t ss = { .ss_sp = altstacks[my_index], .ss_size = sizeof altstacks[0], .ss_flags = 0 };
              sigaltstack(&ss, 0);
              if (my_index % 2) {
                pthread_mutex_lock(&mu);
                atomic_fetch_add(&ready, 1);
                while (!atomic_load(&go)) pthread_cond_wait(&cv, &mu);
                pthread_mutex_unlock(&mu);
              } else {
                atomic_fetch_add(&ready, 1);
                while (!atomic_load(&go)) sched_yield();
              }
              return 0;
            }
            int main(void) {
              struct sigaction sa; memset(&sa, 0, sizeof sa); sa.sa_handler = on; sa.sa_flags = SA_RESTART | SA_ONSTACK;
              sigaction(SIGUSR1, &sa, 0);
              pthread_t t[N];
              my_index = 0;
              for (long i = 1; i < N; i++) pthread_create(&t[i], 0, run, (void *)i);
              while (atomic_load(&ready) < N - 1) sched_yield();
              for (int i = 1; i < N; i++) pthread_kill(t[i], SIGUSR1);
              while (hits[1] + hits[2] + hits[3] + hits[4] < N - 1) sched_yield();
              pthread_mutex_lock(&mu); atomic_store(&go, 1); pthread_cond_broadcast(&cv); pthread_mutex_unlock(&mu);
              for (int i = 1; i < N; i++) pthread_join(t[i], 0);
              for (int i = 0; i < N; i++) {
                char *s = (char *)handler_stack[i];
                printf("hits[%d]=%d on its alternate stack %d\n", i, hits[i], s >= altstacks[i] && s < altstacks[i] + sizeof altstacks[0]);
              }
              return 0;
            }
            """#, name: "offcpu_signals")
        #expect(out == (0..<5).map { "hits[\($0)]=\($0 == 0 ? 0 : 1) on its alternate stack \($0 == 0 ? 0 : 1)\n" }.joined())
    }
}
