import Foundation
import Testing

/// /proc's own listing shows the recording's processes (their pids are the
/// recording's, not the host's), as ps, pgrep and lsof walk it to find them.
@Suite(.serialized) struct ProcListingTests {
    let dir = Harness.temporaryDirectory()

    @Test func procListsTheRecordedProcesses() throws {
        let out = try Harness.matchesNative(#"""
            #include <dirent.h>
            #include <signal.h>
            #include <stdio.h>
            #include <stdlib.h>
            #include <string.h>
            #include <unistd.h>
            #include <sys/wait.h>
            /* Whether /proc lists `name`, and how many entries of it are pids. */
            static int listed(const char *name, int *pids) {
              DIR *d = opendir("/proc"); if (!d) return -1;
              int found = 0; struct dirent *e; *pids = 0;
              while ((e = readdir(d))) {
                if (strcmp(e->d_name, name) == 0) found = e->d_type == DT_DIR || e->d_type == DT_LNK || e->d_type == DT_REG ? 1 : 2;
                if (e->d_name[0] >= '1' && e->d_name[0] <= '9') (*pids)++;
              }
              closedir(d); return found;
            }
            int main(void) {
              int p[2]; pipe(p);
              pid_t c = fork();
              if (c == 0) { char b; close(p[1]); read(p[0], &b, 1); _exit(0); }
              char me[16], child[16]; snprintf(me, sizeof me, "%d", getpid()); snprintf(child, sizeof child, "%d", c);
              int n;
              printf("/proc lists this process %d, its child %d, self %d, meminfo %d\n", listed(me, &n), listed(child, &n), listed("self", &n), listed("meminfo", &n));
              printf("pid entries >= 2: %d\n", n >= 2);
              char path[64]; snprintf(path, sizeof path, "/proc/%d/stat", c);
              FILE *f = fopen(path, "r"); char line[256] = {0}; if (f) { fgets(line, sizeof line, f); fclose(f); }
              char *s = strchr(line, ' ');
              printf("its stat: %.9s\n", s ? s + 1 : "?");
              close(p[1]); int st; waitpid(c, &st, 0);
              printf("after it ended: listed %d\n", listed(child, &n));
              return 0;
            }
            """#, name: "proclisting", in: dir)
        #expect(out == """
            /proc lists this process 1, its child 1, self 1, meminfo 1
            pid entries >= 2: 1
            its stat: (proclist
            after it ended: listed 0

            """)
    }

    /// stat (which follows) of another recorded process's cwd, exe and root
    /// links reaches their targets, as lsof's stat of them does on Linux.
    /// Before, the host was handed /proc/<the child's pid>/cwd, a pid it
    /// does not have: ENOENT (the first process's pid is detrec's own, so
    /// /proc/self hid it).
    @Test func anotherProcessesLinksLeadToTheirTargets() throws {
        let out = try Harness.matchesNative(#"""
            #define _GNU_SOURCE
            #include <errno.h>
            #include <fcntl.h>
            #include <signal.h>
            #include <stdio.h>
            #include <string.h>
            #include <sys/stat.h>
            #include <sys/wait.h>
            #include <unistd.h>
            int main(void) {
              int fds[2]; pipe(fds);
              pid_t p = fork();
              if (p == 0) { chdir("/usr"); write(fds[1], "x", 1); pause(); _exit(0); }
              char c; read(fds[0], &c, 1);
              struct stat usr; stat("/usr", &usr);
              const char *names[] = {"cwd", "exe", "root"};
              for (int i = 0; i < 3; i++) {
                char path[64]; struct stat st;
                snprintf(path, sizeof path, "/proc/%d/%s", p, names[i]);
                int r = stat(path, &st);
                printf("%s: stat %s, type %o", names[i], r ? strerror(errno) : "ok", r ? 0 : st.st_mode & S_IFMT);
                if (i == 0) printf(", /usr: %d", r == 0 && st.st_ino == usr.st_ino && st.st_dev == usr.st_dev);
                r = lstat(path, &st);
                printf("; lstat type %o\n", r ? 0 : st.st_mode & S_IFMT);
              }
              char path[64]; struct stat st;
              snprintf(path, sizeof path, "/proc/%d/cwd/bin", p);
              printf("cwd/bin: %s\n", stat(path, &st) ? strerror(errno) : "ok");
              kill(p, SIGKILL); waitpid(p, 0, 0);
              return 0;
            }
            """#, name: "otherlinks", in: dir)
        #expect(out == """
            cwd: stat ok, type 40000, /usr: 1; lstat type 120000
            exe: stat ok, type 100000; lstat type 120000
            root: stat ok, type 40000; lstat type 120000
            cwd/bin: ok

            """)
    }
}
