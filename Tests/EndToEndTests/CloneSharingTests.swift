import Foundation
import Testing

/// What clone(CLONE_FS) and clone(CLONE_FILES) share between processes
/// (`FileSystemContext`, `SharedFileTable`), what unshare(2) takes back,
/// and the legacy getdents record: all as a native run prints them.
@Suite struct CloneSharingTests {
    let dir = Harness.temporaryDirectory()

    /// A child that shares the parent's fs context moves the parent's
    /// working directory and umask; one with a copy, or one that unshared
    /// it, does not. A child sharing the descriptor table closes and opens
    /// the parent's descriptors, and its end leaves them open.
    @Test func workingDirectoryUmaskAndDescriptorsSharedAsLinux() throws {
        let out = try Harness.matchesNative(#"""
            #define _GNU_SOURCE
            #include <dirent.h>
            #include <errno.h>
            #include <fcntl.h>
            #include <sched.h>
            #include <signal.h>
            #include <stdio.h>
            #include <string.h>
            #include <sys/stat.h>
            #include <sys/syscall.h>
            #include <sys/wait.h>
            #include <unistd.h>
            #include <stdlib.h>
            static char stack[65536] __attribute__((aligned(16)));
            static int child(void *arg) {
              const char *what = arg;
              if (strcmp(what, "chdir") == 0) { if (chdir("/tmp") != 0) return 1; umask(077); }
              if (strcmp(what, "open") == 0) { dup2(open("/dev/null", O_RDONLY), 50); close(1); }
              if (strcmp(what, "unshare") == 0) {
                if (syscall(SYS_unshare, CLONE_FS) != 0) return 2;
                if (chdir("/tmp") != 0) return 1;
                umask(070);
              }
              return 0;
            }
            static void run(int flags, const char *what) {
              if (chdir("/") != 0) return;
              umask(022);
              int tmp = dup(1);
              pid_t pid = clone(child, stack + sizeof stack, flags | SIGCHLD, (void *)what);
              int st = 0;
              waitpid(pid, &st, 0);
              char cwd[256] = "";
              if (!getcwd(cwd, sizeof cwd)) strcpy(cwd, strerror(errno));
              mode_t m = umask(022);
              int fd1 = fcntl(1, F_GETFD) >= 0;
              if (!fd1) { dup2(tmp, 1); }
              close(tmp);
              printf("%-30s %-8s status %d cwd %s umask %03o stdout %s child's fd %s\n",
                     flags & CLONE_FS && flags & CLONE_FILES ? "CLONE_FS|CLONE_FILES" : flags & CLONE_FS ? "CLONE_FS" : flags & CLONE_FILES ? "CLONE_FILES" : "none",
                     what, WEXITSTATUS(st), cwd, m, fd1 ? "open" : "closed",
                     fcntl(50, F_GETFD) >= 0 ? "open" : "closed");
              fflush(stdout);
              close(50);
            }
            int main(void) {
              run(0, "chdir");
              run(CLONE_FS, "chdir");
              run(CLONE_FS, "unshare");
              run(0, "open");
              run(CLONE_FILES, "open");
              run(CLONE_VM | CLONE_FS | CLONE_FILES, "chdir");
              run(CLONE_VM | CLONE_FS | CLONE_FILES, "open");
              /* unshare's checks in a single-threaded process */
              long none = syscall(SYS_unshare, 0), own = syscall(SYS_unshare, CLONE_VM | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM);
              long files = syscall(SYS_unshare, CLONE_FILES), bad = syscall(SYS_unshare, CLONE_SETTLS);
              printf("unshare: none %ld, VM|SIGHAND|THREAD|SYSVSEM %ld, FILES %ld, SETTLS %ld %s\n", none, own, files, bad, strerrorname_np(errno));
              /* getdents (the legacy record) of /proc/self/task: ".", "..", the one thread */
              int d = open("/proc/self/task", O_RDONLY | O_DIRECTORY);
              char buf[4096];
              long n = syscall(SYS_getdents, d, buf, sizeof buf);
              int entries = 0, self = 0, dirs = 0;
              for (long off = 0; off < n;) {
                unsigned short len = *(unsigned short *)(buf + off + 16);
                const char *name = buf + off + 18;
                if (buf[off + len - 1] == DT_DIR) dirs++;
                if (atoi(name) == getpid()) self++;
                entries++;
                off += len;
              }
              printf("getdents: %d entries, %d directories, %d named by the pid\n", entries, dirs, self);
              return 0;
            }
            """#, name: "clonesharing", in: dir)
        #expect(out.contains("CLONE_FS                       chdir    status 0 cwd /tmp umask 077 stdout open child's fd closed"), "\(out)")
        #expect(out.contains("CLONE_FILES                    open     status 0 cwd / umask 022 stdout closed child's fd open"))
        #expect(out.contains("none                           open     status 0 cwd / umask 022 stdout open child's fd closed"))
        #expect(out.contains("CLONE_FS                       unshare  status 0 cwd / umask 022"))
        #expect(out.contains("unshare: none 0, VM|SIGHAND|THREAD|SYSVSEM 0, FILES 0, SETTLS -1 EINVAL"))
        #expect(out.contains("getdents: 3 entries, 3 directories, 1 named by the pid"))
    }
}
