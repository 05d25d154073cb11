import Foundation
import Testing

/// recvmsg with MSG_WAITALL and an address and a control buffer parks as
/// the plain form does: a writer thread sends in pieces (SCM_RIGHTS with
/// the first, which ends that receive as Linux's stream receive stops after
/// descriptors), the next receive waits for two later pieces while the
/// writer runs, and with one thread an alarm ends the wait with what had
/// arrived, or EINTR. Before, the call was one blocking host call: the
/// recording hung.
@Suite(.serialized) struct ReceiveAllMessageTests {
    let dir = Harness.temporaryDirectory()

    @Test func waitAllWithAddressAndControlParks() throws {
        let out = try Harness.matchesNative(#"""
            #include <errno.h>
            #include <pthread.h>
            #include <signal.h>
            #include <stdio.h>
            #include <string.h>
            #include <unistd.h>
            #include <sys/socket.h>
            #include <sys/un.h>
            static int sv[2], pp[2];
            static void show(const char *what, long r) { printf("%s %ld %s\n", what, r, r < 0 ? strerror(errno) : ""); fflush(stdout); }
            static void *writer(void *arg) {
              (void)arg;
              usleep(100000);
              // First piece with a descriptor, then plain pieces.
              int fd = pp[1];
              char cbuf[CMSG_SPACE(sizeof(int))]; memset(cbuf, 0, sizeof cbuf);
              struct iovec v = { "abc", 3 };
              struct msghdr m = { .msg_iov = &v, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf };
              struct cmsghdr *h = CMSG_FIRSTHDR(&m);
              h->cmsg_level = SOL_SOCKET; h->cmsg_type = SCM_RIGHTS; h->cmsg_len = CMSG_LEN(sizeof(int));
              memcpy(CMSG_DATA(h), &fd, sizeof fd);
              sendmsg(sv[1], &m, 0);
              usleep(50000); write(sv[1], "def", 3);
              usleep(50000); write(sv[1], "ghi", 3);
              return 0;
            }
            static int ticks;
            static void *ticker(void *arg) { (void)arg; for (int i = 0; i < 3; i++) { usleep(20000); __atomic_add_fetch(&ticks, 1, __ATOMIC_SEQ_CST); } return 0; }
            static void onalarm(int s) { (void)s; }
            int main(void) {
              socketpair(AF_UNIX, SOCK_STREAM, 0, sv); pipe(pp);
              pthread_t w, t; pthread_create(&w, 0, writer, 0); pthread_create(&t, 0, ticker, 0);
              char buf[16] = {0}; char cbuf[64]; struct sockaddr_un from; 
              struct iovec v = { buf, 9 };
              struct msghdr m = { .msg_name = &from, .msg_namelen = sizeof from, .msg_iov = &v, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf };
              show("recvmsg rights first", recvmsg(sv[0], &m, MSG_WAITALL));
              printf("got %s controllen %zu namelen %u flags %d ticks %d\n", buf, (size_t)m.msg_controllen, m.msg_namelen, m.msg_flags, __atomic_load_n(&ticks, __ATOMIC_SEQ_CST));
              struct cmsghdr *h = CMSG_FIRSTHDR(&m);
              if (h && h->cmsg_type == SCM_RIGHTS) { int fd; memcpy(&fd, CMSG_DATA(h), 4); show("write to received", write(fd, "via fd", 6)); char t[8] = {0}; show("read pipe", read(pp[0], t, 7)); printf("pipe %s\n", t); }
              memset(buf, 0, sizeof buf); m.msg_controllen = sizeof cbuf; m.msg_namelen = sizeof from; v.iov_len = 6;
              show("recvmsg rest", recvmsg(sv[0], &m, MSG_WAITALL));
              printf("got %s controllen %zu namelen %u\n", buf, (size_t)m.msg_controllen, m.msg_namelen);
              pthread_join(w, 0); pthread_join(t, 0);
              // Alone: alarm ends a WAITALL recvmsg with what arrived.
              struct sigaction sa; memset(&sa, 0, sizeof sa); sa.sa_handler = onalarm; sigaction(SIGALRM, &sa, 0);
              write(sv[1], "xy", 2);
              memset(buf, 0, sizeof buf); m.msg_controllen = sizeof cbuf; m.msg_namelen = sizeof from; v.iov_len = 8;
              alarm(1);
              show("recvmsg alarm partial", recvmsg(sv[0], &m, MSG_WAITALL));
              printf("got %s controllen %zu\n", buf, (size_t)m.msg_controllen);
              memset(buf, 0, sizeof buf); m.msg_controllen = sizeof cbuf; m.msg_namelen = sizeof from;
              alarm(1);
              show("recvmsg alarm nothing", recvmsg(sv[0], &m, MSG_WAITALL));
              return 0;
            }
            """#, name: "waitallmsg", in: dir)
        #expect(out.contains("recvmsg rights first 3 \ngot abc controllen 24"))
        #expect(out.contains("pipe via fd\n"))
        #expect(out.contains("recvmsg rest 6 \ngot defghi controllen 0"))
        #expect(out.contains("recvmsg alarm partial 2 \ngot xy"))
        #expect(out.contains("recvmsg alarm nothing -1 Interrupted system call"))
    }
}
