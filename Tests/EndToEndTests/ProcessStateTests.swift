import Foundation
import Testing

/// Per-process kernel state that is the emulation's, never detrec's: the
/// working directory, umask, process groups and sessions, nice values and
/// limits. A child changing its own leaves its parent (and detrec) alone,
/// and fork hands all of it down.
@Suite(.serialized) struct ProcessStateTests {
    let dir = Harness.temporaryDirectory()

    @Test func subshellChdirDoesNotMoveTheShell() throws {
        let argv = ["/bin/bash", "-c", "(cd /usr/bin; pwd; /bin/pwd); /bin/pwd; cd /tmp && /bin/pwd; cd - >/dev/null; /bin/pwd"]
        let native = try Harness.run(argv)
        let (rec, _) = try Harness.roundTrip(argv, in: dir)
        #expect(rec.stdout == native.stdout)
        #expect(rec.stdout.hasPrefix("/usr/bin\n/usr/bin\n/"))
        #expect(!rec.stdout.contains("/usr/bin\n/usr/bin\n/usr/bin"))
    }

    @Test func workingDirectoryAndUmaskArePerProcess() throws {
        let work = dir.appendingPathComponent("cwd-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        _ = try Harness.matchesNative(#"""
            #define _GNU_SOURCE
            #include <errno.h>
            #include <fcntl.h>
            #include <stdio.h>
            #include <string.h>
            #include <sys/stat.h>
            #include <sys/wait.h>
            #include <unistd.h>
            static const char *tail(const char *p) { const char *s = strrchr(p, '/'); return s ? s + 1 : p; }
            int main(int argc, char **argv) {
              if (chdir(argv[1])) { perror("chdir"); return 1; }
              char start[4096]; getcwd(start, sizeof start);
              umask(022);
              pid_t c = fork();
              if (c == 0) {
                umask(077);
                chdir("/");
                _exit(0);
              }
              waitpid(c, 0, 0);
              char now[4096]; getcwd(now, sizeof now);
              printf("parent stays: %d umask %03o\n", strcmp(start, now) == 0, umask(022));
              mkdir("sub", 0777);
              int fd = open("sub/file", O_CREAT | O_WRONLY, 0666);
              write(fd, "x", 1); close(fd);
              struct stat st; stat("sub/file", &st);
              printf("relative file mode %03o\n", st.st_mode & 0777);
              symlink("file", "sub/link");
              char target[64] = {0}; readlink("sub/link", target, sizeof target - 1);
              printf("symlink target %s\n", target);
              int dfd = open("sub", O_RDONLY | O_DIRECTORY);
              printf("fstatat via AT_FDCWD %d, via dirfd %d\n", fstatat(AT_FDCWD, "sub/file", &st, 0), fstatat(dfd, "file", &st, 0));
              fchdir(dfd);
              getcwd(now, sizeof now);
              printf("fchdir into %s, access %d\n", tail(now), access("file", F_OK));
              rename("file", "moved");
              printf("renamed %d\n", access("moved", F_OK));
              unlink("moved"); unlink("link");
              c = fork();
              if (c == 0) { char here[4096]; getcwd(here, sizeof here); _exit(strcmp(tail(here), "sub") == 0 ? 3 : 4); }
              int ws; waitpid(c, &ws, 0);
              printf("child inherits the directory: %d\n", WEXITSTATUS(ws));
              chdir("..");
              rmdir("sub");
              mkdir("gone", 0700); chdir("gone"); rmdir("../gone");
              errno = 0;
              char *found = getcwd(now, sizeof now);
              printf("removed cwd: %s %s\n", found ? "found" : "null", strerror(errno));
              int r;
              chdir(start);
              r = chdir("/etc/passwd");
              printf("chdir to a file: %d %s\n", r ? errno : 0, strerror(errno));
              r = chdir("nonexistent");
              printf("chdir to nothing: %d %s\n", r ? errno : 0, strerror(errno));
              return 0;
            }
            """#, name: "cwd", args: [work.path], in: dir)
    }

    @Test func processGroupsSessionsAndPriorities() throws {
        let out = try Harness.matchesNative(#"""
            #define _GNU_SOURCE
            #include <errno.h>
            #include <signal.h>
            #include <stdio.h>
            #include <string.h>
            #include <sys/resource.h>
            #include <sys/wait.h>
            #include <unistd.h>
            static volatile sig_atomic_t got;
            static void on(int s) { (void)s; got++; }
            int main(void) {
              pid_t group = getpgrp(), sess = getsid(0);
              int nice0 = getpriority(PRIO_PROCESS, 0);
              int p[2]; pipe(p);
              pid_t c = fork();
              if (c == 0) {
                close(p[0]);
                setpriority(PRIO_PROCESS, 0, nice0 + 5);
                pid_t s = setsid();
                char ok = s == getpid() && getpgrp() == getpid() && getsid(0) == getpid();
                write(p[1], &ok, 1);
                errno = 0;
                char again = setsid() == -1 && errno == EPERM;
                write(p[1], &again, 1);
                pause();
                _exit(0);
              }
              close(p[1]);
              char ok = 0, again = 0; read(p[0], &ok, 1); read(p[0], &again, 1);
              printf("child setsid %d, twice EPERM %d\n", ok, again);
              printf("parent unchanged: group %d session %d nice %d\n", getpgrp() == group, getsid(0) == sess,
                     getpriority(PRIO_PROCESS, 0) == nice0);
              printf("child's nice seen %d, its group %d, its session %d\n", getpriority(PRIO_PROCESS, c) == nice0 + 5,
                     getpgid(c) == c, getsid(c) == c);
              errno = 0;
              int moved = setpgid(c, group);
              printf("move it back: %d %s\n", moved, strerror(errno));
              kill(c, SIGTERM);
              int st; waitpid(c, &st, 0);
              printf("child ended by %d\n", WTERMSIG(st));

              signal(SIGUSR1, on);
              sigset_t blk, none; sigemptyset(&blk); sigaddset(&blk, SIGUSR1); sigemptyset(&none);
              sigprocmask(SIG_BLOCK, &blk, 0);
              pid_t a = fork();
              if (a == 0) { setpgid(0, 0); sigsuspend(&none); _exit(got ? 7 : 8); }
              setpgid(a, a);
              kill(-a, SIGUSR1);
              waitpid(-a, &st, 0);
              printf("group kill reached a: %d\n", WEXITSTATUS(st));
              int r = waitpid(-a, &st, WNOHANG);
              printf("waitpid for an empty group: %d %s\n", r, strerror(errno));
              pid_t leader = fork();
              if (leader == 0) {
                setpgid(0, 0);
                pid_t b = fork();
                if (b == 0) { sigsuspend(&none); _exit(got ? 9 : 10); }
                kill(0, SIGUSR1);
                sigsuspend(&none);
                waitpid(b, &st, 0);
                _exit(WEXITSTATUS(st) * 10 + got);
              }
              waitpid(leader, &st, 0);
              printf("kill(0) reached the group's two: %d, and not me: %d\n", WEXITSTATUS(st), got);
              errno = 0;
              r = setpgid(0, 999999);
              printf("setpgid into a group that does not exist: %d %s\n", r, strerror(errno));
              return 0;
            }
            """#, name: "groups", in: dir)
        #expect(out.contains("child setsid 1, twice EPERM 1"))
        #expect(out.contains("parent unchanged: group 1 session 1 nice 1"))
        #expect(out.contains("child's nice seen 1, its group 1, its session 1"))
        #expect(out.contains("move it back: -1 Operation not permitted"))
        #expect(out.contains("group kill reached a: 7"))
        #expect(out.contains("kill(0) reached the group's two: 91, and not me: 0"))
    }
}
