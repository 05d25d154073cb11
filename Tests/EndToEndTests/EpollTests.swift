import Foundation
import Testing

/// epoll and eventfd: each program's output must match a native run, and
/// every replay the recording. The programs print only what does not
/// depend on timing (counts, data, errors), so native and recorded runs
/// agree whatever the host's speed.
@Suite(.serialized) struct EpollTests {
    let dir = Harness.temporaryDirectory()

    func matchesNative(_ source: String, name: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        try Harness.matchesNative(source, name: name, in: dir, sourceLocation: sourceLocation)
    }

    static let prelude = #"""
        #define _GNU_SOURCE
        #include <errno.h>
        #include <fcntl.h>
        #include <poll.h>
        #include <pthread.h>
        #include <signal.h>
        #include <stdint.h>
        #include <stdio.h>
        #include <stdlib.h>
        #include <string.h>
        #include <sys/epoll.h>
        #include <sys/eventfd.h>
        #include <sys/signalfd.h>
        #include <sys/socket.h>
        #include <sys/timerfd.h>
        #include <sys/wait.h>
        #include <netinet/in.h>
        #include <arpa/inet.h>
        #include <time.h>
        #include <unistd.h>
        static void unblock_all(void) { sigset_t none; sigemptyset(&none); sigprocmask(SIG_SETMASK, &none, 0); }
        static int add(int ep, int fd, uint32_t events, uint64_t data) {
          struct epoll_event e = {.events = events, .data.u64 = data};
          return epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) ? -errno : 0;
        }
        static int ctl(int ep, int op, int fd, uint32_t events, uint64_t data) {
          struct epoll_event e = {.events = events, .data.u64 = data};
          return epoll_ctl(ep, op, fd, &e) ? -errno : 0;
        }
        static void show(const char *what, int ep, int timeout) {
          struct epoll_event ev[8];
          int n = epoll_wait(ep, ev, 8, timeout);
          printf("%s: %d", what, n < 0 ? -errno : n);
          for (int i = 0; i < n; i++) printf(" [%llx %x]", (unsigned long long)ev[i].data.u64, ev[i].events);
          printf("\n");
        }

        """#

    @Test func levelEdgeOneshotModDelAndErrors() throws {
        let out = try matchesNative(Self.prelude + #"""
            int main(void) {
              int ep = epoll_create1(EPOLL_CLOEXEC);
              printf("cloexec %d\n", fcntl(ep, F_GETFD) & FD_CLOEXEC);
              printf("bad flags %d, size 0 %d\n", epoll_create1(1) < 0 ? -errno : 0, epoll_create(0) < 0 ? -errno : 0);
              int p[2], q[2], r[2]; pipe(p); pipe(q); pipe(r);
              printf("add %d %d %d\n", add(ep, p[0], EPOLLIN, 0x1111), add(ep, q[0], EPOLLIN | EPOLLET, 0x2222),
                     add(ep, r[0], EPOLLIN | EPOLLONESHOT, 0x3333));
              printf("again %d, self %d, file %d, badfd %d, not epoll %d\n", add(ep, p[0], EPOLLIN, 0), add(ep, ep, EPOLLIN, 0),
                     add(ep, open("/etc/hostname", O_RDONLY), EPOLLIN, 0), add(ep, 99, EPOLLIN, 0), add(p[0], q[0], EPOLLIN, 0));
              printf("mod missing %d, del missing %d, bad op %d\n", ctl(ep, EPOLL_CTL_MOD, p[1], EPOLLOUT, 0),
                     ctl(ep, EPOLL_CTL_DEL, p[1], 0, 0), ctl(ep, 7, p[0], EPOLLIN, 0));
              show("empty", ep, 0);
              show("timeout", ep, 30);
              write(p[1], "a", 1); write(q[1], "b", 1); write(r[1], "c", 1);
              show("all three", ep, -1);
              show("level stays, edge and oneshot do not", ep, 0);
              write(q[1], "b", 1); write(r[1], "c", 1);
              show("new edge, oneshot disabled", ep, 0);
              printf("rearm %d\n", ctl(ep, EPOLL_CTL_MOD, r[0], EPOLLIN | EPOLLONESHOT, 0x3334));
              show("rearmed", ep, 0);
              printf("del %d\n", ctl(ep, EPOLL_CTL_DEL, p[0], 0, 0));
              show("after del", ep, 0);
              printf("writable %d\n", add(ep, p[1], EPOLLOUT | EPOLLWAKEUP, 0x4444));
              show("out", ep, 0);
              close(p[0]);
              show("reader gone: EPOLLERR", ep, 0);
              struct epoll_event ev;
              printf("maxevents 0 %d, bad buffer %d\n", epoll_wait(ep, &ev, 0, 0) < 0 ? -errno : 0,
                     epoll_wait(ep, (void *)-4096L, 1, 0) < 0 ? -errno : 0);
              printf("exclusive %d, exclusive mod %d\n", add(ep, r[1], EPOLLOUT | EPOLLEXCLUSIVE, 5),
                     ctl(ep, EPOLL_CTL_MOD, r[1], EPOLLOUT, 5));
              return 0;
            }
            """#, name: "epoll_basics")
        #expect(out.contains("add 0 0 0\n"))
        #expect(out.contains("again -17, self -22, file -1, badfd -9, not epoll -22\n"))
        #expect(out.contains("all three: 3 [1111 1] [2222 1] [3333 1]\n"))
        #expect(out.contains("level stays, edge and oneshot do not: 1 [1111 1]\n"))
        #expect(out.contains("timeout: 0\n"))
    }

    @Test func closingTheLastDescriptorRemovesItAndForkSharesTheInstance() throws {
        let out = try matchesNative(Self.prelude + #"""
            int main(void) {
              int ep = epoll_create1(0);
              int p[2]; pipe(p);
              int copy = dup(p[0]);
              add(ep, p[0], EPOLLIN, 7);
              write(p[1], "x", 1);
              close(p[0]);
              show("dup keeps it", ep, 0);
              close(copy);
              show("last close removes it", ep, 0);
              int q[2]; pipe(q);
              pid_t child = fork();
              if (child == 0) {
                /* The child's instance is the parent's: what it adds, the parent sees. */
                add(ep, q[0], EPOLLIN, 9);
                write(q[1], "y", 1);
                _exit(0);
              }
              int status; waitpid(child, &status, 0);
              show("added by the child", ep, -1);
              return 0;
            }
            """#, name: "epoll_close_fork")
        #expect(out == "dup keeps it: 1 [7 1]\nlast close removes it: 0\nadded by the child: 1 [9 1]\n")
    }

    @Test func eventfdSignalfdTimerfdAndNestedEpoll() throws {
        let out = try matchesNative(Self.prelude + #"""
            int main(void) {
              unblock_all();
              int ep = epoll_create1(0), inner = epoll_create1(0);
              int efd = eventfd(3, EFD_SEMAPHORE | EFD_NONBLOCK);
              uint64_t v;
              for (int i = 0; i < 4; i++) { ssize_t n = read(efd, &v, 8); printf("semaphore read %zd %s %llu\n", n, n < 0 ? strerror(errno) : "", (unsigned long long)v); v = 0; }
              printf("eventfd bad flags %d\n", eventfd(0, 0x10) < 0 ? -errno : 0);
              add(ep, efd, EPOLLIN, 1);
              show("eventfd empty", ep, 0);
              v = 5; write(efd, &v, 8);
              show("eventfd written", ep, 0);
              int plain = eventfd(0, 0);
              v = 2; write(plain, &v, 8); v = 3; write(plain, &v, 8);
              read(plain, &v, 8); printf("counter %llu\n", (unsigned long long)v);
              ep = epoll_create1(0);

              sigset_t s; sigemptyset(&s); sigaddset(&s, SIGUSR1); sigprocmask(SIG_BLOCK, &s, 0);
              int sfd = signalfd(-1, &s, SFD_NONBLOCK);
              add(inner, sfd, EPOLLIN, 2);
              add(ep, inner, EPOLLIN, 3);
              show("no signal", ep, 0);
              kill(getpid(), SIGUSR1);
              show("signal through the nested instance", ep, 0);
              show("inner", inner, 0);
              struct signalfd_siginfo si; read(sfd, &si, sizeof si); printf("signal %u\n", si.ssi_signo);
              show("signal taken", ep, 0);

              int tfd = timerfd_create(CLOCK_MONOTONIC, 0);
              struct itimerspec it = {{0, 0}, {0, 20000000}};
              timerfd_settime(tfd, 0, &it, 0);
              ep = epoll_create1(0);
              add(ep, tfd, EPOLLIN, 4);
              show("timerfd fires", ep, 2000);
              read(tfd, &v, 8); printf("expirations %llu\n", (unsigned long long)v);
              return 0;
            }
            """#, name: "epoll_kinds")
        #expect(out.contains("semaphore read 8  1\nsemaphore read 8  1\nsemaphore read 8  1\nsemaphore read -1 Resource temporarily unavailable 0\n"))
        #expect(out.contains("signal through the nested instance: 1 [3 1]\ninner: 1 [2 1]\nsignal 10\nsignal taken: 0\n"))
        #expect(out.contains("timerfd fires: 1 [4 1]\nexpirations 1\n"))
    }

    /// A timer signal that a watched signalfd reads ends a blocked wait.
    @Test func aTimerSignalReadThroughSignalfdEndsTheWait() throws {
        let out = try matchesNative(Self.prelude + #"""
            int main(void) {
              unblock_all();
              sigset_t s; sigemptyset(&s); sigaddset(&s, SIGALRM); sigprocmask(SIG_BLOCK, &s, 0);
              int sfd = signalfd(-1, &s, 0);
              int ep = epoll_create1(0);
              add(ep, sfd, EPOLLIN, 1);
              ualarm(20000, 0);
              show("alarm", ep, -1);
              struct signalfd_siginfo si; read(sfd, &si, sizeof si); printf("signal %u\n", si.ssi_signo);
              return 0;
            }
            """#, name: "epoll_signalfd_timer")
        #expect(out == "alarm: 1 [1 1]\nsignal 14\n")
    }

    /// epoll_pwait's mask: a blocked signal it lets through interrupts the
    /// wait and its handler runs; the old mask is back afterwards.
    @Test func pwaitMaskLetsASignalInterrupt() throws {
        let out = try matchesNative(Self.prelude + #"""
            static volatile int got;
            static void on(int sig) { got = sig; }
            int main(void) {
              unblock_all();
              struct sigaction sa; memset(&sa, 0, sizeof sa); sa.sa_handler = on; sigaction(SIGUSR1, &sa, 0);
              sigset_t s; sigemptyset(&s); sigaddset(&s, SIGUSR1); sigprocmask(SIG_BLOCK, &s, 0);
              int ep = epoll_create1(0), p[2]; pipe(p); add(ep, p[0], EPOLLIN, 1);
              kill(getpid(), SIGUSR1);
              struct epoll_event ev;
              sigset_t none; sigemptyset(&none);
              int r = epoll_pwait(ep, &ev, 1, 0, &none);
              printf("zero timeout %d got %d\n", r, got);
              r = epoll_pwait(ep, &ev, 1, -1, &none);
              int e = errno;
              sigset_t now; sigprocmask(SIG_SETMASK, 0, &now);
              printf("pwait %d %s got %d still blocked %d\n", r, strerror(e), got, sigismember(&now, SIGUSR1));
              printf("bad size %d\n", syscall(281, ep, &ev, 1, 0, &none, 4L) < 0 ? -errno : 0);
              struct timespec ts = {0, 1000000};
              printf("pwait2 timeout %ld\n", syscall(441, ep, &ev, 1, &ts, NULL, 8L));
              ts.tv_nsec = -1;
              printf("pwait2 bad timespec %d\n", syscall(441, ep, &ev, 1, &ts, NULL, 8L) < 0 ? -errno : 0);
              return 0;
            }
            """#, name: "epoll_pwait_mask")
        #expect(out == "zero timeout 0 got 0\npwait -1 Interrupted system call got 10 still blocked 1\nbad size -22\npwait2 timeout 0\npwait2 bad timespec -22\n")
    }

    /// An epoll server in one thread, clients in others and in child
    /// processes: the waits park, so the clients run meanwhile.
    @Test func anEpollServerWithSeveralClients() throws {
        let out = try matchesNative(Self.prelude + #"""
            #include <sys/un.h>
            static int port;
            static void client(int id) {
              int s = socket(AF_INET, SOCK_STREAM, 0);
              struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
              if (connect(s, (void *)&a, sizeof a)) { perror("connect"); exit(1); }
              char m[32]; int n = snprintf(m, sizeof m, "hello %d", id);
              write(s, m, n);
              char back[64]; ssize_t k = read(s, back, sizeof back);
              if (k != n + 1 || back[0] != '>') { printf("client %d: bad answer\n", id); exit(1); }
              close(s);
            }
            static void *thread_client(void *a) { client((int)(long)a); return 0; }
            int main(void) {
              int l = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
              struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
              bind(l, (void *)&a, sizeof a); listen(l, 16);
              socklen_t len = sizeof a; getsockname(l, (void *)&a, &len); port = ntohs(a.sin_port);
              int ep = epoll_create1(0);
              add(ep, l, EPOLLIN, (uint64_t)-1);
              pthread_t t[3];
              for (long i = 0; i < 3; i++) pthread_create(&t[i], 0, thread_client, (void *)i);
              pid_t kids[2];
              for (int i = 0; i < 2; i++) if ((kids[i] = fork()) == 0) { client(10 + i); _exit(0); }
              int served = 0, total = 0;
              while (served < 5) {
                struct epoll_event ev[8];
                int n = epoll_wait(ep, ev, 8, 10000);
                if (n <= 0) { printf("wait %d\n", n); return 1; }
                for (int k = 0; k < n; k++) {
                  if (ev[k].data.u64 == (uint64_t)-1) {
                    int c;
                    while ((c = accept4(l, 0, 0, SOCK_NONBLOCK)) >= 0) add(ep, c, EPOLLIN | EPOLLRDHUP, c);
                    continue;
                  }
                  int c = (int)ev[k].data.u64;
                  char buf[64]; ssize_t r = read(c, buf, sizeof buf);
                  if (r > 0) { char out[65]; out[0] = '>'; memcpy(out + 1, buf, r); write(c, out, r + 1); total += r; }
                  else if (r == 0 || (ev[k].events & EPOLLRDHUP)) {
                    if (r > 0) continue;
                    epoll_ctl(ep, EPOLL_CTL_DEL, c, 0); close(c); served++;
                  }
                }
              }
              for (int i = 0; i < 3; i++) pthread_join(t[i], 0);
              for (int i = 0; i < 2; i++) { int st; waitpid(kids[i], &st, 0); }
              printf("served %d clients, %d bytes\n", served, total);
              return 0;
            }
            """#, name: "epoll_server")
        #expect(out == "served 5 clients, 37 bytes\n")
    }
}
