import Foundation
import Testing

/// Unix socket addresses with a relative path resolve against the calling
/// process's working directory (not detrec's): bind creates the socket
/// there, getsockname reports the name as given, connect, sendto and
/// sendmsg reach it, and after unlink the name can be bound again.
/// CPython's socket_helper.skip_unless_bind_unix_socket met it: bind in
/// the test's temporary cwd, unlink ENOENT, then EADDRINUSE.
@Suite(.serialized) struct UnixSocketPathTests {
    let dir = Harness.temporaryDirectory()

    @Test func relativePathsFollowTheWorkingDirectory() throws {
        let out = try Harness.matchesNative(#"""
            #include <errno.h>
            #include <stddef.h>
            #include <stdio.h>
            #include <string.h>
            #include <unistd.h>
            #include <sys/socket.h>
            #include <sys/stat.h>
            #include <sys/un.h>
            #include <sys/wait.h>
            static struct sockaddr_un addr(const char *p, socklen_t *len) {
              struct sockaddr_un a; memset(&a, 0, sizeof a); a.sun_family = AF_UNIX;
              strncpy(a.sun_path, p, sizeof a.sun_path - 1);
              *len = offsetof(struct sockaddr_un, sun_path) + strlen(p) + 1;
              return a;
            }
            static void show(const char *what, long r) { printf("%s %ld %s\n", what, r, r < 0 ? strerror(errno) : ""); fflush(stdout); }
            int main(int argc, char **argv) {
              mkdir(argv[1], 0755);
              show("chdir", chdir(argv[1]));
              socklen_t len;
              struct sockaddr_un a = addr("s.sock", &len);
              int s = socket(AF_UNIX, SOCK_STREAM, 0);
              show("bind", bind(s, (struct sockaddr *)&a, len));
              struct sockaddr_un got; socklen_t gl = sizeof got;
              show("getsockname", getsockname(s, (struct sockaddr *)&got, &gl));
              printf("name %s %u\n", got.sun_path, gl);
              struct stat st;
              show("stat", stat("s.sock", &st));
              printf("is socket %d\n", S_ISSOCK(st.st_mode));
              show("listen", listen(s, 1));
              pid_t child = fork();
              if (child == 0) {
                // The child's own chdir moves only it: "s.sock" is not here.
                chdir("/");
                int k = socket(AF_UNIX, SOCK_STREAM, 0);
                show("child connect elsewhere", connect(k, (struct sockaddr *)&a, len));
                _exit(0);
              }
              waitpid(child, 0, 0);
              int k = socket(AF_UNIX, SOCK_STREAM, 0);
              show("connect", connect(k, (struct sockaddr *)&a, len));
              int acc = accept(s, 0, 0);
              show("write", write(k, "hi", 2));
              char buf[8] = {0};
              show("read", read(acc, buf, sizeof buf));
              printf("got %s\n", buf);
              struct sockaddr_un d = addr("d.sock", &len);
              int ds = socket(AF_UNIX, SOCK_DGRAM, 0);
              show("bind dgram", bind(ds, (struct sockaddr *)&d, len));
              int dc = socket(AF_UNIX, SOCK_DGRAM, 0);
              show("sendto", sendto(dc, "one", 3, 0, (struct sockaddr *)&d, len));
              struct iovec v = { "two", 3 };
              struct msghdr m = { .msg_name = &d, .msg_namelen = len, .msg_iov = &v, .msg_iovlen = 1 };
              show("sendmsg", sendmsg(dc, &m, 0));
              memset(buf, 0, sizeof buf); show("recv", recv(ds, buf, sizeof buf, 0)); printf("got %s\n", buf);
              memset(buf, 0, sizeof buf); show("recv", recv(ds, buf, sizeof buf, 0)); printf("got %s\n", buf);
              close(k); close(acc); close(s); close(ds); close(dc);
              show("unlink", unlink("s.sock"));
              show("unlink dgram", unlink("d.sock"));
              s = socket(AF_UNIX, SOCK_STREAM, 0);
              show("bind again", bind(s, (struct sockaddr *)&a, len));
              show("unlink again", unlink("s.sock"));
              close(s);
              show("chdir back", chdir(".."));
              show("rmdir", rmdir(argv[1]));
              return 0;
            }
            """#, name: "relsock", args: [dir.appendingPathComponent("cwd").path], in: dir)
        #expect(out.contains("stat 0 \nis socket 1\n"))
        #expect(out.contains("child connect elsewhere -1 No such file or directory\n"))
        #expect(out.contains("unlink 0 \nunlink dgram 0 \nbind again 0 \nunlink again 0 \n"))
        #expect(out.contains("rmdir 0 \n"))
    }

    /// An absolute path through /proc (/proc/self/fd/N/..., /proc/self/cwd/...)
    /// names the guest's descriptor and working directory, never detrec's:
    /// bind creates the socket in the guest's directory and getsockname
    /// reports the name as given; connect, sendto and sendmsg reach it; a name
    /// in /proc itself binds nowhere and connects to nothing.
    @Test func procPathsNameTheGuestsFiles() throws {
        let out = try Harness.matchesNative(#"""
            #include <errno.h>
            #include <fcntl.h>
            #include <stddef.h>
            #include <stdio.h>
            #include <string.h>
            #include <unistd.h>
            #include <sys/socket.h>
            #include <sys/stat.h>
            #include <sys/un.h>
            static socklen_t mk(struct sockaddr_un *a, const char *p) {
              memset(a, 0, sizeof *a); a->sun_family = AF_UNIX; strncpy(a->sun_path, p, sizeof a->sun_path - 1);
              return offsetof(struct sockaddr_un, sun_path) + strlen(p) + 1;
            }
            static void show(const char *what, long r) { printf("%s %ld %s\n", what, r, r < 0 ? strerror(errno) : ""); fflush(stdout); }
            int main(int argc, char **argv) {
              mkdir(argv[1], 0755);
              show("chdir", chdir(argv[1]));
              mkdir("sub", 0755);
              // Make the guest's descriptor numbers differ from detrec's: open a few.
              for (int i = 0; i < 5; i++) open("/", O_RDONLY);
              int dir = open("sub", O_RDONLY | O_DIRECTORY);
              char p[128]; struct sockaddr_un a, got; socklen_t len, gl;
              snprintf(p, sizeof p, "/proc/self/fd/%d/fd.sock", dir);
              len = mk(&a, p);
              int s = socket(AF_UNIX, SOCK_STREAM, 0);
              show("bind fd", bind(s, (struct sockaddr *)&a, len));
              gl = sizeof got; memset(&got, 0, sizeof got);
              show("getsockname", getsockname(s, (struct sockaddr *)&got, &gl));
              printf("name %s same %d len %u\n", got.sun_path + (strncmp(got.sun_path, "/proc/self/fd/", 14) == 0 ? 0 : 0), strcmp(got.sun_path, p) == 0, gl);
              struct stat st;
              show("stat sub/fd.sock", stat("sub/fd.sock", &st));
              show("listen", listen(s, 1));
              int k = socket(AF_UNIX, SOCK_STREAM, 0);
              len = mk(&a, "/proc/self/cwd/sub/fd.sock");
              show("connect cwd", connect(k, (struct sockaddr *)&a, len));
              int acc = accept(s, 0, 0);
              show("write", write(k, "hi", 2));
              char buf[8] = {0}; show("read", read(acc, buf, sizeof buf)); printf("got %s\n", buf);
              len = mk(&a, "/proc/self/cwd/c.sock");
              int d = socket(AF_UNIX, SOCK_DGRAM, 0);
              show("bind cwd dgram", bind(d, (struct sockaddr *)&a, len));
              show("stat c.sock", stat("c.sock", &st));
              int e = socket(AF_UNIX, SOCK_DGRAM, 0);
              show("sendto", sendto(e, "one", 3, 0, (struct sockaddr *)&a, len));
              struct iovec v = { "two", 3 };
              struct msghdr m = { .msg_name = &a, .msg_namelen = len, .msg_iov = &v, .msg_iovlen = 1 };
              show("sendmsg", sendmsg(e, &m, 0));
              memset(buf, 0, sizeof buf); show("recv", recv(d, buf, sizeof buf, 0)); printf("got %s\n", buf);
              memset(buf, 0, sizeof buf); show("recv", recv(d, buf, sizeof buf, 0)); printf("got %s\n", buf);
              // A name in the guest's /proc itself.
              len = mk(&a, "/proc/self/x.sock");
              int f = socket(AF_UNIX, SOCK_STREAM, 0);
              show("bind in proc", bind(f, (struct sockaddr *)&a, len));
              len = mk(&a, "/proc/self/status");
              show("connect proc file", connect(f, (struct sockaddr *)&a, len));
              unlink("sub/fd.sock"); unlink("c.sock"); rmdir("sub");
              chdir("/"); show("rmdir", rmdir(argv[1]));
              return 0;
            }
            """#, name: "procsock", args: [dir.appendingPathComponent("pcwd").path], in: dir)
        #expect(out.contains("bind fd 0 \ngetsockname 0 \n"))
        #expect(out.contains("same 1"))
        #expect(out.contains("stat sub/fd.sock 0 \n"))
        #expect(out.contains("connect cwd 0 \n"))
        #expect(out.contains("stat c.sock 0 \n"))
        #expect(out.contains("got one\n") && out.contains("got two\n"))
        #expect(out.contains("rmdir 0 \n"))
    }
}
