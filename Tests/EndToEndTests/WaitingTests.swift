import Foundation
import Testing

/// A call that waits parks only its own thread: pipes, polls, sleeps,
/// locks and connects between threads and between processes record and
/// replay as the native run behaves, and huge timeouts behave as on Linux.
@Suite(.serialized) struct WaitingTests {
    let dir = Harness.temporaryDirectory()

    @Test func pipelinesLargerThanAPipeBetweenProcesses() throws {
        for cmd in ["head -c 70000 /dev/zero | wc -c", "yes | head -3", "cat /usr/bin/ls | wc -c"] {
            let native = try Harness.run(["/bin/bash", "-c", cmd])
            let (rec, _) = try Harness.roundTrip(["/bin/bash", "-c", cmd], in: dir)
            #expect(rec.stdout == native.stdout, "\(cmd)")
            #expect(rec.status == native.status, "\(cmd)")
        }
    }

    /// Two threads wait for the same child: the one that does not get it
    /// is woken with ECHILD when the other reaps it (Linux's do_wait), by
    /// waitpid and by waitid, instead of waiting forever.
    @Test func aWaitWhoseChildAnotherThreadReapedEndsWithECHILD() throws {
        let out = try Harness.matchesNative(#"""
            #include <errno.h>
            #include <pthread.h>
            #include <stdio.h>
            #include <unistd.h>
            #include <sys/wait.h>
            static pid_t child;
            static int byWaitid;
            static void *waiter(void *a) {
              int r;
              if (byWaitid) { siginfo_t si; r = waitid(P_PID, child, &si, WEXITED); r = r == 0 ? si.si_pid : -1; }
              else r = waitpid(child, 0, 0);
              return (void *)(long)(r == child ? 1 : r == -1 && errno == ECHILD ? 2 : 3);
            }
            int main(void) {
              for (byWaitid = 0; byWaitid < 2; byWaitid++) {
                int fd[2]; pipe(fd);
                child = fork();
                if (child == 0) { char b; read(fd[0], &b, 1); _exit(0); }
                pthread_t a, b;
                pthread_create(&a, 0, waiter, 0);
                pthread_create(&b, 0, waiter, 0);
                usleep(100000);
                write(fd[1], "x", 1);
                void *ra, *rb;
                pthread_join(a, &ra);
                pthread_join(b, &rb);
                long sum = (long)ra + (long)rb;
                printf("%s: %s\n", byWaitid ? "waitid" : "waitpid", sum == 3 ? "one reaped it, one got ECHILD" : "wrong");
              }
              return 0;
            }
            """#, name: "waitreaped", in: dir)
        #expect(out == "waitpid: one reaped it, one got ECHILD\nwaitid: one reaped it, one got ECHILD\n")
    }

    @Test func anEventLoopPollsPipesFedByAThreadAndAProcess() throws {
        let out = try Harness.matchesNative(#"""
            #include <poll.h>
            #include <pthread.h>
            #include <stdio.h>
            #include <time.h>
            #include <unistd.h>
            #include <sys/wait.h>
            static int tp[2], pp[2];
            static void *feeder(void *a) { for (int i = 0; i < 3; i++) { struct timespec ts = {0, 2000000}; nanosleep(&ts, 0); write(tp[1], "t", 1); }
              close(tp[1]); return a; }
            int main(void) {
              pipe(tp); pipe(pp);
              pid_t child = fork();
              if (child == 0) { close(pp[0]); for (int i = 0; i < 3; i++) { usleep(3000); write(pp[1], "p", 1); } _exit(0); }
              close(pp[1]);
              pthread_t t; pthread_create(&t, 0, feeder, 0);
              struct pollfd fds[2] = {{tp[0], POLLIN, 0}, {pp[0], POLLIN, 0}};
              int counts[2] = {0, 0}, open_ = 2;
              while (open_) {
                int n = poll(fds, 2, 10000);
                if (n <= 0) { printf("poll %d\n", n); break; }
                for (int i = 0; i < 2; i++) if (fds[i].revents) { char c;
                  if (read(fds[i].fd, &c, 1) == 1) counts[i]++; else { fds[i].fd = -1; open_--; } }
              }
              pthread_join(t, 0); int st; waitpid(child, &st, 0);
              // A poll with a timeout and nothing ready while a thread runs: 0.
              pthread_create(&t, 0, feeder, 0); struct pollfd none = {-1, POLLIN, 0};
              printf("thread %d child %d timeout %d\n", counts[0], counts[1], poll(&none, 1, 5));
              pthread_join(t, 0); return 0;
            }
            """#, name: "eventloop", in: dir)
        #expect(out == "thread 3 child 3 timeout 0\n")
    }

    @Test func blockingWritesLargerThanThePipeInBothDirections() throws {
        let out = try Harness.matchesNative(#"""
            #include <pthread.h>
            #include <stdio.h>
            #include <string.h>
            #include <unistd.h>
            #include <sys/socket.h>
            #include <sys/wait.h>
            static char big[300000];
            static int tp[2], sv[2];
            static void *writer(void *a) { ssize_t n = write(tp[1], big, sizeof big); close(tp[1]);
              ssize_t m = send(sv[1], big, sizeof big, 0); close(sv[1]); return (void *)(n + m); }
            static long drain(int fd) { long total = 0; char b[1000]; ssize_t k; while ((k = read(fd, b, sizeof b)) > 0) total += k; return total; }
            int main(void) {
              memset(big, 'x', sizeof big);
              pipe(tp); socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
              pthread_t t; pthread_create(&t, 0, writer, 0);
              long fromThread = drain(tp[0]), fromThreadSocket = drain(sv[0]); void *r; pthread_join(t, &r);
              int pp[2]; pipe(pp); pid_t w = fork();
              if (w == 0) { close(pp[0]); _exit(write(pp[1], big, sizeof big) == sizeof big ? 0 : 1); }
              close(pp[1]); long fromChild = drain(pp[0]); int st; waitpid(w, &st, 0);
              // The parent writes, the child reads.
              int cp[2]; pipe(cp); pid_t rd = fork();
              if (rd == 0) { close(cp[1]); _exit(drain(cp[0]) == sizeof big ? 0 : 1); }
              close(cp[0]); ssize_t toChild = write(cp[1], big, sizeof big); close(cp[1]); int st2; waitpid(rd, &st2, 0);
              printf("%ld %ld %ld %ld %d %zd %d\n", fromThread, fromThreadSocket, (long)r, fromChild, WEXITSTATUS(st), toChild, WEXITSTATUS(st2));
              return 0;
            }
            """#, name: "bigwrites", in: dir)
        #expect(out == "300000 300000 600000 300000 0 300000 0\n")
    }

    /// (Open-file-description locks: every recorded process is detrec on
    /// the host, so classic POSIX record locks never conflict between them.)
    @Test func locksAndConnectsWaitForTheOtherSide() throws {
        let lock = dir.appendingPathComponent("lockfile").path
        let out = try Harness.matchesNative(#"""
            #define _GNU_SOURCE
            #include <arpa/inet.h>
            #include <fcntl.h>
            #include <pthread.h>
            #include <stdio.h>
            #include <string.h>
            #include <unistd.h>
            #include <sys/file.h>
            #include <sys/socket.h>
            #include <sys/wait.h>
            static int listener; static struct sockaddr_in addr;
            static void *server(void *a) { int c = accept(listener, 0, 0); char b[8] = {0}; read(c, b, 4); write(c, b, 4); close(c); return a; }
            int main(int argc, char **argv) {
              int lf = open(argv[1], O_CREAT | O_RDWR, 0600); flock(lf, LOCK_EX);
              // The child says when it has the flock, so the lines come in one order on any host.
              int ack[2]; pipe(ack);
              pid_t l = fork();
              if (l == 0) { int f = open(argv[1], O_RDWR); flock(f, LOCK_EX); write(1, "child got the flock\n", 20); write(ack[1], "k", 1);
                struct flock fl = {F_WRLCK, SEEK_SET, 0, 0, 0}; fcntl(f, F_OFD_SETLKW, &fl); write(1, "child got the record lock\n", 26); _exit(0); }
              struct flock fl = {F_WRLCK, SEEK_SET, 0, 0, 0}; fcntl(lf, F_OFD_SETLK, &fl);
              usleep(20000); write(1, "parent unlocks the flock\n", 25); flock(lf, LOCK_UN);
              char k; read(ack[0], &k, 1);
              usleep(20000); write(1, "parent unlocks the record lock\n", 31); fl.l_type = F_UNLCK; fcntl(lf, F_OFD_SETLK, &fl);
              int st; waitpid(l, &st, 0);
              listener = socket(AF_INET, SOCK_STREAM, 0); addr.sin_family = AF_INET; addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
              bind(listener, (struct sockaddr *)&addr, sizeof addr); socklen_t len = sizeof addr; getsockname(listener, (struct sockaddr *)&addr, &len);
              listen(listener, 1); pthread_t t; pthread_create(&t, 0, server, 0);
              int s = socket(AF_INET, SOCK_STREAM, 0); int r = connect(s, (struct sockaddr *)&addr, sizeof addr);
              write(s, "ping", 4); char b[8] = {0}; read(s, b, 4); pthread_join(t, 0);
              printf("connect %d echo %s\n", r, b); return 0;
            }
            """#, name: "locks", args: [lock], in: dir)
        #expect(out.hasSuffix("connect 0 echo ping\n"))
    }

    @Test func sendfileSpliceAndTeeBetweenPipesWait() throws {
        let out = try Harness.matchesNative(#"""
            #define _GNU_SOURCE
            #include <fcntl.h>
            #include <pthread.h>
            #include <stdio.h>
            #include <string.h>
            #include <unistd.h>
            #include <sys/sendfile.h>
            #include <sys/wait.h>
            static int a[2];
            static long drain(int fd) { long total = 0; char b[1000]; ssize_t k; while ((k = read(fd, b, sizeof b)) > 0) total += k; return total; }
            static void *reader(void *x) { return (void *)drain(a[0]); }
            int main(int argc, char **argv) {
              int f = open(argv[0], O_RDONLY); off_t size = lseek(f, 0, SEEK_END), off = 0;
              pipe(a); pthread_t t; pthread_create(&t, 0, reader, 0);
              long sent = 0; while (sent < size) { ssize_t n = sendfile(a[1], f, &off, size - sent); if (n <= 0) break; sent += n; }
              close(a[1]); void *got; pthread_join(t, &got);
              // splice from a child's pipe into another, and tee a copy.
              int from[2], to[2], copy[2]; pipe(from); pipe(to); pipe(copy);
              pid_t w = fork();
              if (w == 0) { close(from[0]); static char big[200000]; memset(big, 'y', sizeof big); write(from[1], big, sizeof big); _exit(0); }
              close(from[1]);
              pid_t r = fork();
              if (r == 0) { close(to[1]); _exit(drain(to[0]) == 200000 ? 0 : 1); }
              close(to[0]);
              long moved = 0, teed = 0; ssize_t n;
              while ((n = tee(from[0], copy[1], 1000, 0)) > 0) { teed += n;
                char b[1000]; read(copy[0], b, n); ssize_t s = splice(from[0], 0, to[1], 0, n, 0); if (s > 0) moved += s; }
              close(to[1]); int st; waitpid(w, &st, 0); waitpid(r, &st, 0);
              // tee copies what is in the pipe; splice may take less, which the next tee copies again.
              printf("sendfile %d splice %ld tee %d reader %d\n", sent == size && (long)got == size, moved, teed >= moved, WEXITSTATUS(st));
              return 0;
            }
            """#, name: "splice", in: dir)
        #expect(out == "sendfile 1 splice 200000 tee 1 reader 0\n")
    }

    /// A read parked on a pipe that a write and a signal both end returns
    /// the data, as Linux's pipe_read looks at the pipe before the signal
    /// (no SA_RESTART here, so an EINTR would show); the handler runs after.
    @Test func dataThatArrivedWithASignalIsReadNotInterrupted() throws {
        let out = try Harness.matchesNative(#"""
            #include <errno.h>
            #include <signal.h>
            #include <stdio.h>
            #include <string.h>
            #include <unistd.h>
            #include <sys/wait.h>
            static volatile sig_atomic_t handled;
            static void on(int s) { (void)s; handled = 1; }
            int main(void) {
              struct sigaction sa; memset(&sa, 0, sizeof sa); sa.sa_handler = on;
              sigaction(SIGUSR1, &sa, 0);
              int data[2], go[2]; pipe(data); pipe(go);
              pid_t c = fork();
              if (c == 0) {
                char x; read(go[0], &x, 1);
                write(data[1], "hello", 5);
                kill(getppid(), SIGUSR1);
                _exit(0);
              }
              write(go[1], "g", 1);
              char buf[16];
              ssize_t n = read(data[0], buf, sizeof buf);
              while (waitpid(c, 0, 0) < 0 && errno == EINTR) {}
              /* The child sent the signal before it ended: handled by now. */
              printf("read %zd handled %d\n", n, (int)handled);
              return 0;
            }
            """#, name: "read_data_and_signal", in: dir)
        #expect(out == "read 5 handled 1\n")
    }

    @Test func hugeTimeoutsNeverEndAndNeverCrash() throws {
        let out = try Harness.matchesNative(#"""
            #include <errno.h>
            #include <poll.h>
            #include <pthread.h>
            #include <signal.h>
            #include <stdint.h>
            #include <stdio.h>
            #include <time.h>
            #include <unistd.h>
            #include <sys/syscall.h>
            #include <linux/futex.h>
            static int word;
            static void *sleeper(void *a) { struct timespec ts = {INT64_MAX, 999999999}; nanosleep(&ts, 0); return a; }
            static void *waiter(void *a) { struct timespec ts = {INT64_MAX, 999999999}; syscall(SYS_futex, &word, FUTEX_WAIT, 0, &ts, 0, 0); return a; }
            static void *absolute(void *a) { struct timespec ts = {INT64_MAX, 0}; clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, 0); return a; }
            static void *sigwaiter(void *a) { sigset_t s; sigemptyset(&s); sigaddset(&s, SIGUSR2); struct timespec ts = {INT64_MAX, 0};
              sigtimedwait(&s, 0, &ts); return a; }
            static void *poller(void *a) { struct pollfd p = {-1, 0, 0}; struct timespec ts = {INT64_MAX, 0}; ppoll(&p, 1, &ts, 0); return a; }
            int main(void) {
              sigset_t s; sigemptyset(&s); sigaddset(&s, SIGUSR2); pthread_sigmask(SIG_BLOCK, &s, 0);
              pthread_t t[5]; void *(*f[5])(void *) = {sleeper, waiter, absolute, sigwaiter, poller};
              for (int i = 0; i < 5; i++) pthread_create(&t[i], 0, f[i], 0);
              struct timespec bad = {0, 1000000000}, neg = {-1, 0}; errno = 0;
              int r1 = nanosleep(&bad, 0), e1 = errno; int r2 = nanosleep(&neg, 0), e2 = errno;
              struct timespec short_ = {0, 1000000}; int r3 = nanosleep(&short_, 0);
              printf("invalid %d %d, negative %d %d, short %d\n", r1, e1 == EINVAL, r2, e2 == EINVAL, r3);
              return 0;   // exit_group ends the threads still waiting
            }
            """#, name: "hugetimeouts", in: dir)
        #expect(out == "invalid -1 1, negative -1 1, short 0\n")
    }

    @Test func aTimerInterruptsAParentWaitingForASleepingChild() throws {
        let out = try Harness.matchesNative(#"""
            #include <errno.h>
            #include <signal.h>
            #include <stdio.h>
            #include <string.h>
            #include <unistd.h>
            #include <sys/time.h>
            #include <sys/wait.h>
            static volatile int alarms;
            static void on(int s) { (void)s; alarms++; }
            int main(void) {
              struct sigaction sa; memset(&sa, 0, sizeof sa); sa.sa_handler = on; sigaction(SIGALRM, &sa, 0);
              pid_t c = fork();
              if (c == 0) { usleep(300000); _exit(7); }
              struct itimerval it = {{0, 0}, {0, 50000}}; setitimer(ITIMER_REAL, &it, 0);
              int st; pid_t r = wait(&st); int e = errno;
              printf("first wait %d %s alarms %d\n", r == c ? 1 : (int)r, r < 0 ? strerror(e) : "", alarms);
              r = wait(&st); printf("second wait %d status %d\n", r == c, WEXITSTATUS(st));
              return 0;
            }
            """#, name: "alarmwait", in: dir)
        #expect(out == "first wait -1 Interrupted system call alarms 1\nsecond wait 1 status 7\n")
    }

    @Test func pythonSubprocessCapturesOutput() throws {
        let python = "/usr/bin/python3"
        guard FileManager.default.isExecutableFile(atPath: python) else { return }
        let script = "import subprocess; r = subprocess.run(['/bin/echo', 'hello'], capture_output=True); print(r.returncode, r.stdout)"
        let native = try Harness.run([python, "-c", script])
        let (rec, _) = try Harness.roundTrip([python, "-c", script], in: dir)
        #expect(rec.stdout == native.stdout)
        #expect(rec.status == native.status)
    }

    /// multiprocessing.Pool: the worker-handler thread polls the outqueue
    /// (readable) in a loop that releases and retakes the GIL, waking the
    /// result thread's timed wait each time. Unless a futex wake that
    /// woke someone lets the woken thread run (as Linux's wake-up
    /// preemption does on one CPU), the result thread never finds the GIL
    /// free and 100 tasks never finish (40 did).
    @Test func pythonPoolMapFinishes() throws {
        let python = "/usr/bin/python3"
        guard FileManager.default.isExecutableFile(atPath: python) else { return }
        let script = """
            import multiprocessing as mp
            def f(x):
                return sum((i * x) % 7 for i in range(2000))
            if __name__ == "__main__":
                with mp.Pool(2) as p:
                    print(sum(p.map(f, range(100), chunksize=4)))
            """
        let path = dir.appendingPathComponent("pool.py")
        try script.write(to: path, atomically: true, encoding: .utf8)
        let native = try Harness.run([python, path.path])
        let (rec, _) = try Harness.roundTrip([python, path.path], in: dir)
        #expect(rec.stdout == native.stdout)
        #expect(rec.status == native.status)
    }

    /// A single-threaded program's blocking write that nobody reads ends at
    /// its alarm, as Linux's does: with what fit (a socketpair, a pipe), or
    /// EINTR when nothing did. Before, detrec made one blocking host write
    /// and hung: the guest's timer could not fire while detrec waited
    /// (Python's test_socket check_sendall_interrupted).
    @Test func aloneABlockingWriteEndsAtATimersSignal() throws {
        let out = try Harness.matchesNative(#"""
            #include <errno.h>
            #include <fcntl.h>
            #include <signal.h>
            #include <stdio.h>
            #include <stdlib.h>
            #include <string.h>
            #include <unistd.h>
            #include <sys/socket.h>
            static volatile int alarms;
            static void on(int s) { (void)s; alarms++; }
            static void show(const char *what, ssize_t r, size_t n) {
              printf("%s: %s, alarms %d\n", what, r < 0 ? strerror(errno) : r > 0 && r < (ssize_t)n ? "partial" : r == (ssize_t)n ? "all" : "none", alarms);
            }
            int main(void) {
              struct sigaction sa; memset(&sa, 0, sizeof sa); sa.sa_handler = on; sigaction(SIGALRM, &sa, 0);
              size_t n = 16 << 20; char *b = calloc(1, n);
              int sv[2]; socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
              alarm(1); show("send", send(sv[0], b, n, 0), n);
              /* Full now: nothing fits, so the signal makes it EINTR. */
              alarm(1); show("write to the full socket", write(sv[0], b, n), n);
              int p[2]; pipe(p);
              alarm(1); show("pipe write", write(p[1], b, n), n);
              /* Someone reads: all of it goes. */
              int q[2]; pipe(q);
              if (fork() == 0) { char c[65536]; size_t got = 0; ssize_t k; close(q[1]); while ((k = read(q[0], c, sizeof c)) > 0) got += k; _exit(got == 1 << 20 ? 0 : 1); }
              close(q[0]);
              show("pipe write with a reader", write(q[1], b, 1 << 20), 1 << 20);
              return 0;
            }
            """#, name: "alonewrite", in: dir)
        #expect(out == """
            send: partial, alarms 1
            write to the full socket: Interrupted system call, alarms 2
            pipe write: partial, alarms 3
            pipe write with a reader: all, alarms 3

            """)
    }
}
