import Foundation
import Testing

/// sendmsg on a blocking socket that is full waits as write(2) does (and
/// recvmsg's MSG_WAITALL as recv's does): the
/// thread parks while the reader runs (before, detrec made one blocking
/// host call and the program deadlocked), the SCM_RIGHTS descriptor goes
/// with the first part, a timer's signal ends the wait of a lone thread
/// with what was sent; and a blocking send or sendmsg that meets EPIPE
/// raises SIGPIPE unless MSG_NOSIGNAL (before, only MSG_DONTWAIT did).
@Suite(.serialized) struct BlockingSendTests {
    let dir = Harness.temporaryDirectory()

    @Test func sendmsgParksAndSignalsAsLinux() throws {
        let out = try Harness.matchesNative(#"""
            #include <errno.h>
            #include <pthread.h>
            #include <signal.h>
            #include <stdio.h>
            #include <string.h>
            #include <unistd.h>
            #include <sys/socket.h>
            #include <sys/uio.h>
            enum { N = 1 << 20 };
            static char big[N];
            static int sv[2];
            static volatile sig_atomic_t got;
            static void on(int s) { got = s; }
            static void *reader(void *arg) {
              (void)arg;
              static char buf[65536];
              char ctl[CMSG_SPACE(sizeof(int))];
              long total = 0; unsigned sum = 0; int calls = 0, fd = -1, fdcall = -1;
              while (total < N) {
                struct iovec v = {buf, sizeof buf};
                struct msghdr m = {.msg_iov = &v, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof ctl};
                ssize_t n = recvmsg(sv[1], &m, 0);
                if (n <= 0) break;
                struct cmsghdr *c = CMSG_FIRSTHDR(&m);
                if (c && c->cmsg_type == SCM_RIGHTS) { memcpy(&fd, CMSG_DATA(c), sizeof fd); fdcall = calls; }
                for (ssize_t i = 0; i < n; i++) sum = sum * 31 + (unsigned char)buf[i];
                total += n; calls++;
              }
              printf("reader got %ld sum %u, descriptor in call %d: %s\n", total, sum, fdcall,
                     fd >= 0 && write(fd, "", 0) == 0 ? "usable" : "none");
              return 0;
            }
            int main(void) {
              for (int i = 0; i < N; i++) big[i] = (char)(i * 7);
              socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
              int p[2]; pipe(p);
              pthread_t t; pthread_create(&t, 0, reader, 0);
              struct iovec v[2] = {{big, N / 2}, {big + N / 2, N / 2}};
              char ctl[CMSG_SPACE(sizeof(int))] = {0};
              struct msghdr m = {.msg_iov = v, .msg_iovlen = 2, .msg_control = ctl, .msg_controllen = sizeof ctl};
              struct cmsghdr *c = CMSG_FIRSTHDR(&m);
              c->cmsg_level = SOL_SOCKET; c->cmsg_type = SCM_RIGHTS; c->cmsg_len = CMSG_LEN(sizeof(int));
              memcpy(CMSG_DATA(c), &p[1], sizeof p[1]);
              ssize_t sent = sendmsg(sv[0], &m, 0);
              pthread_join(t, 0);
              printf("sendmsg %zd\n", sent);

              // Alone, nobody reading: an alarm ends the wait with what was sent.
              struct sigaction sa = {0};
              sa.sa_handler = on;
              sigaction(SIGALRM, &sa, 0);
              sigaction(SIGPIPE, &sa, 0);
              int q[2]; socketpair(AF_UNIX, SOCK_STREAM, 0, q);
              alarm(1);
              struct msghdr one = {.msg_iov = v, .msg_iovlen = 2};
              ssize_t n = sendmsg(q[0], &one, 0);
              printf("interrupted: partial %d signal %d\n", n > 0 && n < N, got);
              got = 0;

              close(q[1]);
              ssize_t r = send(q[0], "x", 1, 0);
              printf("send %zd %s signal %d\n", r, strerror(errno), got); got = 0;
              r = send(q[0], "x", 1, MSG_NOSIGNAL);
              printf("send nosignal %zd signal %d\n", r, got); got = 0;
              struct iovec x = {"x", 1};
              struct msghdr mx = {.msg_iov = &x, .msg_iovlen = 1};
              r = sendmsg(q[0], &mx, 0);
              printf("sendmsg %zd %s signal %d\n", r, strerror(errno), got); got = 0;
              r = sendmsg(q[0], &mx, MSG_NOSIGNAL);
              printf("sendmsg nosignal %zd signal %d\n", r, got);
              return 0;
            }
            """#, name: "blocksend", flags: ["-static", "-pthread"], in: dir)
        #expect(out.contains("reader got 1048576 sum 4060610560, descriptor in call 0: usable\nsendmsg 1048576\n"))
        #expect(out.contains("interrupted: partial 1 signal 14\n"))
        #expect(out.contains("send -1 Broken pipe signal 13\nsend nosignal -1 signal 0\nsendmsg -1 Broken pipe signal 13\nsendmsg nosignal -1 signal 0\n"))
    }

    /// recvmsg with MSG_WAITALL (no address, no control buffer) parks for
    /// the rest while the writer thread runs, as recv's MSG_WAITALL does;
    /// before, one blocking host recvmsg deadlocked the recording. A peer
    /// that closes ends it with what arrived; msg_flags and msg_controllen
    /// as Linux writes them.
    @Test func recvmsgWaitAllParks() throws {
        let out = try Harness.matchesNative(#"""
            // recvmsg with MSG_WAITALL into two iovecs while another thread writes in
            // small pieces; then the peer closes early: what arrived, and msg_flags.
            #include <stdio.h>
            #include <string.h>
            #include <pthread.h>
            #include <unistd.h>
            #include <sys/socket.h>
            #include <sys/uio.h>
            static int sv[2];
            static void *writer(void *a) {
                (void)a;
                static char b[4096];
                for (int i = 0; i < 64; i++) { memset(b, 'a' + i % 26, sizeof b); write(sv[1], b, sizeof b); usleep(1000); }
                write(sv[1], "tail", 4);
                close(sv[1]);
                return 0;
            }
            int main(void) {
                socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
                pthread_t t; pthread_create(&t, 0, writer, 0);
                static char one[100000], two[162144];
                struct iovec v[2] = {{one, sizeof one}, {two, sizeof two}};
                struct msghdr m = {.msg_iov = v, .msg_iovlen = 2, .msg_flags = 0x7777};
                ssize_t n = recvmsg(sv[0], &m, MSG_WAITALL);
                unsigned sum = 0;
                for (int i = 0; i < (int)sizeof one; i++) sum = sum * 31 + (unsigned char)one[i];
                for (int i = 0; i < (int)sizeof two; i++) sum = sum * 31 + (unsigned char)two[i];
                printf("recvmsg waitall %zd sum %u flags %x controllen %zu\n", n, sum, m.msg_flags, m.msg_controllen);
                char rest[8192];
                struct iovec r = {rest, sizeof rest};
                struct msghdr m2 = {.msg_iov = &r, .msg_iovlen = 1};
                n = recvmsg(sv[0], &m2, MSG_WAITALL | MSG_CMSG_CLOEXEC);
                printf("until close %zd: %.4s flags %x\n", n, n >= 4 ? rest + n - 4 : "", m2.msg_flags);
                pthread_join(t, 0);
                return 0;
            }
            """#, name: "waitall", flags: ["-static", "-pthread"], in: dir)
        #expect(out == "recvmsg waitall 262144 sum 2760638464 flags 0 controllen 0\nuntil close 4: tail flags 40000000\n")
    }

    /// sendmmsg on a full blocking socket, stream (1 MiB in four messages)
    /// and datagram (40 messages, one of no bytes, past the queue's
    /// length): it parks between messages while the reader thread runs;
    /// before, one blocking host call deadlocked the recording on the
    /// datagram queue. Then EPIPE raises SIGPIPE as send's does.
    @Test func sendmmsgParksBetweenMessages() throws {
        let out = try Harness.matchesNative(#"""
            #define _GNU_SOURCE
            #include <pthread.h>
            #include <signal.h>
            #include <stdio.h>
            #include <stdlib.h>
            #include <string.h>
            #include <errno.h>
            #include <sys/socket.h>
            #include <unistd.h>
            static int sv[2], dgram, count;
            static volatile sig_atomic_t caught;
            static void on(int s) { caught = s; }
            static void *reader(void *a) {
                static char buf[65536]; long n, got = 0, sum = 0, msgs = 0, want = (long)a;
                while (dgram ? msgs < count : got < want) {
                    n = recv(sv[1], buf, sizeof buf, 0);
                    if (n < 0 || (!dgram && n == 0)) break;
                    for (long i = 0; i < n; i++) sum += (unsigned char)buf[i];
                    got += n; msgs++;
                }
                printf("reader: %ld messages %ld bytes sum %ld\n", dgram ? msgs : 0, got, sum);
                return 0;
            }
            static void run(int type, int n, int size) {
                dgram = type == SOCK_DGRAM; count = n;
                socketpair(AF_UNIX, type, 0, sv);
                static struct mmsghdr m[64]; static struct iovec v[64];
                char *data = malloc((size_t)n * size);
                for (long i = 0; i < (long)n * size; i++) data[i] = (char)(i * 7);
                memset(m, 0, sizeof m);
                long want = 0;
                for (int i = 0; i < n; i++) {
                    v[i].iov_base = data + (long)i * size; v[i].iov_len = (i == 3 && dgram) ? 0 : size; want += v[i].iov_len;
                    m[i].msg_hdr.msg_iov = &v[i]; m[i].msg_hdr.msg_iovlen = 1; m[i].msg_len = 12345;
                }
                pthread_t t; pthread_create(&t, 0, reader, (void *)want);
                int r = sendmmsg(sv[0], m, n, 0);
                long lens = 0; for (int i = 0; i < n; i++) lens += m[i].msg_len;
                pthread_join(t, 0);
                printf("sendmmsg %s: %d lengths %ld msg 3 %u\n", dgram ? "dgram" : "stream", r, lens, m[3].msg_len);
                close(sv[0]); close(sv[1]); free(data);
            }
            int main(void) {
                run(SOCK_STREAM, 4, 256 * 1024);
                run(SOCK_DGRAM, 40, 4096);
                signal(SIGPIPE, on);
                socketpair(AF_UNIX, SOCK_STREAM, 0, sv); close(sv[1]);
                struct iovec v = {"x", 1}; struct mmsghdr m = {.msg_hdr = {.msg_iov = &v, .msg_iovlen = 1}};
                int r = sendmmsg(sv[0], &m, 1, 0);
                printf("sendmmsg %d %s signal %d\n", r, r < 0 ? strerror(errno) : "", (int)caught);
                caught = 0;
                r = sendmmsg(sv[0], &m, 1, MSG_NOSIGNAL);
                printf("nosignal %d signal %d\n", r, (int)caught);
                return 0;
            }
            """#, name: "sendmmsg_parks", flags: ["-static", "-pthread"], in: dir)
        #expect(out.contains("reader: 0 messages 1048576 bytes sum 133693440\nsendmmsg stream: 4 lengths 1048576 msg 3 262144\n"))
        #expect(out.contains("reader: 40 messages 159744 bytes sum 20367360\nsendmmsg dgram: 40 lengths 159744 msg 3 0\n"))
        #expect(out.contains("sendmmsg -1 Broken pipe signal 13\nnosignal -1 signal 0\n"))
    }
}
