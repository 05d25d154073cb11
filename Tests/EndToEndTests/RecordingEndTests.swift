import Foundation
import Testing

/// When a recording ends (docs/architecture.md, "Processes"): with the
/// last process of the first process's session, not with the first
/// process; orphans are adopted by a subreaper or by init; daemons that
/// left the session are not waited for; a host signal still ends it.
/// Ordering comes from pipes, never from sleeps.
@Suite(.serialized) struct RecordingEndTests {
    let dir = Harness.temporaryDirectory()

    /// The first process prints, exits with 3 and so closes the pipe its
    /// child waits on; the child, now an orphan, prints after it. Natively
    /// `| cat` waits for every writer of the output; the recording must
    /// too, and exit with the first process's status.
    @Test func aChildThatOutlivesTheFirstProcessIsRecordedToItsEnd() throws {
        let exe = try Harness.compile(#"""
            #include <stdio.h>
            #include <unistd.h>
            int main(void) {
              int p[2]; pipe(p);
              pid_t parent = getpid();
              pid_t c = fork();
              if (c == 0) {
                close(p[1]);
                char b;
                int n = read(p[0], &b, 1);          /* EOF: the parent has exited */
                /* Linux closes the files before it reparents: wait for the second step. */
                while (getppid() == parent) usleep(1000);
                pid_t q = getppid();
                printf("late: eof %d reparented %d not zero %d\n", n == 0, q != parent, q != 0);
                fflush(stdout);
                pid_t g = fork();                    /* the orphan still has children of its own */
                if (g == 0) { printf("grandchild of an orphan\n"); return 0; }
                int st = -1;
                pid_t w = waitpid(g, &st, 0);
                printf("orphan waited %d status %d\n", w == g, st);
                return 5;
              }
              close(p[0]);
              printf("early\n");
              fflush(stdout);
              return 3;
            }
            """#, name: "outlive", in: dir)
        let native = try Harness.run(["/bin/sh", "-c", "\"$0\" | cat", exe])
        let (rec, _) = try Harness.roundTrip([exe], in: dir)
        #expect(native.stdout == "early\nlate: eof 1 reparented 1 not zero 1\ngrandchild of an orphan\norphan waited 1 status 0\n")
        #expect(rec.stdout == native.stdout, "\(rec.stderr)")
        #expect(rec.status == 3, "\(rec.stderr)")
    }

    /// `sh -c 'cmd &'; echo`: the background job waits until the shell
    /// is gone (kill -0 fails once its parent has reaped it: natively the
    /// outer shell, in the recording detrec's parent outside it) and then
    /// prints, in the recording as natively.
    @Test func aShellsBackgroundJobOutlivesTheShell() throws {
        let script = "( while kill -0 $$ 2>/dev/null; do :; done; echo late ) & echo early"
        let native = try Harness.run(["/bin/sh", "-c", "\"$@\" | cat", "sh", "/bin/sh", "-c", script])
        let (rec, _) = try Harness.roundTrip(["/bin/sh", "-c", script], in: dir)
        #expect(native.stdout == "early\nlate\n")
        #expect(rec.stdout == native.stdout, "\(rec.stderr)")
        #expect(rec.status == 0, "\(rec.stderr)")
    }

    /// A subreaper (PR_SET_CHILD_SUBREAPER) adopts its grandchild when
    /// the child between them ends: getppid names it, it gets SIGCHLD for
    /// it and waits for it.
    /// The first process kills its child and exits before the child dies:
    /// the recording ends with the child's death, then the first process's
    /// end, and replay reads that end too (it stopped one event short and
    /// called the trace damaged).
    @Test func aChildKilledByTheFirstProcessDiesAfterIt() throws {
        let exe = try Harness.compile(#"""
            #include <signal.h>
            #include <stdio.h>
            #include <unistd.h>
            int main(void) {
              pid_t c = fork();
              if (c == 0) { for (;;) pause(); }
              usleep(100000);
              printf("killing the child\n");
              fflush(stdout);
              kill(c, SIGTERM);
              return 3;
            }
            """#, name: "kill_then_exit", in: dir)
        let native = try Harness.run([exe])
        let (rec, _) = try Harness.roundTrip([exe], in: dir)
        #expect(rec.stdout == native.stdout)
        #expect(rec.status == 3, "\(rec.stderr)")
    }

    @Test func aSubreaperAdoptsItsOrphanedGrandchild() throws {
        let out = try Harness.matchesNative(#"""
            #include <signal.h>
            #include <stdio.h>
            #include <string.h>
            #include <sys/prctl.h>
            #include <sys/wait.h>
            #include <unistd.h>
            static volatile int chld;
            static void on(int s) { (void)s; chld++; }
            int main(void) {
              /* SA_RESTART: the grandchild's SIGCHLD may come while the read below waits. */
              struct sigaction sa; memset(&sa, 0, sizeof sa); sa.sa_handler = on; sa.sa_flags = SA_RESTART;
              sigaction(SIGCHLD, &sa, 0);
              printf("set %d\n", prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0));
              int flag; prctl(PR_GET_CHILD_SUBREAPER, &flag, 0, 0, 0);
              printf("get %d\n", flag);
              fflush(stdout);
              int p[2]; pipe(p);
              int q[2]; pipe(q);
              pid_t me = getpid();
              pid_t a = fork();
              if (a == 0) {
                pid_t b = fork();
                if (b == 0) {
                  close(p[1]);
                  char x; read(p[0], &x, 1);        /* EOF once a has exited */
                  pid_t was = getppid();
                  while (getppid() != me && getppid() == was) usleep(1000);
                  char r = getppid() == me ? 'y' : 'n';
                  write(q[1], &r, 1);
                  return 9;
                }
                return 4;
              }
              close(p[0]); close(p[1]); close(q[1]);
              int st = -1;
              pid_t w = waitpid(a, &st, 0);
              printf("a %d exit %d\n", w == a, WEXITSTATUS(st));
              char r = '?'; read(q[0], &r, 1);
              printf("grandchild saw the subreaper as its parent: %c\n", r);
              pid_t g = waitpid(-1, &st, 0);
              printf("reaped the grandchild %d exit %d\n", g > 0 && g != a, WEXITSTATUS(st));
              printf("no more children %d\n", waitpid(-1, &st, WNOHANG) == -1);
              /* Not >= 2: natively the two SIGCHLDs coalesce when the second comes before the handler ran. */
              printf("sigchld at least 1: %d\n", chld >= 1);
              return 0;
            }
            """#, name: "subreaper", in: dir)
        #expect(out.contains("grandchild saw the subreaper as its parent: y"))
        #expect(out.contains("reaped the grandchild 1 exit 9"))
    }

    /// A daemon (fork, setsid, then it waits forever) is not waited for:
    /// the recording ends with the first process, which has printed its
    /// last line. If it waited, the daemon's 100 s alarm would outlast
    /// the harness's 60 s bound.
    @Test func aDaemonThatLeftTheSessionIsNotWaitedFor() throws {
        let out = try Harness.matchesNative(#"""
            #include <fcntl.h>
            #include <stdio.h>
            #include <unistd.h>
            int main(void) {
              int p[2]; pipe(p);
              pid_t c = fork();
              if (c == 0) {
                setsid();
                int null = open("/dev/null", O_RDWR);
                dup2(null, 1); dup2(null, 2);
                write(p[1], "s", 1);
                close(p[1]);
                alarm(100);
                for (;;) pause();
              }
              close(p[1]);
              char x = 0;
              read(p[0], &x, 1);
              printf("daemon started: %c\n", x);
              return 0;
            }
            """#, name: "daemon", in: dir)
        #expect(out == "daemon started: s\n")
    }

    /// Once the first process has ended, Ctrl-C ends a recording that a
    /// child would keep open forever, and the trace replays to there.
    @Test func ctrlCEndsARecordingKeptOpenByAnOrphan() throws {
        let exe = try Harness.compile(#"""
            #include <stdio.h>
            #include <unistd.h>
            int main(void) {
              int p[2]; pipe(p);
              if (fork() == 0) {
                close(p[1]);
                char x; read(p[0], &x, 1);
                printf("orphan waits\n");
                fflush(stdout);
                for (;;) pause();
              }
              printf("first process ends\n");
              fflush(stdout);
              return 0;
            }
            """#, name: "orphan_forever", in: dir)
        let trace = dir.appendingPathComponent("orphan-forever")
        let child = try spawn([Harness.detrec, "record", "-q", "-o", trace.path, "--", exe], in: Harness.scratch.path)
        let ready = child.waitUntil { child.stdoutSoFar.contains("orphan waits") }
        #expect(ready)
        child.signal(SIGINT)
        let r = child.wait()
        #expect(r.status == 128 + SIGINT, "\(r.stderr)")
        #expect(r.stdout == "first process ends\norphan waits\n")
        for _ in 0..<2 {
            let rep = try Harness.replay(trace)
            #expect(rep.stdout == r.stdout)
            #expect(rep.status == r.status, "\(rep.stderr)")
        }
    }

    /// Ctrl-C is the terminal's signal to the whole foreground group: a
    /// parent that handles SIGINT survives it, its child that does not
    /// dies of it, and the parent's wait reports that.
    @Test func ctrlCReachesTheChildrenOfAParentThatHandlesIt() throws {
        let exe = try Harness.compile(#"""
            #include <errno.h>
            #include <signal.h>
            #include <stdio.h>
            #include <string.h>
            #include <sys/wait.h>
            #include <unistd.h>
            static void on(int s) { (void)s; }
            int main(void) {
              struct sigaction sa; memset(&sa, 0, sizeof sa); sa.sa_handler = on;
              sigaction(SIGINT, &sa, 0);
              int p[2]; pipe(p);
              pid_t c = fork();
              if (c == 0) {
                signal(SIGINT, SIG_DFL);
                close(p[0]);
                write(p[1], "r", 1);
                for (;;) pause();
              }
              close(p[1]);
              char x; read(p[0], &x, 1);
              printf("ready\n");
              fflush(stdout);
              int st = 0;
              pid_t w;
              while ((w = waitpid(c, &st, 0)) < 0 && errno == EINTR) {}
              printf("child killed %d by %d\n", w == c && WIFSIGNALED(st), WTERMSIG(st));
              return 0;
            }
            """#, name: "ctrlc_group", in: dir)
        let trace = dir.appendingPathComponent("ctrlc-group")
        let child = try spawn([Harness.detrec, "record", "-q", "-o", trace.path, "--", exe], in: Harness.scratch.path)
        #expect(child.waitUntil { child.stdoutSoFar.contains("ready") })
        child.signal(SIGINT)
        let r = child.wait()
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout == "ready\nchild killed 1 by 2\n")
        for _ in 0..<2 {
            let rep = try Harness.replay(trace)
            #expect(rep.stdout == r.stdout)
            #expect(rep.status == r.status, "\(rep.stderr)")
        }
    }
}
