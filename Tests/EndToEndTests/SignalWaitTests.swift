import Foundation
import Testing

/// Waiting for signals (sigsuspend, sigtimedwait, signalfd) and the timers
/// that send them (timer_create, timerfd): each program's output must match
/// a native run, and every replay the recording.
@Suite(.serialized) struct SignalWaitTests {
    let dir = Harness.temporaryDirectory()

    func matchesNative(_ source: String, name: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        try Harness.matchesNative(source, name: name, in: dir, sourceLocation: sourceLocation)
    }

    static let prelude = #"""
        #define _GNU_SOURCE
        #include <errno.h>
        #include <poll.h>
        #include <pthread.h>
        #include <signal.h>
        #include <stdint.h>
        #include <stdio.h>
        #include <string.h>
        #include <sys/signalfd.h>
        #include <sys/timerfd.h>
        #include <fcntl.h>
        #include <time.h>
        #include <unistd.h>
        static void unblock_all(void) { sigset_t none; sigemptyset(&none); sigprocmask(SIG_SETMASK, &none, 0); }   /* the test runner blocks some */

        """#

    @Test func sigsuspendWokenByAlarmRunsTheHandlerAndRestoresTheMask() throws {
        let out = try matchesNative(Self.prelude + #"""
            static volatile int got; static volatile int blocked_in_handler;
            static void on(int s) { sigset_t m; sigprocmask(SIG_SETMASK, 0, &m); blocked_in_handler = sigismember(&m, SIGUSR2); got = s; }
            int main(void) {
              unblock_all();
              struct sigaction sa; memset(&sa, 0, sizeof sa); sa.sa_handler = on; sigaction(SIGALRM, &sa, 0);
              sigset_t block; sigemptyset(&block); sigaddset(&block, SIGALRM); sigprocmask(SIG_BLOCK, &block, 0);
              ualarm(20000, 0);
              sigset_t during; sigemptyset(&during); sigaddset(&during, SIGUSR2);
              int r = sigsuspend(&during); int e = errno;
              sigset_t now; sigprocmask(SIG_SETMASK, 0, &now);
              printf("sigsuspend %d %s got %d usr2-blocked-in-handler %d alrm-blocked-after %d usr2-blocked-after %d\n",
                     r, strerror(e), got, blocked_in_handler, sigismember(&now, SIGALRM), sigismember(&now, SIGUSR2));
              return 0;
            }
            """#, name: "sigsuspend_alarm")
        #expect(out == "sigsuspend -1 Interrupted system call got 14 usr2-blocked-in-handler 1 alrm-blocked-after 1 usr2-blocked-after 0\n")
    }

    @Test func sigsuspendWokenByAnotherThreadsKill() throws {
        let out = try matchesNative(Self.prelude + #"""
            static volatile int got;
            static void on(int s) { got = s; }
            static void *run(void *a) { struct timespec ts = {0, 10000000}; nanosleep(&ts, 0); kill(getpid(), SIGUSR1); return a; }
            int main(void) {
              unblock_all();
              struct sigaction sa; memset(&sa, 0, sizeof sa); sa.sa_handler = on; sigaction(SIGUSR1, &sa, 0);
              sigset_t block; sigemptyset(&block); sigaddset(&block, SIGUSR1); sigprocmask(SIG_BLOCK, &block, 0);
              pthread_t t; pthread_create(&t, 0, run, 0);
              sigset_t none; sigemptyset(&none);
              int r = sigsuspend(&none);
              printf("sigsuspend %d got %d\n", r, got);
              pthread_join(t, 0); return 0;
            }
            """#, name: "sigsuspend_thread")
        #expect(out == "sigsuspend -1 got 10\n")
    }

    @Test func sigtimedwaitTimesOutOrTakesAPendingOrQueuedSignal() throws {
        let out = try matchesNative(Self.prelude + #"""
            int main(void) {
              unblock_all();
              sigset_t set; sigemptyset(&set); sigaddset(&set, SIGUSR1); sigaddset(&set, SIGALRM); sigaddset(&set, SIGRTMIN);
              sigprocmask(SIG_BLOCK, &set, 0);
              struct timespec ts = {0, 20000000}; siginfo_t si;
              int r = sigtimedwait(&set, &si, &ts); int e = errno;
              printf("timeout: %d %s\n", r, strerror(e));
              struct timespec zero = {0, 0}; r = sigtimedwait(&set, &si, &zero); e = errno;
              printf("poll: %d %s\n", r, strerror(e));
              raise(SIGUSR1);
              r = sigtimedwait(&set, &si, &ts);
              printf("pending: %d code %d pid-ok %d\n", r, si.si_code, si.si_pid == getpid());
              union sigval v = {.sival_int = 77}; sigqueue(getpid(), SIGRTMIN, v); v.sival_int = 78; sigqueue(getpid(), SIGRTMIN, v);
              r = sigwaitinfo(&set, &si); printf("queued: %d code %d value %d\n", r == SIGRTMIN, si.si_code, si.si_value.sival_int);
              r = sigwaitinfo(&set, &si); printf("queued: %d code %d value %d\n", r == SIGRTMIN, si.si_code, si.si_value.sival_int);
              ualarm(15000, 0);
              int sig = 0; r = sigwait(&set, &sig); printf("sigwait %d sig %d\n", r, sig);
              struct timespec bad = {0, 1000000000}; r = sigtimedwait(&set, &si, &bad); e = errno;
              printf("bad timeout: %d %s\n", r, strerror(e));
              return 0;
            }
            """#, name: "sigtimedwait")
        #expect(out == """
            timeout: -1 Resource temporarily unavailable
            poll: -1 Resource temporarily unavailable
            pending: 10 code 0 pid-ok 1
            queued: 1 code -1 value 77
            queued: 1 code -1 value 78
            sigwait 0 sig 14
            bad timeout: -1 Invalid argument

            """)
    }

    @Test func sigwaitinfoTakesAnotherThreadsKill() throws {
        let out = try matchesNative(Self.prelude + #"""
            static void *run(void *a) { struct timespec ts = {0, 10000000}; nanosleep(&ts, 0); kill(getpid(), SIGUSR1); return a; }
            int main(void) {
              unblock_all();
              sigset_t set; sigemptyset(&set); sigaddset(&set, SIGUSR1); sigprocmask(SIG_BLOCK, &set, 0);
              pthread_t t; pthread_create(&t, 0, run, 0);
              siginfo_t si; int r = sigwaitinfo(&set, &si);
              printf("sigwaitinfo %d code %d pid-ok %d\n", r, si.si_code, si.si_pid == getpid());
              pthread_join(t, 0); return 0;
            }
            """#, name: "sigwaitinfo_thread")
        #expect(out == "sigwaitinfo 10 code 0 pid-ok 1\n")
    }

    @Test func periodicPosixTimerSignalCarriesItsValue() throws {
        let out = try matchesNative(Self.prelude + #"""
            static volatile int ticks, bad, lastval, lastid;
            static void on(int s, siginfo_t *si, void *u) { (void)u; if (s != SIGRTMIN || si->si_code != SI_TIMER) bad++;
              lastval = si->si_value.sival_int; lastid = si->si_timerid; ticks++; }
            int main(void) {
              unblock_all();
              struct sigaction sa; memset(&sa, 0, sizeof sa); sa.sa_sigaction = on; sa.sa_flags = SA_SIGINFO; sigaction(SIGRTMIN, &sa, 0);
              struct sigevent ev; memset(&ev, 0, sizeof ev); ev.sigev_notify = SIGEV_SIGNAL; ev.sigev_signo = SIGRTMIN; ev.sigev_value.sival_int = 4242;
              timer_t t; if (timer_create(CLOCK_MONOTONIC, &ev, &t)) { perror("timer_create"); return 1; }
              struct itimerspec its = {{0, 10000000}, {0, 10000000}}; timer_settime(t, 0, &its, 0);
              while (ticks < 5) pause();
              /* More ticks may come before the print (a slow host): at least 5. */
              struct itimerspec cur; timer_gettime(t, &cur);
              printf("ticks>=5 %d bad %d value %d id-ok %d interval %ld armed %d\n", ticks >= 5, bad, lastval, lastid == (int)(long)t,
                     cur.it_interval.tv_nsec, cur.it_value.tv_sec > 0 || cur.it_value.tv_nsec > 0);
              timer_delete(t);
              int r = timer_settime(t, 0, &its, 0); int e = errno;
              printf("after delete: %d %s\n", r, strerror(e));
              ev.sigev_notify = SIGEV_NONE; timer_t n; timer_create(CLOCK_REALTIME, &ev, &n);
              struct itimerspec one = {{0, 0}, {5, 0}}; timer_settime(n, 0, &one, 0); timer_gettime(n, &cur);
              printf("SIGEV_NONE armed %d\n", cur.it_value.tv_sec == 4 || cur.it_value.tv_sec == 5);
              ev.sigev_notify = 99; r = timer_create(CLOCK_MONOTONIC, &ev, &n); e = errno;
              printf("bad notify: %d %s\n", r, strerror(e));
              return 0;
            }
            """#, name: "posix_timer")
        #expect(out == """
            ticks>=5 1 bad 0 value 4242 id-ok 1 interval 10000000 armed 1
            after delete: -1 Invalid argument
            SIGEV_NONE armed 1
            bad notify: -1 Invalid argument

            """)
    }

    @Test func timerGetoverrunCountsExpiriesWhileTheSignalWasPending() throws {
        let out = try matchesNative(Self.prelude + #"""
            int main(void) {
              unblock_all();
              sigset_t set; sigemptyset(&set); sigaddset(&set, SIGRTMIN); sigprocmask(SIG_BLOCK, &set, 0);
              struct sigevent ev; memset(&ev, 0, sizeof ev); ev.sigev_notify = SIGEV_SIGNAL; ev.sigev_signo = SIGRTMIN; ev.sigev_value.sival_int = 9;
              timer_t t; timer_create(CLOCK_MONOTONIC, &ev, &t);
              printf("before: %d\n", timer_getoverrun(t));
              struct timespec t0, t1; clock_gettime(CLOCK_MONOTONIC, &t0);
              struct itimerspec its = {{0, 10000000}, {0, 10000000}}; timer_settime(t, 0, &its, 0);
              struct timespec nap = {0, 55000000}; nanosleep(&nap, 0);
              siginfo_t si; int r = sigwaitinfo(&set, &si);
              clock_gettime(CLOCK_MONOTONIC, &t1);
              int o = timer_getoverrun(t);
              /* At least 5 expiries in 55 ms (4 overruns, 3 to spare), and no more than the time allows
                 however slow the host: one per 10 ms that passed. */
              long periods = ((t1.tv_sec - t0.tv_sec) * 1000000000L + (t1.tv_nsec - t0.tv_nsec)) / 10000000L;
              printf("sig %d code %d value %d overrun>=3 %d overrun<periods %d matches %d\n", r == SIGRTMIN, si.si_code == SI_TIMER,
                     si.si_value.sival_int, si.si_overrun >= 3, si.si_overrun < periods, o == si.si_overrun);
              return 0;
            }
            """#, name: "timer_overrun")
        #expect(out == "before: 0\nsig 1 code 1 value 9 overrun>=3 1 overrun<periods 1 matches 1\n")
    }

    @Test func signalfdReadsKillAndTimerSignals() throws {
        let out = try matchesNative(Self.prelude + #"""
            int main(void) {
              unblock_all();
              sigset_t set; sigemptyset(&set); sigaddset(&set, SIGRTMIN); sigaddset(&set, SIGUSR1); sigprocmask(SIG_BLOCK, &set, 0);
              int fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
              struct signalfd_siginfo s; ssize_t n = read(fd, &s, sizeof s); int e = errno;
              printf("empty: %zd %s\n", n, strerror(e));
              struct pollfd p = {fd, POLLIN, 0}; int r = poll(&p, 1, 0); printf("poll empty %d\n", r);
              raise(SIGUSR1); r = poll(&p, 1, 0); printf("poll ready %d revents %d\n", r, p.revents);
              n = read(fd, &s, sizeof s);
              printf("kill: %zd signo %u code %d pid-ok %d\n", n, s.ssi_signo, s.ssi_code, s.ssi_pid == (unsigned)getpid());
              n = read(fd, &s, 64); e = errno; printf("short buffer: %zd %s\n", n, strerror(e));
              fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
              struct sigevent ev; memset(&ev, 0, sizeof ev); ev.sigev_notify = SIGEV_SIGNAL; ev.sigev_signo = SIGRTMIN; ev.sigev_value.sival_ptr = (void *)0x1234;
              timer_t t; timer_create(CLOCK_MONOTONIC, &ev, &t);
              struct itimerspec its = {{0, 10000000}, {0, 20000000}}; timer_settime(t, 0, &its, 0);
              for (int i = 0; i < 3; i++) {
                n = read(fd, &s, sizeof s);
                printf("timer: %zd signo-ok %d code %d ptr %llx tid-ok %d\n", n, s.ssi_signo == (unsigned)SIGRTMIN, s.ssi_code,
                       (unsigned long long)s.ssi_ptr, s.ssi_tid == (unsigned)(long)t);
              }
              p.revents = 0; r = poll(&p, 1, 1000); printf("poll timer %d revents %d\n", r, p.revents);
              n = read(fd, &s, sizeof s); printf("after poll: %zd\n", n);
              timer_delete(t); close(fd);
              n = read(fd, &s, sizeof s); e = errno; printf("closed: %zd %s\n", n, strerror(e));
              return 0;
            }
            """#, name: "signalfd")
        #expect(out == """
            empty: -1 Resource temporarily unavailable
            poll empty 0
            poll ready 1 revents 1
            kill: 128 signo 10 code -6 pid-ok 1
            short buffer: -1 Invalid argument
            timer: 128 signo-ok 1 code -2 ptr 1234 tid-ok 1
            timer: 128 signo-ok 1 code -2 ptr 1234 tid-ok 1
            timer: 128 signo-ok 1 code -2 ptr 1234 tid-ok 1
            poll timer 1 revents 1
            after poll: 128
            closed: -1 Bad file descriptor

            """)
    }

    @Test func signalfdBlockingReadInAThreadWokenByAnotherThread() throws {
        let out = try matchesNative(Self.prelude + #"""
            static int fd;
            static void *reader(void *a) { struct signalfd_siginfo s; ssize_t n = read(fd, &s, sizeof s);
              printf("thread read %zd signo %u\n", n, s.ssi_signo); return a; }
            int main(void) {
              unblock_all();
              sigset_t set; sigemptyset(&set); sigaddset(&set, SIGUSR2); sigprocmask(SIG_BLOCK, &set, 0);
              fd = signalfd(-1, &set, 0);
              pthread_t t; pthread_create(&t, 0, reader, 0);
              struct timespec ts = {0, 10000000}; nanosleep(&ts, 0);
              kill(getpid(), SIGUSR2);
              pthread_join(t, 0); return 0;
            }
            """#, name: "signalfd_thread")
        #expect(out == "thread read 128 signo 12\n")
    }

    @Test func timerfdPeriodicReadsCountExpirations() throws {
        let out = try matchesNative(Self.prelude + #"""
            int main(void) {
              int fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
              struct itimerspec its = {{0, 10000000}, {0, 10000000}}; timerfd_settime(fd, 0, &its, 0);
              uint64_t total = 0, v; int reads = 0;
              while (total < 5) { if (read(fd, &v, 8) != 8) return 1; total += v; reads++; }
              printf("expirations >= 5: %d reads <= 5: %d\n", total >= 5, reads <= 5);
              struct itimerspec cur; timerfd_gettime(fd, &cur); printf("interval %ld\n", cur.it_interval.tv_nsec);
              struct pollfd p = {fd, POLLIN, 0}; int r = poll(&p, 1, 1000); printf("poll %d\n", r);
              struct timespec now; clock_gettime(CLOCK_MONOTONIC, &now);
              now.tv_nsec += 20000000; if (now.tv_nsec >= 1000000000) { now.tv_sec++; now.tv_nsec -= 1000000000; }
              struct itimerspec abs = {{0, 0}, now}; timerfd_settime(fd, TFD_TIMER_ABSTIME, &abs, 0);
              ssize_t n = read(fd, &v, 8); printf("abstime read %zd value %llu\n", n, (unsigned long long)v);
              int nb = timerfd_create(CLOCK_REALTIME, TFD_NONBLOCK); n = read(nb, &v, 8); int e = errno;
              printf("nonblocking %zd %s\n", n, strerror(e));
              r = timerfd_create(CLOCK_MONOTONIC, 12345); e = errno; printf("bad flags %d %s\n", r, strerror(e));
              return 0;
            }
            """#, name: "timerfd")
        #expect(out == """
            expirations >= 5: 1 reads <= 5: 1
            interval 10000000
            poll 1
            abstime read 8 value 1
            nonblocking -1 Resource temporarily unavailable
            bad flags -1 Invalid argument

            """)
    }
}
