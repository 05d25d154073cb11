import Foundation
import Testing

/// sendmsg/recvmsg with iovecs and SCM_RIGHTS between recorded processes,
/// MSG_TRUNC and MSG_PEEK, sendmmsg/recvmmsg: compared with a native run.
@Suite(.serialized) struct MessageTests {
    let dir = Harness.temporaryDirectory()

    @Test func messagesCarryDataAndDescriptors() throws {
        let out = try Harness.matchesNative(EpollTests.prelude + #"""
            #include <sys/uio.h>
            static int send_fd(int s, int fd, const char *a, const char *b) {
              struct iovec v[2] = {{(void *)a, strlen(a)}, {(void *)b, strlen(b)}};
              char ctl[CMSG_SPACE(sizeof(int))] = {0};
              struct msghdr m = {.msg_iov = v, .msg_iovlen = 2, .msg_control = ctl, .msg_controllen = sizeof ctl};
              struct cmsghdr *c = CMSG_FIRSTHDR(&m);
              c->cmsg_level = SOL_SOCKET; c->cmsg_type = SCM_RIGHTS; c->cmsg_len = CMSG_LEN(sizeof(int));
              memcpy(CMSG_DATA(c), &fd, sizeof fd);
              return sendmsg(s, &m, 0);
            }
            int main(void) {
              int sv[2]; socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
              int p[2]; pipe(p);
              pid_t child = fork();
              if (child == 0) {
                close(sv[0]); close(p[1]);
                char buf[64] = {0}, ctl[CMSG_SPACE(sizeof(int)) * 2];
                struct iovec v = {buf, sizeof buf - 1};
                struct msghdr m = {.msg_iov = &v, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof ctl};
                ssize_t n = recvmsg(sv[1], &m, MSG_CMSG_CLOEXEC);
                struct cmsghdr *c = CMSG_FIRSTHDR(&m);
                int fd = -1; memcpy(&fd, CMSG_DATA(c), sizeof fd);
                char line[128];
                int k = snprintf(line, sizeof line, "child got %zd '%s' fd %d level %d type %d cloexec %d flags %x\n", n, buf, fd,
                                 c->cmsg_level, c->cmsg_type, fcntl(fd, F_GETFD), m.msg_flags);
                write(fd, line, k);
                _exit(0);
              }
              close(sv[1]);
              printf("sent %d\n", send_fd(sv[0], p[1], "hello ", "there"));
              printf("bad fd %d\n", send_fd(sv[0], 77, "x", "y") < 0 ? -errno : 0);
              close(p[1]);
              char buf[256] = {0}; ssize_t n = read(p[0], buf, sizeof buf - 1);
              printf("%.*s", (int)n, buf);
              waitpid(child, 0, 0);

              int d[2]; socketpair(AF_UNIX, SOCK_DGRAM, 0, d);
              send(d[0], "a long datagram", 15, 0);
              char small[4];
              printf("peek %zd", recv(d[1], small, sizeof small, MSG_PEEK));
              printf(" trunc %zd %.4s\n", recv(d[1], small, sizeof small, MSG_TRUNC), small);
              send(d[0], "xyz", 3, 0);
              struct iovec v = {small, sizeof small};
              struct msghdr m = {.msg_iov = &v, .msg_iovlen = 1};
              printf("recvmsg %zd flags %x\n", recvmsg(d[1], &m, 0), m.msg_flags);
              send(d[0], "0123456789", 10, 0);
              m.msg_flags = 0;
              printf("recvmsg short %zd flags %x\n", recvmsg(d[1], &m, 0), m.msg_flags & MSG_TRUNC);

              struct mmsghdr out[3]; struct iovec ov[3]; const char *words[] = {"one", "three", "seven"};
              for (int i = 0; i < 3; i++) {
                ov[i].iov_base = (void *)words[i]; ov[i].iov_len = strlen(words[i]);
                memset(&out[i], 0, sizeof out[i]); out[i].msg_hdr.msg_iov = &ov[i]; out[i].msg_hdr.msg_iovlen = 1;
              }
              printf("sendmmsg %d:", sendmmsg(d[0], out, 3, 0));
              for (int i = 0; i < 3; i++) printf(" %u", out[i].msg_len);
              struct mmsghdr in[4]; char bufs[4][16]; struct iovec iv[4];
              for (int i = 0; i < 4; i++) {
                iv[i].iov_base = bufs[i]; iv[i].iov_len = 16;
                memset(&in[i], 0, sizeof in[i]); in[i].msg_hdr.msg_iov = &iv[i]; in[i].msg_hdr.msg_iovlen = 1;
              }
              int got = recvmmsg(d[1], in, 4, MSG_WAITFORONE, NULL);
              printf("\nrecvmmsg %d:", got);
              for (int i = 0; i < got; i++) printf(" %.*s", (int)in[i].msg_len, bufs[i]);
              printf("\n");
              return 0;
            }
            """#, name: "messages", in: dir)
        #expect(out.contains("sent 11\nbad fd -9\nchild got 11 'hello there' fd 3 level 1 type 1 cloexec 1 flags 40000000\n"))
        #expect(out.contains("peek 4 trunc 15 a lo\n"))
        #expect(out.contains("sendmmsg 3: 3 5 5\nrecvmmsg 3: one three seven\n"))
    }
}
