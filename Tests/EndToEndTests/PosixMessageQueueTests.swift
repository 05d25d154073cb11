import Foundation
import Testing

/// POSIX message queues: host mqueues while recording (priorities,
/// O_NONBLOCK, timeouts, descriptors that poll, select and epoll see),
/// a receive that waits for another recorded process parks its thread,
/// and replay takes every message from the trace.
@Suite(.serialized) struct PosixMessageQueueTests {
    let dir = Harness.temporaryDirectory()

    @Test func queuesBetweenProcessesWithPrioritiesTimeoutsAndPolling() throws {
        let out = try Harness.matchesNative(#"""
            #define _GNU_SOURCE
            #include <stdio.h>
            #include <string.h>
            #include <errno.h>
            #include <fcntl.h>
            #include <mqueue.h>
            #include <poll.h>
            #include <time.h>
            #include <unistd.h>
            #include <sys/epoll.h>
            #include <sys/select.h>
            #include <sys/wait.h>
            #define TRY(label, expr) do { errno = 0; long r_ = (long)(expr); printf("%s: %s\n", label, r_ == -1 ? strerror(errno) : "ok"); } while (0)
            int main(void) {
              char name[64]; snprintf(name, sizeof name, "/detrec-test-%d", getpid());
              struct mq_attr attr = { .mq_maxmsg = 3, .mq_msgsize = 32 };
              mqd_t q = mq_open(name, O_RDWR | O_CREAT | O_EXCL, 0600, &attr);
              if (q < 0) { perror("mq_open"); return 1; }
              TRY("exclusive again", mq_open(name, O_RDWR | O_CREAT | O_EXCL, 0600, &attr));
              mq_send(q, "low", 4, 1); mq_send(q, "high", 5, 9); mq_send(q, "mid", 4, 5);
              struct mq_attr now; mq_getattr(q, &now);
              printf("maxmsg %ld msgsize %ld curmsgs %ld flags %ld\n", now.mq_maxmsg, now.mq_msgsize, now.mq_curmsgs, now.mq_flags);
              struct pollfd p = { q, POLLIN | POLLOUT };
              poll(&p, 1, 0);
              printf("full queue polls: in %d out %d\n", !!(p.revents & POLLIN), !!(p.revents & POLLOUT));
              struct timespec past; clock_gettime(CLOCK_REALTIME, &past); past.tv_nsec = 0;
              TRY("timed send on a full queue", mq_timedsend(q, "x", 2, 0, &past));
              char buf[64]; unsigned prio;
              TRY("small buffer", mq_receive(q, buf, 8, &prio));
              for (int i = 0; i < 3; i++) { ssize_t n = mq_receive(q, buf, sizeof buf, &prio); printf("got '%s' (%zd bytes) prio %u\n", buf, n, prio); }
              struct timespec soon; clock_gettime(CLOCK_REALTIME, &soon); soon.tv_nsec += 20000000; if (soon.tv_nsec >= 1000000000) { soon.tv_sec++; soon.tv_nsec -= 1000000000; }
              TRY("timed receive on an empty queue", mq_timedreceive(q, buf, sizeof buf, &prio, &soon));
              struct mq_attr nb = { .mq_flags = O_NONBLOCK }, old;
              mq_setattr(q, &nb, &old);
              TRY("non-blocking receive", mq_receive(q, buf, sizeof buf, &prio));
              nb.mq_flags = 0; mq_setattr(q, &nb, &old);
              printf("old flags nonblock %d\n", !!(old.mq_flags & O_NONBLOCK));
              fflush(stdout);
              pid_t c = fork();
              if (c == 0) {
                mqd_t cq = mq_open(name, O_WRONLY);
                usleep(10000);
                mq_send(cq, "first", 6, 3);
                usleep(10000);
                mq_send(cq, "second", 7, 3);
                usleep(10000);
                mq_send(cq, "third", 6, 3);
                _exit(0);
              }
              ssize_t n = mq_receive(q, buf, sizeof buf, &prio);
              printf("blocking receive: '%s' %zd\n", buf, n);
              fd_set r; FD_ZERO(&r); FD_SET(q, &r);
              printf("select: %d\n", select(q + 1, &r, 0, 0, 0));
              mq_receive(q, buf, sizeof buf, &prio); printf("then '%s'\n", buf);
              int ep = epoll_create1(0);
              struct epoll_event ev = { .events = EPOLLIN, .data.u32 = 77 };
              epoll_ctl(ep, EPOLL_CTL_ADD, q, &ev);
              struct epoll_event out;
              printf("epoll: %d data %u\n", epoll_wait(ep, &out, 1, -1), out.data.u32);
              mq_receive(q, buf, sizeof buf, &prio); printf("then '%s'\n", buf);
              waitpid(c, 0, 0);
              struct sigevent sev = { .sigev_notify = SIGEV_NONE };
              TRY("notify SIGEV_NONE", mq_notify(q, &sev));
              TRY("notify unregister", mq_notify(q, NULL));
              mq_close(q);
              TRY("unlink", mq_unlink(name));
              TRY("unlink again", mq_unlink(name));
              TRY("open missing", mq_open(name, O_RDONLY));
              return 0;
            }
            """#, name: "posixmq", in: dir)
        #expect(out.contains("got 'high' (5 bytes) prio 9"))
        #expect(out.contains("blocking receive: 'first' 6"))
    }
}
