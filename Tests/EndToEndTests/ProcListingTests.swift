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
}
