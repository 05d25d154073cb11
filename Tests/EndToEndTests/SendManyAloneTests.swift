import Foundation
import Testing

/// sendmmsg from a lone thread on a socket nobody reads: detrec waits for
/// room as write(2) does (`HostTransfer.alone`), only until a timer of the
/// process would interrupt the wait, so alarm() ends the call as Linux's
/// signal does: the message it cut counts with what it sent, an unsent
/// first message is EINTR, a datagram socket returns the messages sent.
/// Before, each message was one blocking host send: the recording hung.
@Suite(.serialized) struct SendManyAloneTests {
    let dir = Harness.temporaryDirectory()

    @Test func alarmEndsALoneSendmmsg() throws {
        let out = try Harness.matchesNative(#"""
            #define _GNU_SOURCE
            #include <errno.h>
            #include <signal.h>
            #include <stdio.h>
            #include <string.h>
            #include <unistd.h>
            #include <sys/socket.h>
            static void show(const char *what, long r) { printf("%s %ld %s\n", what, r, r < 0 ? strerror(errno) : ""); fflush(stdout); }
            static void onalarm(int s) { (void)s; }
            static char big[1 << 20];
            int main(void) {
              int sv[2]; socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
              struct sigaction sa; memset(&sa, 0, sizeof sa); sa.sa_handler = onalarm; sigaction(SIGALRM, &sa, 0);
              struct iovec v[3] = { { "head", 4 }, { big, sizeof big }, { "tail", 4 } };
              struct mmsghdr m[3]; memset(m, 0, sizeof m);
              for (int i = 0; i < 3; i++) { m[i].msg_hdr.msg_iov = &v[i]; m[i].msg_hdr.msg_iovlen = 1; }
              alarm(1);
              int r = sendmmsg(sv[1], m, 3, 0);
              show("sendmmsg", r);
              printf("len0 %u len1 partial %d\n", m[0].msg_len, m[1].msg_len > 0 && m[1].msg_len < sizeof big);
              // Nothing fits now: the first message gets nothing, EINTR.
              alarm(1);
              show("sendmmsg full", sendmmsg(sv[1], m + 2, 1, 0));
              int d[2]; socketpair(AF_UNIX, SOCK_DGRAM, 0, d);
              struct iovec dv = { "x", 1 };
              struct mmsghdr dm[600]; memset(dm, 0, sizeof dm);
              for (int i = 0; i < 600; i++) { dm[i].msg_hdr.msg_iov = &dv; dm[i].msg_hdr.msg_iovlen = 1; }
              alarm(1);
              r = sendmmsg(d[1], dm, 600, 0);
              show("dgram sendmmsg some", r > 0 && r < 600);
              return 0;
            }
            """#, name: "mmsgalone", in: dir)
        #expect(out.contains("sendmmsg 2 \nlen0 4 len1 partial 1\n"))
        #expect(out.contains("sendmmsg full -1 Interrupted system call\n"))
        #expect(out.contains("dgram sendmmsg some 1 \n"))
    }
}
