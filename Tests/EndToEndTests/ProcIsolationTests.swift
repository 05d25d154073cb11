import Foundation
import Testing

/// /proc is the guest's: every spelling of its own /proc entries describes
/// the guest, and none reaches detrec's (its descriptors, its memory, its
/// threads). Each check prints what Linux gives a native run.
@Suite struct ProcIsolationTests {
    let dir = Harness.temporaryDirectory()

    static let source = #"""
        #define _GNU_SOURCE
        #include <dirent.h>
        #include <errno.h>
        #include <fcntl.h>
        #include <stdio.h>
        #include <stdlib.h>
        #include <string.h>
        #include <sys/stat.h>
        #include <unistd.h>

        static const char secret[] = "guest-secret-string";
        static char target[] = "aaaa";

        static void comm(const char *label, int dirfd, const char *path) {
          int fd = openat(dirfd, path, O_RDONLY);
          char buf[64] = {0};
          if (fd < 0) { printf("%s: errno %d\n", label, errno); return; }
          ssize_t n = read(fd, buf, sizeof buf - 1);
          close(fd);
          if (n > 0 && buf[n - 1] == '\n') buf[n - 1] = 0;
          printf("%s: %s\n", label, buf);
        }

        static void names(const char *path) {
          DIR *d = opendir(path);
          if (!d) { printf("list %s: errno %d\n", path, errno); return; }
          struct dirent *e; char out[256] = {0}; int n = 0, again = 0;
          while ((e = readdir(d))) if (e->d_name[0] != '.') { n++; if (strlen(out) < 200) { strcat(out, e->d_name); strcat(out, " "); } }
          rewinddir(d);
          while ((e = readdir(d))) if (e->d_name[0] != '.') again++;
          closedir(d);
          printf("list %s: %d rewound %d\n", path, n, again);
          if (strstr(path, "fd")) printf("  %s\n", out);
        }

        int main(int argc, char **argv) {
          char path[128];
          int pid = getpid();
          comm("self", AT_FDCWD, "/proc/self/comm");
          comm("dot", AT_FDCWD, "/proc/./self/comm");
          comm("slashes", AT_FDCWD, "//proc//self///comm");
          comm("dotdot", AT_FDCWD, "/proc/self/../self/comm");
          comm("thread-self", AT_FDCWD, "/proc/thread-self/comm");
          snprintf(path, sizeof path, "/proc/%d/comm", pid); comm("pid", AT_FDCWD, path);
          snprintf(path, sizeof path, "/proc/%d/task/%d/comm", pid, pid); comm("task", AT_FDCWD, path);
          comm("root", AT_FDCWD, "/proc/self/root/proc/self/comm");
          symlink("/proc/self/comm", "link-comm"); comm("symlink", AT_FDCWD, "link-comm"); unlink("link-comm");
          symlink("/proc", "link-proc"); comm("symlink-dir", AT_FDCWD, "link-proc/self/comm"); unlink("link-proc");
          int self = open("/proc/self", O_RDONLY | O_DIRECTORY), proc = open("/proc", O_RDONLY | O_DIRECTORY);
          comm("openat-self", self, "comm");
          comm("openat-proc", proc, "self/comm");
          comm("openat-dotdot", self, "../self/task/../comm");
          close(self); close(proc);
          for (int fd = 3; fd < 10; fd++) {
            snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
            int r = open(path, O_RDONLY); int e = errno;
            char link[64]; ssize_t n = readlink(path, link, sizeof link);
            printf("fd %d: open %d errno %d readlink %zd\n", fd, r, e, n);
          }
          int r = open("/dev/fd/6", O_RDONLY); printf("dev-fd: %d errno %d\n", r, errno);
          r = open("/proc/self/fdinfo/5", O_RDONLY); printf("fdinfo 5: %d errno %d\n", r, errno);
          names("/proc/self/fd");
          names("/proc/./self/fdinfo");
          names("/proc/self/task");
          /* detrec's threads are not the guest's: no pid near ours names a
             thread of our process that the process does not have */
          int detrec = 0;
          for (int k = 1; k < 64; k++) {
            snprintf(path, sizeof path, "/proc/%d/status", pid + k);
            FILE *f = fopen(path, "r"); if (!f) continue;
            char line[128]; int tgid = 0;
            while (fgets(line, sizeof line, f)) sscanf(line, "Tgid: %d", &tgid);
            fclose(f);
            if (tgid == pid) detrec = 1;
            snprintf(path, sizeof path, "/proc/%d/task/%d/comm", pid, pid + k);
            if (access(path, F_OK) == 0) detrec = 1;
          }
          printf("detrec visible: %d\n", detrec);
          FILE *st = fopen("/proc/self/stat", "r"); int spid = 0; char name[32] = {0};
          if (st) { fscanf(st, "%d (%31[^)])", &spid, name); fclose(st); }
          printf("stat pid %d name %s\n", spid == pid, name);
          FILE *s = fopen("/proc/self/status", "r"); char line[256]; int tgid = 0, spid2 = 0;
          while (s && fgets(line, sizeof line, s)) { sscanf(line, "Tgid: %d", &tgid); sscanf(line, "Pid: %d", &spid2); }
          if (s) fclose(s);
          printf("status tgid %d pid %d\n", tgid == pid, spid2 == pid);
          FILE *m = fopen("/proc/self/maps", "r"); int foreign = 0;
          while (m && fgets(line, sizeof line, m)) if (strstr(line, "[detrec]")) foreign = 1;
          if (m) fclose(m);
          printf("maps foreign %d\n", foreign);
          char cwd[512] = {0}, lcwd[512] = {0}; getcwd(cwd, sizeof cwd); readlink("/proc/self/cwd", lcwd, sizeof lcwd - 1);
          printf("cwd matches %d\n", strcmp(cwd, lcwd) == 0);
          char exe[512] = {0}; readlink("/proc/self/exe", exe, sizeof exe - 1);
          printf("exe matches %d\n", strcmp(exe, argv[1]) == 0);
          struct stat sb; r = stat("/proc/self/fd/1", &sb); printf("stat fd1 %d\n", r);
          r = stat("/proc/self/fd/7", &sb); printf("stat fd7 %d errno %d\n", r, errno);
          int mem = open("/proc/self/mem", O_RDWR);
          char got[32] = {0};
          printf("mem read %zd %s\n", pread(mem, got, 19, (off_t)(unsigned long)secret), got);
          printf("mem write %zd %s\n", pwrite(mem, "bbbb", 4, (off_t)(unsigned long)target), target);
          printf("mem write rodata %zd %c\n", pwrite(mem, "G", 1, (off_t)(unsigned long)secret), secret[0]);
          ssize_t n = pread(mem, got, 4, 0x1000); printf("mem unmapped %zd errno %d\n", n, errno);
          n = pread(mem, got, 4, 0x7fffffff0000); printf("mem detrec area %zd errno %d\n", n, errno);
          n = pwrite(mem, got, 4, 0x7fffffff1000); printf("mem detrec area write %zd errno %d\n", n, errno);
          printf("mem seek %d\n", lseek(mem, (off_t)(unsigned long)target, SEEK_SET) == (off_t)(unsigned long)target);
          memset(got, 0, sizeof got); printf("mem sequential %zd %s\n", read(mem, got, 4), got);
          close(mem);
          return 0;
        }
        """#

    @Test func everySpellingOfProcSelfIsTheGuests() throws {
        let exe = try Harness.compile(ProcIsolationTests.source, name: "procwall", in: dir)
        let real = URL(fileURLWithPath: exe).resolvingSymlinksInPath().path
        let native = try Harness.run([exe, real])
        let (rec, _) = try Harness.roundTrip([exe, real], in: dir)
        #expect(rec.stdout == native.stdout)
        #expect(rec.stdout.contains("mem read 19 guest-secret-string"))
        #expect(rec.stdout.contains("mem detrec area -1 errno 5"))
        #expect(rec.stdout.contains("detrec visible: 0"))
        #expect(rec.stdout.contains("fd 6: open -1 errno 2 readlink -1"))
    }

    @Test func threadsHaveTheirOwnTaskDirectories() throws {
        let exe = try Harness.compile(#"""
            #define _GNU_SOURCE
            #include <dirent.h>
            #include <pthread.h>
            #include <stdio.h>
            #include <string.h>
            #include <unistd.h>
            static int tasks(void) {
              DIR *d = opendir("/proc/self/task"); struct dirent *e; int n = 0;
              while ((e = readdir(d))) if (e->d_name[0] != '.') n++;
              closedir(d); return n;
            }
            static int statpid(const char *path) {
              FILE *f = fopen(path, "r"); int pid = -1; if (f) { fscanf(f, "%d", &pid); fclose(f); } return pid;
            }
            static void *body(void *arg) {
              (void)arg;
              char path[64]; snprintf(path, sizeof path, "/proc/self/task/%d/stat", gettid());
              printf("thread: thread-self %d task %d tasks %d\n", statpid("/proc/thread-self/stat") == gettid(),
                     statpid(path) == gettid(), tasks());
              return 0;
            }
            int main(void) {
              pthread_t t; pthread_create(&t, 0, body, 0); pthread_join(t, 0);
              printf("main: self %d tasks %d\n", statpid("/proc/self/stat") == getpid(), tasks());
              return 0;
            }
            """#, name: "proctasks", in: dir)
        let native = try Harness.run([exe])
        let (rec, _) = try Harness.roundTrip([exe], in: dir)
        #expect(rec.stdout == native.stdout)
        #expect(rec.stdout == "thread: thread-self 1 task 1 tasks 2\nmain: self 1 tasks 1\n")
    }

    @Test func pythonListsItsOwnDescriptors() throws {
        let program = ["/usr/bin/python3", "-c", "import os; print(sorted(os.listdir('/proc/self/fd'), key=int))"]
        let native = try Harness.run(program)
        let (rec, _) = try Harness.roundTrip(program, in: dir)
        #expect(rec.stdout == native.stdout)
        #expect(rec.stdout == "['0', '1', '2', '3']\n")
    }

    /// status, stat, statm and comm describe the emulated process: its
    /// umask, names (PR_SET_NAME, and a comm write naming another thread,
    /// as pthread_setname_np does), session, group, nice value and memory.
    @Test func statusStatAndCommAreTheProcesss() throws {
        let exe = try Harness.compile(#"""
            #define _GNU_SOURCE
            #include <pthread.h>
            #include <stdio.h>
            #include <stdlib.h>
            #include <string.h>
            #include <sys/prctl.h>
            #include <sys/stat.h>
            #include <sys/wait.h>
            #include <unistd.h>
            static char *field(const char *path, const char *key, char *out, size_t n) {
              FILE *f = fopen(path, "r"); char line[512]; out[0] = 0;
              while (f && fgets(line, sizeof line, f)) if (!strncmp(line, key, strlen(key))) { snprintf(out, n, "%s", line + strlen(key)); out[strcspn(out, "\n")] = 0; break; }
              if (f) fclose(f); return out;
            }
            static long statfield(const char *path, int k) {
              FILE *f = fopen(path, "r"); char buf[2048] = {0}; if (!f) return -1; fread(buf, 1, sizeof buf - 1, f); fclose(f);
              char *p = strrchr(buf, ')') + 2; for (int i = 3; i < k; i++) p = strchr(p, ' ') + 1; return atol(p);
            }
            static pthread_barrier_t b;
            static void *body(void *a) { (void)a; pthread_barrier_wait(&b); pthread_barrier_wait(&b); return 0; }
            int main(void) {
              char v[256], path[128];
              umask(027);
              printf("umask %s\n", field("/proc/self/status", "Umask:\t", v, sizeof v));
              prctl(PR_SET_NAME, "renamed");
              printf("name %s\n", field("/proc/self/status", "Name:\t", v, sizeof v));
              FILE *c = fopen("/proc/self/comm", "r"); fgets(v, sizeof v, c); fclose(c); printf("comm %s", v);
              pthread_barrier_init(&b, 0, 2);
              pthread_t t; pthread_create(&t, 0, body, 0); pthread_barrier_wait(&b);
              printf("setname %d\n", pthread_setname_np(t, "worker-1"));
              char n[32]; pthread_getname_np(t, n, sizeof n); printf("getname %s\n", n);
              pthread_barrier_wait(&b); pthread_join(t, 0);
              char *heap = malloc(64 << 20); memset(heap, 1, 64 << 20);
              long rss = statfield("/proc/self/stat", 24);
              printf("rss>=64MiB %d\n", rss * 4096 >= (64 << 20));
              FILE *m = fopen("/proc/self/statm", "r"); long size, res; fscanf(m, "%ld %ld", &size, &res); fclose(m);
              printf("statm resident>=16384 %d size>=res %d\n", res >= 16384, size >= res);
              printf("VmRSS present %d\n", field("/proc/self/status", "VmRSS:", v, sizeof v)[0] != 0);
              printf("starttime>0 %d\n", statfield("/proc/self/stat", 22) > 0);
              fflush(stdout); pid_t child = fork();
              if (child == 0) {
                setsid();
                printf("child sid==pid %d pgrp==pid %d\n", statfield("/proc/self/stat", 6) == getpid(), statfield("/proc/self/stat", 5) == getpid());
                snprintf(path, sizeof path, "/proc/%d/status", getpid());
                printf("child NSsid %d\n", atoi(field(path, "NSsid:\t", v, sizeof v)) == getpid());
                fflush(stdout); _exit(0);
              }
              waitpid(child, 0, 0);
              printf("nice %ld\n", (nice(5), statfield("/proc/self/stat", 19)));
              return 0;
            }
            """#, name: "procfigures", flags: ["-pthread"], in: dir)
        let native = try Harness.run([exe])
        let (rec, _) = try Harness.roundTrip([exe], in: dir)
        #expect(rec.stdout == native.stdout)
        #expect(rec.stdout == """
            umask 0027
            name renamed
            comm renamed
            setname 0
            getname worker-1
            rss>=64MiB 1
            statm resident>=16384 1 size>=res 1
            VmRSS present 1
            starttime>0 1
            child sid==pid 1 pgrp==pid 1
            child NSsid 1
            nice 5

            """)
    }
}
