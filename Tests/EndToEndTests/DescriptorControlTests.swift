import Foundation
import Testing

/// fcntl's non-lock commands, ioctl, recv flags, and the vector, copy,
/// splice, priority and identity calls: each C program is run natively,
/// recorded and replayed, and the recording must print what the native run
/// printed. Programs print errno values, so a refusal shows as a difference.
@Suite(.serialized) struct DescriptorControlTests {
    let dir = Harness.temporaryDirectory()

    /// F_GETFL/F_SETFL (O_APPEND, O_NONBLOCK, O_DIRECT), owners, signals,
    /// pipe sizes, F_DUPFD_CLOEXEC and F_DUPFD_QUERY, seals, F_GETLEASE,
    /// and O_ASYNC: a child writes to a pipe whose read end the parent owns,
    /// and the parent's SIGIO handler runs.
    @Test func fcntlCommandsMatchLinux() throws {
        let out = try Harness.matchesNative(#"""
            #define _GNU_SOURCE
            #include <stdio.h>
            #include <stdlib.h>
            #include <string.h>
            #include <unistd.h>
            #include <fcntl.h>
            #include <errno.h>
            #include <signal.h>
            #include <sys/wait.h>
            #include <sys/mman.h>
            #include <sys/ioctl.h>
            #include <sys/syscall.h>
            #ifndef F_DUPFD_QUERY
            #define F_DUPFD_QUERY 1027
            #endif
            static int E(long r) { return r < 0 ? -errno : (int)r; }
            #define P(label, call) do { int r_ = E(call); printf("%s %d\n", label, r_); } while (0)
            static volatile sig_atomic_t sigio;
            static void on_io(int s) { (void)s; sigio++; }
            int main(void) {
              int p[2]; pipe(p);
              P("getfl", fcntl(p[0], F_GETFL));
              P("setfl nonblock", fcntl(p[0], F_SETFL, O_NONBLOCK));
              P("getfl", fcntl(p[0], F_GETFL));
              char path[64]; snprintf(path, sizeof path, "/tmp/detrec-fcntl-%d", getpid());
              int f = open(path, O_CREAT | O_RDWR | O_TRUNC, 0600);
              P("append", fcntl(f, F_SETFL, O_APPEND));
              P("getfl", fcntl(f, F_GETFL) & O_APPEND);
              P("direct", fcntl(f, F_SETFL, O_DIRECT));
              P("getfl direct", fcntl(f, F_GETFL) & O_DIRECT);
              unlink(path);
              struct f_owner_ex ex = {99, 99};
              P("getown", fcntl(p[0], F_GETOWN));
              P("getown_ex", fcntl(p[0], F_GETOWN_EX, &ex));
              printf("type %d pid %d\n", ex.type, ex.pid);
              P("setown self", fcntl(p[0], F_SETOWN, getpid()));
              P("is self", fcntl(p[0], F_GETOWN) == getpid());
              P("setown group", fcntl(p[0], F_SETOWN, -getpgrp()));
              P("is group", fcntl(p[0], F_GETOWN) == -getpgrp());
              fcntl(p[0], F_GETOWN_EX, &ex);
              printf("ex type %d own %d\n", ex.type, ex.pid == getpgrp());
              P("missing", fcntl(p[0], F_SETOWN, 999999));
              P("min", fcntl(p[0], F_SETOWN, -2147483647 - 1));
              ex.type = F_OWNER_TID; ex.pid = gettid();
              P("setown_ex tid", fcntl(p[0], F_SETOWN_EX, &ex));
              struct f_owner_ex got = {0};
              fcntl(p[0], F_GETOWN_EX, &got);
              printf("type %d own %d\n", got.type, got.pid == gettid());
              P("getown is tid", fcntl(p[0], F_GETOWN) == gettid());
              ex.type = 7;
              P("bad type", fcntl(p[0], F_SETOWN_EX, &ex));
              P("getsig", fcntl(p[0], F_GETSIG));
              P("setsig", fcntl(p[0], F_SETSIG, SIGUSR1));
              P("getsig", fcntl(p[0], F_GETSIG));
              P("setsig 65", fcntl(p[0], F_SETSIG, 65));
              P("setsig -1", fcntl(p[0], F_SETSIG, -1));
              fcntl(p[0], F_SETSIG, 0);
              P("pipe size", fcntl(p[0], F_GETPIPE_SZ));
              P("set pipe size", fcntl(p[0], F_SETPIPE_SZ, 100000));
              P("write end size", fcntl(p[1], F_GETPIPE_SZ));
              P("file pipe size", fcntl(f, F_GETPIPE_SZ));
              int g = fcntl(p[0], F_DUPFD_CLOEXEC, 10);
              printf("dupfd_cloexec %d\n", g);
              P("cloexec", fcntl(g, F_GETFD));
              P("query same", fcntl(g, F_DUPFD_QUERY, p[0]));
              P("query other", fcntl(g, F_DUPFD_QUERY, p[1]));
              P("query bad", fcntl(g, F_DUPFD_QUERY, 77));
              int m = memfd_create("seals", MFD_ALLOW_SEALING);
              P("seals", fcntl(m, F_GET_SEALS));
              P("add seals", fcntl(m, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_SHRINK));
              P("seals", fcntl(m, F_GET_SEALS));
              P("sealed write", write(m, "x", 1));
              P("getlease", fcntl(p[0], F_GETLEASE));
              P("bad cmd", fcntl(p[0], 12345));
              // O_ASYNC: a child writes; the parent, owner of the read end, gets SIGIO.
              signal(SIGIO, on_io);
              fcntl(p[0], F_SETOWN, getpid());
              P("async", fcntl(p[0], F_SETFL, O_ASYNC | O_NONBLOCK));
              P("getfl async", fcntl(p[0], F_GETFL) & O_ASYNC);
              sigset_t block, old; sigemptyset(&block); sigaddset(&block, SIGIO);
              sigprocmask(SIG_BLOCK, &block, &old);
              fflush(stdout);
              pid_t c = fork();
              if (c == 0) { write(p[1], "data", 4); _exit(0); }
              while (!sigio) sigsuspend(&old);
              char buf[8] = {0};
              printf("sigio %d read %zd %s\n", sigio > 0, read(p[0], buf, sizeof buf), buf);
              waitpid(c, 0, 0);
              int on = 0;
              P("fioasync off", ioctl(p[0], FIOASYNC, &on));
              P("getfl async", fcntl(p[0], F_GETFL) & O_ASYNC);
              return 0;
            }
            """#, name: "fcntl_commands", in: dir)
        #expect(out.contains("setown_ex tid 0\ntype 0 own 1\n"))
        #expect(out.contains("query same 1\nquery other 0\nquery bad -9\n"))
        #expect(out.contains("getfl async 8192\nsigio 1 read 4 data\nfioasync off 0\ngetfl async 0\n"))
    }

    /// Leases and directory notification are refused with EINVAL and a
    /// report; FICLONE and FICLONERANGE are EOPNOTSUPP (after their
    /// descriptor checks), as on a filesystem without shared extents.
    @Test func leasesNotifyAndClonesAreRefused() throws {
        let exe = try Harness.compile(#"""
            #define _GNU_SOURCE
            #include <stdio.h>
            #include <unistd.h>
            #include <fcntl.h>
            #include <errno.h>
            #include <signal.h>
            #include <sys/ioctl.h>
            #include <linux/fs.h>
            static int E(long r) { return r < 0 ? -errno : (int)r; }
            #define P(label, call) do { int r_ = E(call); printf("%s %d\n", label, r_); } while (0)
            int main(void) {
              char path[64], path2[64]; snprintf(path, sizeof path, "/tmp/detrec-refused-%d", getpid());
              snprintf(path2, sizeof path2, "/tmp/detrec-refused2-%d", getpid());
              int f = open(path, O_CREAT | O_RDWR | O_TRUNC, 0600), g = open(path2, O_CREAT | O_RDWR | O_TRUNC, 0600);
              write(f, "data", 4);
              P("setlease", fcntl(f, F_SETLEASE, F_RDLCK));
              P("getlease", fcntl(f, F_GETLEASE));
              P("notify", fcntl(open("/tmp", O_RDONLY | O_DIRECTORY), F_NOTIFY, DN_CREATE));
              P("ficlone", ioctl(g, FICLONE, f));
              P("ficlone bad fd", ioctl(g, FICLONE, 99));
              struct file_clone_range r = {.src_fd = f, .src_length = 4};
              P("ficlonerange", ioctl(g, FICLONERANGE, &r));
              unlink(path); unlink(path2);
              return 0;
            }
            """#, name: "refused", in: dir)
        let (rec, _) = try Harness.roundTrip([exe], in: dir)
        #expect(rec.stdout == "setlease -22\ngetlease 2\nnotify -22\nficlone -95\nficlone bad fd -9\nficlonerange -95\n")
        #expect(rec.stderr.contains("F_SETLEASE: leases are not emulated"))
        #expect(rec.stderr.contains("F_NOTIFY: directory notification is not emulated"))
    }

    /// Terminal ioctls on a pipe (ENOTTY), FIONREAD/TIOCINQ, FIONBIO,
    /// FIOCLEX/FIONCLEX, FS_IOC_GETFLAGS, RNDGETENTCNT, and a
    /// pseudo-terminal: TIOCGPTN, TIOCGPTPEER, TCGETS/TCSETS, window size,
    /// job-control requests on a terminal that is not the controlling one.
    @Test func ioctlRequestsMatchLinux() throws {
        let out = try Harness.matchesNative(#"""
            #define _GNU_SOURCE
            #include <stdio.h>
            #include <stdlib.h>
            #include <string.h>
            #include <unistd.h>
            #include <fcntl.h>
            #include <errno.h>
            #include <termios.h>
            #include <poll.h>
            #include <sys/ioctl.h>
            #include <sys/socket.h>
            #include <linux/fs.h>
            #include <linux/random.h>
            static int E(long r) { return r < 0 ? -errno : (int)r; }
            #define P(label, call) do { int r_ = E(call); printf("%s %d\n", label, r_); } while (0)
            int main(void) {
              int p[2]; pipe(p);
              struct termios t; struct winsize w; int n = -1, pg = -1;
              P("tcgets pipe", ioctl(p[0], TCGETS, &t));
              P("tiocgwinsz pipe", ioctl(p[0], TIOCGWINSZ, &w));
              P("tiocmget pipe", ioctl(p[0], TIOCMGET, &n));
              P("tiocgpgrp pipe", ioctl(p[0], TIOCGPGRP, &pg));
              P("tiocspgrp pipe", ioctl(p[0], TIOCSPGRP, &pg));
              P("tiocsctty pipe", ioctl(p[0], TIOCSCTTY, 0));
              P("tiocnotty pipe", ioctl(p[0], TIOCNOTTY));
              write(p[1], "hello", 5);
              P("fionread", ioctl(p[0], FIONREAD, &n)); printf("n %d\n", n);
              P("tiocinq", ioctl(p[0], TIOCINQ, &n)); printf("n %d\n", n);
              int on = 1;
              P("fionbio", ioctl(p[0], FIONBIO, &on));
              P("nonblock", fcntl(p[0], F_GETFL) & O_NONBLOCK);
              P("fioclex", ioctl(p[0], FIOCLEX));
              P("cloexec", fcntl(p[0], F_GETFD));
              P("fionclex", ioctl(p[0], FIONCLEX));
              P("cloexec", fcntl(p[0], F_GETFD));
              char path[64]; snprintf(path, sizeof path, "/tmp/detrec-ioctl-%d", getpid());
              int f = open(path, O_CREAT | O_RDWR | O_TRUNC, 0600);
              write(f, "0123456789", 10); lseek(f, 3, SEEK_SET);
              P("fionread file", ioctl(f, FIONREAD, &n)); printf("n %d\n", n);
              int flags = -1;
              long fr = ioctl(f, FS_IOC_GETFLAGS, &flags);
              printf("getflags ok %d\n", fr == 0 || errno == ENOTTY || errno == EOPNOTSUPP);
              if (fr == 0) { P("setflags same", ioctl(f, FS_IOC_SETFLAGS, &flags)); } else printf("setflags same 0\n");
              int version = -1; long vr = ioctl(f, FS_IOC_GETVERSION, &version);
              printf("getversion ok %d\n", vr == 0 || errno == ENOTTY || errno == EOPNOTSUPP);
              P("tcgets file", ioctl(f, TCGETS, &t));
              int r = open("/dev/random", O_RDONLY); int ent = -1;
              P("rndgetentcnt", ioctl(r, RNDGETENTCNT, &ent)); printf("ent positive %d\n", ent >= 0);
              P("rndgetentcnt file", ioctl(f, RNDGETENTCNT, &ent));
              unlink(path);
              int s[2]; socketpair(AF_UNIX, SOCK_STREAM, 0, s);
              write(s[0], "abc", 3);
              P("sock fionread", ioctl(s[1], FIONREAD, &n)); printf("n %d\n", n);
              P("sock outq", ioctl(s[0], TIOCOUTQ, &n));
              int m = posix_openpt(O_RDWR | O_NOCTTY);
              printf("openpt %d\n", m >= 0);
              P("grantpt", grantpt(m)); P("unlockpt", unlockpt(m));
              unsigned ptn = 12345; P("tiocgptn", ioctl(m, TIOCGPTN, &ptn)); printf("ptn set %d\n", ptn != 12345);
              int peer = ioctl(m, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
              printf("peer %d cloexec %d\n", peer >= 0, fcntl(peer, F_GETFD));
              P("isatty peer", isatty(peer));
              P("tcgets", ioctl(peer, TCGETS, &t));
              t.c_lflag &= ~ECHO;
              P("tcsets", ioctl(peer, TCSETS, &t));
              struct termios t2; ioctl(peer, TCGETS, &t2);
              printf("echo off %d\n", !(t2.c_lflag & ECHO));
              struct winsize ws = {24, 80, 0, 0};
              P("tiocswinsz", ioctl(m, TIOCSWINSZ, &ws));
              struct winsize ws2 = {0}; P("tiocgwinsz", ioctl(peer, TIOCGWINSZ, &ws2)); printf("rows %d cols %d\n", ws2.ws_row, ws2.ws_col);
              P("tiocgpgrp not ctty", ioctl(peer, TIOCGPGRP, &pg));
              P("tiocgsid not ctty", ioctl(peer, TIOCGSID, &pg));
              P("tiocmget pty", ioctl(peer, TIOCMGET, &n));
              write(m, "typed\n", 6);
            struct pollfd pf = {peer, POLLIN, 0}; poll(&pf, 1, -1);  /* the line discipline passes it on in its own time */
              P("pty fionread", ioctl(peer, FIONREAD, &n)); printf("n %d\n", n);
              char line[16] = {0}; P("read", read(peer, line, sizeof line)); printf("line %s", line);
              P("tcflsh", ioctl(peer, TCFLSH, TCIOFLUSH));
              P("tcsbrk drain", ioctl(peer, TCSBRK, 1));
              P("unknown", ioctl(p[0], 0x1234abcd, &n));
              return 0;
            }
            """#, name: "ioctl_requests", in: dir)
        #expect(out.contains("tcgets pipe -25\n"))
        #expect(out.contains("peer 1 cloexec 1\n"))
        #expect(out.contains("rows 24 cols 80\n"))
        #expect(out.contains("unknown -25\n"))
    }

    /// MSG_WAITALL parks while a writer thread (or a child, over TCP) sends
    /// in parts, and ends at the peer's shutdown; MSG_DONTWAIT, MSG_PEEK,
    /// MSG_TRUNC (a datagram's real length, TCP's discard),
    /// MSG_CMSG_CLOEXEC.
    @Test func receiveFlagsMatchLinux() throws {
        let out = try Harness.matchesNative(#"""
            #define _GNU_SOURCE
            #include <stdio.h>
            #include <string.h>
            #include <unistd.h>
            #include <fcntl.h>
            #include <errno.h>
            #include <pthread.h>
            #include <sched.h>
            #include <sys/ioctl.h>
            #include <sys/socket.h>
            #include <sys/wait.h>
            #include <netinet/in.h>
            #include <arpa/inet.h>
            static int E(long r) { return r < 0 ? -errno : (int)r; }
            #define P(label, call) do { int r_ = E(call); printf("%s %d\n", label, r_); } while (0)
            static int sv[2];
            static void *writer(void *a) {
              (void)a;
              const char *parts[] = {"ab", "cd", "ef", "gh"};
              for (int i = 0; i < 4; i++) { usleep(2000); write(sv[0], parts[i], 2); }
              return 0;
            }
            int main(void) {
              socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
              char buf[16];
              // MSG_WAITALL with a writer thread sending in parts: the reader gets all 8.
              pthread_t t; pthread_create(&t, 0, writer, 0);
              memset(buf, 0, sizeof buf);
              P("waitall", recv(sv[1], buf, 8, MSG_WAITALL)); printf("got %s\n", buf);
              pthread_join(t, 0);
              // MSG_WAITALL ended by the peer's shutdown: what arrived.
              write(sv[0], "xyz", 3); shutdown(sv[0], SHUT_WR);
              memset(buf, 0, sizeof buf);
              P("waitall eof", recv(sv[1], buf, 8, MSG_WAITALL)); printf("got %s\n", buf);
              P("after eof", recv(sv[1], buf, 8, MSG_WAITALL));
              // MSG_DONTWAIT on an empty socket.
              int s2[2]; socketpair(AF_UNIX, SOCK_STREAM, 0, s2);
              P("dontwait", recv(s2[1], buf, 8, MSG_DONTWAIT));
              // MSG_PEEK then a read.
              write(s2[0], "peekme", 6);
              memset(buf, 0, sizeof buf);
              P("peek", recv(s2[1], buf, 4, MSG_PEEK)); printf("got %s\n", buf);
              memset(buf, 0, sizeof buf);
              P("read", recv(s2[1], buf, 16, 0)); printf("got %s\n", buf);
              // MSG_TRUNC on a datagram bigger than the buffer, with recvfrom and recvmsg.
              int d[2]; socketpair(AF_UNIX, SOCK_DGRAM, 0, d);
              char big[4000]; memset(big, 'q', sizeof big);
              send(d[0], big, sizeof big, 0);
              memset(buf, 0, sizeof buf);
              P("trunc", recv(d[1], buf, 4, MSG_TRUNC)); printf("got %s\n", buf);
              send(d[0], big, sizeof big, 0);
              P("trunc zero buffer", recv(d[1], NULL, 0, MSG_TRUNC));
              send(d[0], big, sizeof big, 0);
              struct iovec v = {buf, 3}; struct msghdr m = {.msg_iov = &v, .msg_iovlen = 1};
              P("recvmsg trunc", recvmsg(d[1], &m, MSG_TRUNC)); printf("flags %x\n", m.msg_flags);
              send(d[0], big, 10, 0);
              struct mmsghdr mm[2]; memset(mm, 0, sizeof mm); char b0[4], b1[4];
              struct iovec v0 = {b0, 4}, v1 = {b1, 4};
              mm[0].msg_hdr.msg_iov = &v0; mm[0].msg_hdr.msg_iovlen = 1; mm[1].msg_hdr.msg_iov = &v1; mm[1].msg_hdr.msg_iovlen = 1;
              send(d[0], big, 20, 0);
              P("recvmmsg trunc", recvmmsg(d[1], mm, 2, MSG_TRUNC, NULL)); printf("lens %u %u\n", mm[0].msg_len, mm[1].msg_len);
              // TCP: MSG_TRUNC discards; MSG_WAITALL waits for the rest.
              int l = socket(AF_INET, SOCK_STREAM, 0);
              struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
              bind(l, (void *)&a, sizeof a); listen(l, 1);
              socklen_t al = sizeof a; getsockname(l, (void *)&a, &al);
              int c = socket(AF_INET, SOCK_STREAM, 0); connect(c, (void *)&a, sizeof a);
              int s = accept(l, 0, 0);
              write(c, "discarded!keep", 14);
              /* Loopback delivers in its own time: wait until all 14 bytes are there. */
              for (int q = 0; ioctl(s, FIONREAD, &q) == 0 && q < 14;) sched_yield();
              memcpy(buf, "untouched", 10);
              P("tcp trunc", recv(s, buf, 10, MSG_TRUNC)); printf("buf %s\n", buf);
              memset(buf, 0, sizeof buf);
              P("tcp rest", recv(s, buf, 16, 0)); printf("got %s\n", buf);
              fflush(stdout);
              pid_t k = fork();
              if (k == 0) { for (int i = 0; i < 3; i++) { usleep(3000); write(c, "123", 3); } _exit(0); }
              memset(buf, 0, sizeof buf);
              P("tcp waitall", recv(s, buf, 9, MSG_WAITALL)); printf("got %s\n", buf);
              waitpid(k, 0, 0);
              // MSG_CMSG_CLOEXEC on a received descriptor.
              int u[2]; socketpair(AF_UNIX, SOCK_DGRAM, 0, u);
              char ctl[CMSG_SPACE(sizeof(int))] = {0};
              struct iovec ov = {"x", 1};
              struct msghdr om = {.msg_iov = &ov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof ctl};
              struct cmsghdr *cm = CMSG_FIRSTHDR(&om);
              cm->cmsg_level = SOL_SOCKET; cm->cmsg_type = SCM_RIGHTS; cm->cmsg_len = CMSG_LEN(sizeof(int));
              memcpy(CMSG_DATA(cm), &sv[1], sizeof(int));
              sendmsg(u[0], &om, 0); sendmsg(u[0], &om, 0);
              for (int i = 0; i < 2; i++) {
                char rctl[CMSG_SPACE(sizeof(int))]; char one;
                struct iovec iv = {&one, 1};
                struct msghdr im = {.msg_iov = &iv, .msg_iovlen = 1, .msg_control = rctl, .msg_controllen = sizeof rctl};
                recvmsg(u[1], &im, i ? MSG_CMSG_CLOEXEC : 0);
                int fd; memcpy(&fd, CMSG_DATA(CMSG_FIRSTHDR(&im)), sizeof fd);
                printf("received fd %d cloexec %d\n", fd, fcntl(fd, F_GETFD));
              }
              return 0;
            }
            """#, name: "receive_flags", in: dir)
        #expect(out.contains("waitall 8\ngot abcdefgh\nwaitall eof 3\ngot xyz\n"))
        #expect(out.contains("trunc 4000\ngot qqqq\n"))
        #expect(out.contains("tcp trunc 10\nbuf untouched\n"))
        #expect(out.contains("tcp waitall 9\ngot 123123123\n"))
    }

    /// preadv2/pwritev2 with offsets and flags, copy_file_range, vmsplice
    /// both ways, mknodat, getrusage of children, times, sysinfo,
    /// clock_getres, sync calls, getrandom flags, ioprio_get/set, and the
    /// set*id calls as the recorded user gets them.
    @Test func transferAndIdentityCallsMatchLinux() throws {
        let out = try Harness.matchesNative(#"""
            #define _GNU_SOURCE
            #include <stdio.h>
            #include <string.h>
            #include <stdlib.h>
            #include <unistd.h>
            #include <fcntl.h>
            #include <errno.h>
            #include <grp.h>
            #include <sys/uio.h>
            #include <sys/stat.h>
            #include <sys/syscall.h>
            #include <sys/resource.h>
            #include <sys/times.h>
            #include <sys/sysinfo.h>
            #include <sys/random.h>
            #include <sys/wait.h>
            #include <sys/fsuid.h>
            #include <sys/sysmacros.h>
            #include <time.h>
            #include <pthread.h>
            static int E(long r) { return r < 0 ? -errno : (int)r; }
            #define P(label, call) do { int r_ = E(call); printf("%s %d\n", label, r_); } while (0)
            int main(void) {
              char path[64], path2[64]; snprintf(path, sizeof path, "/tmp/detrec-calls-%d", getpid());
              snprintf(path2, sizeof path2, "/tmp/detrec-calls2-%d", getpid());
              int f = open(path, O_CREAT | O_RDWR | O_TRUNC, 0600);
              char a[] = "hello ", b[] = "world";
              struct iovec w[2] = {{a, 6}, {b, 5}};
              P("pwritev2 at 0", pwritev2(f, w, 2, 0, 0));
              P("pwritev2 append", pwritev2(f, w, 1, 0, RWF_APPEND));
              P("pwritev2 -1", pwritev2(f, w + 1, 1, -1, 0));
              P("pwritev2 dsync", pwritev2(f, w + 1, 1, 100, RWF_DSYNC));
              P("pwritev2 bad flag", pwritev2(f, w, 1, 0, 0x10000000));
              P("lseek", lseek(f, 0, SEEK_CUR));
              char x[8] = {0}, y[16] = {0};
              struct iovec r[2] = {{x, 5}, {y, 15}};
              P("preadv2 at 0", preadv2(f, r, 2, 0, 0)); printf("%s|%s\n", x, y);
              memset(x, 0, 8); memset(y, 0, 16);
              lseek(f, 6, SEEK_SET);
              P("preadv2 -1", preadv2(f, r, 1, -1, 0)); printf("%s\n", x);
              P("lseek", lseek(f, 0, SEEK_CUR));
              P("preadv2 hipri", preadv2(f, r, 1, 0, RWF_HIPRI));
              P("preadv2 nowait file", preadv2(f, r, 1, 0, RWF_NOWAIT));
              int p[2]; pipe(p);
              P("preadv2 nowait pipe", preadv2(p[0], r, 1, -1, RWF_NOWAIT));
              P("preadv2 pipe at 0", preadv2(p[0], r, 1, 0, 0));
              P("pwritev2 pipe", pwritev2(p[1], w, 2, -1, 0));
              memset(y, 0, 16); r[1].iov_len = 15;
              P("preadv2 pipe", preadv2(p[0], r + 1, 1, -1, 0)); printf("%s\n", y);
              // copy_file_range
              int g = open(path2, O_CREAT | O_RDWR | O_TRUNC, 0600);
              loff_t in = 6, out = 0;
              P("copy_file_range", copy_file_range(f, &in, g, &out, 5, 0)); printf("in %lld out %lld\n", (long long)in, (long long)out);
              P("copy_file_range flags", copy_file_range(f, &in, g, &out, 5, 1));
              P("copy_file_range pipe", copy_file_range(p[0], NULL, g, NULL, 5, 0));
              lseek(f, 0, SEEK_SET);
              P("copy_file_range own offsets", copy_file_range(f, NULL, g, NULL, 3, 0));
              char z[16] = {0}; pread(g, z, 15, 0); printf("copied %s\n", z);
              // vmsplice both ways
              struct iovec vs[2] = {{"vm", 2}, {"splice", 6}};
              P("vmsplice in", vmsplice(p[1], vs, 2, 0));
              char q[4] = {0}, q2[8] = {0};
              struct iovec vo[2] = {{q, 3}, {q2, 7}};
              P("vmsplice out", vmsplice(p[0], vo, 2, 0)); printf("%s|%s\n", q, q2);
              P("vmsplice empty nonblock", vmsplice(p[0], vo, 2, SPLICE_F_NONBLOCK));
              P("vmsplice file", vmsplice(f, vs, 1, 0));
              P("vmsplice bad flags", vmsplice(p[1], vs, 1, 0x100));
              // mknodat
              unlink(path2);
              P("mknodat fifo", mknodat(AT_FDCWD, path2, S_IFIFO | 0600, 0));
              struct stat st; stat(path2, &st); printf("fifo %d\n", S_ISFIFO(st.st_mode));
              unlink(path2);
              P("mknodat reg", mknodat(AT_FDCWD, path2, S_IFREG | 0600, 0));
              unlink(path2);
              P("mknodat bad type", mknodat(AT_FDCWD, path2, 0170000 | 0600, 0));
              unlink(path); close(f); close(g);
              // children's usage, times, sysinfo, clock_getres, sync
              fflush(stdout);
              pid_t c = fork();
              if (c == 0) _exit(3);
              int status; waitpid(c, &status, 0);
              struct rusage ru; P("getrusage children", getrusage(RUSAGE_CHILDREN, &ru));
              P("getrusage bad", getrusage(7, &ru));
              struct tms tm; printf("times ok %d\n", times(&tm) != (clock_t)-1);
              struct sysinfo si; P("sysinfo", sysinfo(&si)); printf("mem unit %u\n", si.mem_unit);
              struct timespec res; P("clock_getres", clock_getres(CLOCK_MONOTONIC, &res)); printf("res %ld\n", res.tv_nsec);
              P("clock_getres bad", clock_getres(99, &res));
            // CPU clocks name the recording's threads and processes.
            clockid_t tc, pc;
            P("thread clock", pthread_getcpuclockid(pthread_self(), &tc));
            P("thread clock res", clock_getres(tc, &res));
            P("thread clock time", clock_gettime(tc, &res));
            P("process clock", clock_getcpuclockid(getpid(), &pc));
            P("process clock time", clock_gettime(pc, &res));
            P("dead child clock", clock_gettime(((~(clockid_t)c) << 3) | 2, &res));
              P("clock_getres null", clock_getres(CLOCK_REALTIME, NULL));
              sync();
              P("syncfs", syncfs(0));
              P("sync_file_range bad", sync_file_range(p[0], 0, 0, 0));
              P("sync_file_range flags", sync_file_range(p[0], 0, 0, 8));
              // getrandom
              char rnd[16];
              P("getrandom", getrandom(rnd, 16, 0));
              P("getrandom nonblock", getrandom(rnd, 16, GRND_NONBLOCK));
              P("getrandom random", getrandom(rnd, 16, GRND_RANDOM));
              P("getrandom insecure", getrandom(rnd, 16, GRND_INSECURE));
              P("getrandom bad", getrandom(rnd, 16, 0x40));
              P("getrandom both", getrandom(rnd, 16, GRND_INSECURE | GRND_RANDOM));
              // ioprio
              P("ioprio_get", syscall(SYS_ioprio_get, 1, 0));
              P("ioprio_set be 7", syscall(SYS_ioprio_set, 1, 0, (2 << 13) | 7));
              P("ioprio_get", syscall(SYS_ioprio_get, 1, 0));
              fflush(stdout);
              pid_t k = fork();
              if (k == 0) { printf("child ioprio %ld\n", syscall(SYS_ioprio_get, 1, 0)); fflush(stdout); _exit(0); }
              waitpid(k, 0, 0);
              P("ioprio_set idle", syscall(SYS_ioprio_set, 1, 0, 3 << 13));
              P("ioprio_get", syscall(SYS_ioprio_get, 1, 0));
              P("ioprio_set bad class", syscall(SYS_ioprio_set, 1, 0, 5 << 13));
              P("ioprio_set none level", syscall(SYS_ioprio_set, 1, 0, 3));
              P("ioprio_set bad which", syscall(SYS_ioprio_set, 9, 0, 0));
              P("ioprio_get no such", syscall(SYS_ioprio_get, 1, 999999));
              P("ioprio_set none", syscall(SYS_ioprio_set, 1, 0, 0));
              P("ioprio_get", syscall(SYS_ioprio_get, 1, 0));
              // ids as this user gets them
              P("setuid own", setuid(getuid()));
              P("setgid own", setgid(getgid()));
              P("setreuid same", setreuid(-1, geteuid()));
              P("setresuid same", setresuid(-1, -1, -1));
              P("setresgid same", setresgid(getgid(), getegid(), -1));
              P("setfsuid query", setfsuid(-1) == (int)geteuid());
              P("setfsgid query", setfsgid(-1) == (int)getegid());
              P("setuid -1", setuid(-1));
              if (geteuid() != 0) {
                P("setuid root", setuid(0));
                P("setgroups", setgroups(0, NULL));
              } else { printf("setuid root -1\nsetgroups -1\n"); }
              P("setgroups too many", setgroups(70000, NULL));
              return 0;
            }
            """#, name: "transfer_calls", in: dir)
        #expect(out.contains("preadv2 at 0 20\nworld| worldhello \n"))
        #expect(out.contains("vmsplice out 8\nvms|plice\n"))
        #expect(out.contains("child ioprio 16391\n"))
        #expect(out.contains("setuid own 0\n"))
        #expect(out.contains("thread clock time 0\nprocess clock 0\nprocess clock time 0\ndead child clock -22\n"))
    }
}
