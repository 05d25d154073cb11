import Foundation
import Testing

/// select, pselect6 and ppoll's arguments, masks and written-back
/// timeouts: each program's output must match a native run, and every
/// replay the recording.
@Suite(.serialized) struct SelectTests {
    let dir = Harness.temporaryDirectory()

    func matchesNative(_ source: String, name: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        try Harness.matchesNative(source, name: name, in: dir, sourceLocation: sourceLocation)
    }

    static let prelude = EpollTests.prelude + #"""
        #include <sys/select.h>
        #include <sys/syscall.h>

        """#

    /// A select and a pselect6 that would wait park their thread: the
    /// thread that makes the descriptor ready runs meanwhile (before, the
    /// host select blocked every guest thread until its timeout).
    @Test func aWaitingSelectLetsTheWriterRun() throws {
        let out = try matchesNative(#"""
            #include <pthread.h>
            #include <stdio.h>
            #include <sys/select.h>
            #include <unistd.h>
            static int p[2], q[2];
            static void *writer(void *a) { (void)a; for (int i = 0; i < 50; i++) getppid();
              write(p[1], "x", 1); for (int i = 0; i < 50; i++) getppid(); write(q[1], "y", 1); return 0; }
            int main(void) { pipe(p); pipe(q); pthread_t t; pthread_create(&t, 0, writer, 0);
              fd_set r; FD_ZERO(&r); FD_SET(p[0], &r); struct timeval tv = {20, 0};
              int n = select(p[0] + 1, &r, 0, 0, &tv);
              printf("select %d ready %d\n", n, FD_ISSET(p[0], &r));
              FD_ZERO(&r); FD_SET(q[0], &r); struct timespec ts = {20, 0};
              n = pselect(q[0] + 1, &r, 0, 0, &ts, 0);
              printf("pselect %d ready %d\n", n, FD_ISSET(q[0], &r));
              pthread_join(t, 0); return 0; }
            """#, name: "select_park")
        #expect(out == "select 1 ready 1\npselect 1 ready 1\n")
    }

    @Test func selectSetsErrorsAndTheTimeLeft() throws {
        let out = try matchesNative(Self.prelude + #"""
            int main(void) {
              int p[2]; pipe(p);
              fd_set r, w; FD_ZERO(&r); FD_ZERO(&w);
              FD_SET(p[0], &r); FD_SET(p[1], &r); FD_SET(p[1], &w);
              struct timeval tv = {0, 0};
              int n = syscall(SYS_select, p[1] + 1, &r, &w, NULL, &tv);
              printf("empty pipe: %d read %d %d write %d\n", n, FD_ISSET(p[0], &r), FD_ISSET(p[1], &r), FD_ISSET(p[1], &w));
              write(p[1], "x", 1);
              FD_ZERO(&r); FD_SET(p[0], &r);
              tv.tv_sec = 5; tv.tv_usec = 0;
              n = syscall(SYS_select, p[0] + 1, &r, NULL, NULL, &tv);
              printf("data: %d read %d time left %d\n", n, FD_ISSET(p[0], &r), tv.tv_sec >= 3 && tv.tv_sec <= 4);
              FD_ZERO(&r); tv.tv_sec = 0; tv.tv_usec = 20000;
              n = syscall(SYS_select, 0, NULL, NULL, NULL, &tv);
              printf("sleep: %d left %ld %ld\n", n, (long)tv.tv_sec, (long)tv.tv_usec);
              tv.tv_sec = 0; tv.tv_usec = 2000000;
              FD_ZERO(&r); FD_SET(p[0], &r);
              n = syscall(SYS_select, p[0] + 1, &r, NULL, NULL, &tv);
              printf("usec folded: %d left %d\n", n, tv.tv_sec == 1);
              tv.tv_sec = 0; tv.tv_usec = -1;
              printf("negative usec %d\n", syscall(SYS_select, 1, NULL, NULL, NULL, &tv) < 0 ? -errno : 0);
              printf("negative nfds %d\n", syscall(SYS_select, -1, NULL, NULL, NULL, NULL) < 0 ? -errno : 0);
              FD_ZERO(&r); FD_SET(40, &r); tv.tv_sec = 0; tv.tv_usec = 0;
              printf("closed fd %d\n", select(41, &r, NULL, NULL, &tv) < 0 ? -errno : 0);
              /* Past the descriptor table's size the bits are not looked at. */
              FD_ZERO(&r); FD_SET(1000, &r); tv.tv_sec = 0; tv.tv_usec = 0;
              printf("past the table %d\n", select(1024, &r, NULL, NULL, &tv) < 0 ? -errno : 0);
              printf("bad set %d\n", syscall(SYS_select, 1, (void *)8, NULL, NULL, &tv) < 0 ? -errno : 0);
              close(p[0]);
              FD_ZERO(&w); FD_SET(p[1], &w); fd_set e; FD_ZERO(&e); FD_SET(p[1], &e);
              n = select(p[1] + 1, NULL, &w, &e, NULL);
              printf("reader gone: %d write %d except %d\n", n, FD_ISSET(p[1], &w), FD_ISSET(p[1], &e));
              return 0;
            }
            """#, name: "select_basics")
        #expect(out == """
            empty pipe: 1 read 0 0 write 1
            data: 1 read 1 time left 1
            sleep: 0 left 0 0
            usec folded: 1 left 1
            negative usec -22
            negative nfds -22
            closed fd -9
            past the table 0
            bad set -14
            reader gone: 1 write 1 except 0

            """)
    }

    @Test func pselectAndPpollMasksAndArguments() throws {
        let out = try matchesNative(Self.prelude + #"""
            static volatile int got;
            static void on(int sig) { got = sig; }
            int main(void) {
              unblock_all();
              struct sigaction sa; memset(&sa, 0, sizeof sa); sa.sa_handler = on; sigaction(SIGUSR1, &sa, 0);
              sigset_t s; sigemptyset(&s); sigaddset(&s, SIGUSR1); sigprocmask(SIG_BLOCK, &s, 0);
              sigset_t none; sigemptyset(&none);
              int p[2]; pipe(p);
              fd_set r; FD_ZERO(&r); FD_SET(p[0], &r);
              kill(getpid(), SIGUSR1);
              int n = pselect(p[0] + 1, &r, NULL, NULL, NULL, &none);
              int e = errno;
              sigset_t now; sigprocmask(SIG_SETMASK, 0, &now);
              printf("pselect %d %s got %d still blocked %d\n", n, strerror(e), got, sigismember(&now, SIGUSR1));
              struct timespec ts = {0, 0};
              FD_ZERO(&r); FD_SET(p[0], &r);
              struct { const sigset_t *ss; size_t len; } pack = {&none, 4};
              printf("pselect bad size %d\n", syscall(SYS_pselect6, p[0] + 1, &r, NULL, NULL, &ts, &pack) < 0 ? -errno : 0);
              pack.len = 8; pack.ss = NULL;
              printf("pselect no mask %ld\n", syscall(SYS_pselect6, p[0] + 1, &r, NULL, NULL, &ts, &pack));
              ts.tv_nsec = 20000000;
              FD_ZERO(&r); FD_SET(p[0], &r);
              n = syscall(SYS_pselect6, p[0] + 1, &r, NULL, NULL, &ts, NULL);
              printf("pselect timeout %d left %ld %ld\n", n, (long)ts.tv_sec, ts.tv_nsec);

              struct pollfd fds = {p[0], POLLIN, 0};
              ts.tv_sec = 0; ts.tv_nsec = 0;
              printf("ppoll bad size %d\n", syscall(SYS_ppoll, &fds, 1, &ts, &none, 4) < 0 ? -errno : 0);
              ts.tv_nsec = 1000000000;
              printf("ppoll bad timespec %d\n", syscall(SYS_ppoll, &fds, 1, &ts, NULL, 8) < 0 ? -errno : 0);
              ts.tv_nsec = 20000000;
              n = syscall(SYS_ppoll, &fds, 1, &ts, NULL, 8);
              printf("ppoll timeout %d left %ld %ld\n", n, (long)ts.tv_sec, ts.tv_nsec);
              got = 0;
              kill(getpid(), SIGUSR1);
              n = ppoll(&fds, 1, NULL, &none);
              e = errno;
              sigprocmask(SIG_SETMASK, 0, &now);
              printf("ppoll %d %s got %d still blocked %d\n", n, strerror(e), got, sigismember(&now, SIGUSR1));
              write(p[1], "x", 1);
              got = 0;
              kill(getpid(), SIGUSR1);
              /* Ready descriptors come first: no EINTR, and the mask is back before the signal could be taken. */
              n = ppoll(&fds, 1, NULL, &none);
              printf("ppoll ready %d revents %x got %d\n", n, fds.revents, got);
              sigprocmask(SIG_UNBLOCK, &s, 0);
              printf("after unblock got %d\n", got);
              return 0;
            }
            """#, name: "pselect_ppoll")
        #expect(out == """
            pselect -1 Interrupted system call got 10 still blocked 1
            pselect bad size -22
            pselect no mask 0
            pselect timeout 0 left 0 0
            ppoll bad size -22
            ppoll bad timespec -22
            ppoll timeout 0 left 0 0
            ppoll -1 Interrupted system call got 10 still blocked 1
            ppoll ready 1 revents 1 got 0
            after unblock got 10

            """)
    }

    /// A timer signal read through a signalfd ends select's wait.
    @Test func selectOnASignalfdEndsWithTheTimer() throws {
        let out = try matchesNative(Self.prelude + #"""
            int main(void) {
              unblock_all();
              sigset_t s; sigemptyset(&s); sigaddset(&s, SIGALRM); sigprocmask(SIG_BLOCK, &s, 0);
              int sfd = signalfd(-1, &s, 0);
              ualarm(20000, 0);
              fd_set r; FD_ZERO(&r); FD_SET(sfd, &r);
              int n = select(sfd + 1, &r, NULL, NULL, NULL);
              struct signalfd_siginfo si; read(sfd, &si, sizeof si);
              printf("select %d set %d signal %u\n", n, FD_ISSET(sfd, &r), si.ssi_signo);
              return 0;
            }
            """#, name: "select_signalfd")
        #expect(out == "select 1 set 1 signal 14\n")
    }
}
