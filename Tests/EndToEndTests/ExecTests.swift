import Foundation
import Testing

/// execve as Linux does it: handled signals back to the default, ignored
/// ones and the mask kept, close-on-exec descriptors closed, and the new
/// program found where the guest means (/proc/self/exe is the guest's
/// program, fexecve runs the file behind a descriptor).
@Suite(.serialized) struct ExecTests {
    let dir = Harness.temporaryDirectory()

    @Test func execResetsHandlersKeepsIgnoredAndMaskClosesCloexec() throws {
        let out = try Harness.matchesNative(#"""
            #define _GNU_SOURCE
            #include <fcntl.h>
            #include <signal.h>
            #include <stdio.h>
            #include <stdlib.h>
            #include <string.h>
            #include <unistd.h>
            static void on(int s) { (void)s; }
            int main(int argc, char **argv) {
              if (argc > 1) {
                struct sigaction a; sigset_t m; sigprocmask(SIG_SETMASK, 0, &m);
                sigaction(SIGINT, 0, &a); int intDefault = a.sa_handler == SIG_DFL;
                sigaction(SIGUSR2, 0, &a); int usr2Ignored = a.sa_handler == SIG_IGN;
                sigaction(SIGTERM, 0, &a); int termDefault = a.sa_handler == SIG_DFL && a.sa_flags == 0;
                printf("after exec: INT default %d, USR2 ignored %d, TERM default %d, USR1 blocked %d, "
                       "fd 5 open %d, fd 6 open %d, pending USR1 %d\n",
                       intDefault, usr2Ignored, termDefault, sigismember(&m, SIGUSR1),
                       fcntl(5, F_GETFD) >= 0, fcntl(6, F_GETFD) >= 0, ({ sigset_t p; sigpending(&p); sigismember(&p, SIGUSR1); }));
                return 0;
              }
              signal(SIGINT, on);
              struct sigaction a; memset(&a, 0, sizeof a); a.sa_handler = on; a.sa_flags = SA_RESTART | SA_ONSTACK; sigaction(SIGTERM, &a, 0);
              signal(SIGUSR2, SIG_IGN);
              sigset_t m; sigemptyset(&m); sigaddset(&m, SIGUSR1); sigprocmask(SIG_BLOCK, &m, 0);
              raise(SIGUSR1);
              int fd = open("/dev/null", O_RDONLY);
              dup2(fd, 5);
              dup3(fd, 6, O_CLOEXEC);
              fflush(stdout);
              execl("/proc/self/exe", argv[0], "child", (char *)0);
              perror("exec");
              return 1;
            }
            """#, name: "execsig", in: dir)
        #expect(out == "after exec: INT default 1, USR2 ignored 1, TERM default 1, USR1 blocked 1, fd 5 open 1, fd 6 open 0, pending USR1 1\n")
    }

    /// What an exec loads is stored once per content and compressed
    /// (docs/trace-format.md, stored files): a static program that execs
    /// itself costs about half its size, and replays as it ran natively.
    @Test func execLoadedFilesAreStoredCompressed() throws {
        let s = Scratch("execstore"); defer { s.remove() }
        let exe = try compile(#"""
            #include <stdio.h>
            #include <unistd.h>
            int main(int argc, char **argv) {
              if (argc > 1) { printf("after exec: %s\n", argv[1]); return 7; }
              printf("before exec\n");
              fflush(stdout);
              execl("/proc/self/exe", argv[0], "child", (char *)0);
              perror("exec");
              return 1;
            }
            """#)
        let native = try run([exe], in: s.path)
        #expect(native.stdout == "before exec\nafter exec: child\n" && native.status == 7, "\(native)")
        let r = try recordAndReplay(exe, replays: 1, in: s)
        #expect(r.record.stdout == native.stdout && r.record.status == native.status, "native: \(native)\nrecorded: \(r.record)")
        var st = stat()
        #expect(stat(exe, &st) == 0)
        let stored = SparseMappingTests.bytesUnder(r.trace + "/files")
        // Uncompressed, files/ held the program whole (and it is loaded twice).
        #expect(stored > 0 && stored < UInt64(st.st_size) * 2 / 3, "files/ holds \(stored) bytes for a \(st.st_size)-byte program")
    }

    /// Exec reads a file again when it changed, however soon after the last
    /// exec of it (the recording keeps exec'd files by host identity).
    @Test func execLoadsAFileRewrittenInPlace() throws {
        let out = try Harness.matchesNative(#"""
            #include <fcntl.h>
            #include <stdio.h>
            #include <string.h>
            #include <sys/wait.h>
            #include <unistd.h>
            static void put(const char *text) {
              int fd = open("rewritten.sh", O_WRONLY | O_CREAT | O_TRUNC, 0755);
              write(fd, text, strlen(text));
              close(fd);
            }
            static void run(void) {
              fflush(stdout);
              pid_t c = fork();
              if (c == 0) { execl("./rewritten.sh", "rewritten.sh", (char *)0); _exit(127); }
              int st; waitpid(c, &st, 0);
              printf("status %d\n", WEXITSTATUS(st));
            }
            int main(void) {
              put("#!/bin/sh\nexit 3\n");
              run(); run();
              put("#!/bin/sh\nexit 4\n");
              run(); run();
              unlink("rewritten.sh");
              return 0;
            }
            """#, name: "execrewrite", in: dir)
        #expect(out == "status 3\nstatus 3\nstatus 4\nstatus 4\n")
    }

    /// /proc/self/exe names the file the exec opened, links resolved (as
    /// Linux's d_path), in the new program and in its fork children; the
    /// task's name stays the last part of the path it was exec'd by.
    @Test func procSelfExeNamesTheFileTheExecOpened() throws {
        let out = try Harness.matchesNative(#"""
            #include <limits.h>
            #include <stdio.h>
            #include <stdlib.h>
            #include <string.h>
            #include <sys/wait.h>
            #include <unistd.h>
            static void show(const char *who, const char *real) {
              char buf[PATH_MAX]; ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
              buf[n < 0 ? 0 : n] = 0;
              char comm[32] = {0}; FILE *f = fopen("/proc/self/comm", "r");
              if (f) { fgets(comm, sizeof comm, f); fclose(f); }
              printf("%s: %s, comm %s", who, strcmp(buf, real) == 0 ? "the file itself" : buf, comm);
              fflush(stdout);
            }
            int main(int argc, char **argv) {
              if (argc > 3) {
                show(argv[2], argv[3]);
                if (fork() == 0) { show("its child", argv[3]); _exit(0); }
                wait(0);
                return 0;
              }
              char real[PATH_MAX], link[PATH_MAX + 16];
              if (!realpath("/proc/self/exe", real)) return 2;
              snprintf(link, sizeof link, "%s/exe-link", argv[1]);
              unlink(link);
              if (symlink(real, link)) return 3;
              if (fork() == 0) { execl(link, "exe-link", "x", "through a link", real, (char *)0); _exit(127); }
              wait(0);
              if (fork() == 0) { execl("/proc/self/exe", "again", "x", "through /proc/self/exe", real, (char *)0); _exit(127); }
              wait(0);
              return 0;
            }
            """#, name: "exelink", args: [dir.path], in: dir)
        #expect(out == """
            through a link: the file itself, comm exe-link
            its child: the file itself, comm exe-link
            through /proc/self/exe: the file itself, comm exe
            its child: the file itself, comm exe

            """)
    }

    @Test func fexecveAndExecveatRunTheGuestsFile() throws {
        let out = try Harness.matchesNative(#"""
            #define _GNU_SOURCE
            #include <fcntl.h>
            #include <stdio.h>
            #include <string.h>
            #include <sys/syscall.h>
            #include <sys/wait.h>
            #include <unistd.h>
            extern char **environ;
            int main(int argc, char **argv) {
              if (argc > 1) { printf("ran as %s: %s\n", argv[1], strncmp(argv[0], "/", 1) == 0 ? "absolute" : argv[0]); return 0; }
              int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
              int st;
              if (fork() == 0) { char *a[] = {"fexecve", "fexecve", 0}; fexecve(fd, a, environ); _exit(127); }
              wait(&st);
              if (fork() == 0) {
                char *a[] = {"execveat", "execveat", 0};
                syscall(SYS_execveat, fd, "", a, environ, AT_EMPTY_PATH);
                _exit(127);
              }
              wait(&st);
              int dfd = open("/bin", O_RDONLY | O_DIRECTORY);
              if (fork() == 0) {
                char *a[] = {"echo", "relative to a directory", 0};
                syscall(SYS_execveat, dfd, "echo", a, environ, 0);
                _exit(127);
              }
              wait(&st);
              char *a[] = {"x", 0};
              long r = syscall(SYS_execveat, dfd, "echo", a, environ, 0x4);
              printf("bad flags: %ld\n", r);
              return 0;
            }
            """#, name: "fexec", in: dir)
        #expect(out == "ran as fexecve: fexecve\nran as execveat: execveat\nrelative to a directory\nbad flags: -1\n")
    }

    /// argv and envp are bytes, not UTF-8 text: a value with \xff reaches
    /// the new program (its environment, arguments, /proc/self/environ and
    /// cmdline) unchanged. Before, detrec decoded them as UTF-8 and the
    /// child saw U+FFFD (CPython's test_subprocess test_undecodable_env).
    @Test func argumentsAndEnvironmentAreBytes() throws {
        let out = try Harness.matchesNative(#"""
            // execve with an environment variable and an argument that are not UTF-8;
            // the child prints them as hex, and its /proc/self/environ and cmdline.
            #include <stdio.h>
            #include <stdlib.h>
            #include <string.h>
            #include <unistd.h>
            #include <fcntl.h>
            #include <sys/wait.h>
            static void hex(const char *what, const char *s) {
                printf("%s:", what);
                for (const unsigned char *p = (const unsigned char *)s; *p; p++) printf(" %02x", *p);
                printf("\n");
            }
            static void proc(const char *file, const char *prefix) {
                char buf[65536]; int fd = open(file, O_RDONLY); ssize_t n = read(fd, buf, sizeof buf - 1); close(fd);
                for (ssize_t i = 0; i < n; i += strlen(buf + i) + 1)
                    if (strncmp(buf + i, prefix, strlen(prefix)) == 0) { hex(file, buf + i); }
            }
            int main(int argc, char **argv) {
                if (argc > 1) {
                    hex("env", getenv("test"));
                    hex("arg", argv[1]);
                    proc("/proc/self/environ", "test=");
                    proc("/proc/self/cmdline", "abc");
                    return 0;
                }
                char *args[] = {argv[0], "abc\xff\xfe", NULL};
                char *env[] = {"test=abc\xff", "X\xc3=1", NULL};
                pid_t p = fork();
                if (p == 0) { execve("/proc/self/exe", args, env); _exit(127); }
                int st; waitpid(p, &st, 0);
                printf("status %d\n", WEXITSTATUS(st));
                return 0;
            }
            """#, name: "envbytes", in: dir)
        #expect(out.contains("env: 61 62 63 ff\narg: 61 62 63 ff fe\n"))
        #expect(out.contains("/proc/self/cmdline: 61 62 63 ff fe\nstatus 0\n"))
    }

    /// The recorded command itself: detrec started with an argument and an
    /// environment variable that are not UTF-8 gives the program those
    /// bytes, in the recording and in its replay.
    @Test func recordedCommandKeepsItsBytes() throws {
        let child = try Harness.compile(#"""
            #include <stdio.h>
            #include <stdlib.h>
            static void hex(const char *what, const char *s) {
                printf("%s:", what);
                for (const unsigned char *p = (const unsigned char *)s; p && *p; p++) printf(" %02x", *p);
                printf("\n");
            }
            int main(int argc, char **argv) { hex("arg", argc > 1 ? argv[1] : 0); hex("env", getenv("test")); return 0; }
            """#, name: "bytes_child", in: dir)
        let launcher = try Harness.compile(#"""
            #include <string.h>
            #include <unistd.h>
            // argv[1]: detrec, or "-" to run the child natively; argv[2]: the trace; argv[3]: the child.
            int main(int argc, char **argv) {
                char *env[] = {"test=abc\xfe", "PATH=/usr/bin:/bin", NULL};
                if (strcmp(argv[1], "-") == 0) {
                    char *args[] = {argv[3], "x\xffy", NULL};
                    execve(argv[3], args, env);
                } else {
                    char *args[] = {argv[1], "record", "-q", "-o", argv[2], "--", argv[3], "x\xffy", NULL};
                    execve(argv[1], args, env);
                }
                return 127;
            }
            """#, name: "bytes_launcher", in: dir)
        let trace = dir.appendingPathComponent("bytes-trace")
        let native = try Harness.run([launcher, "-", trace.path, child])
        #expect(native.stdout == "arg: 78 ff 79\nenv: 61 62 63 fe\n")
        let rec = try Harness.run([launcher, Harness.detrec, trace.path, child])
        #expect(rec.stdout == native.stdout, "\(rec.stderr)")
        let rep = try Harness.replay(trace)
        #expect(rep.stdout == native.stdout, "\(rep.stderr)")
    }
}
