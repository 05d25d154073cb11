import Foundation
import Testing

/// getrusage, times and wait4's rusage per recorded process and thread:
/// CPU time is measured on detrec's host thread while each guest thread
/// runs, and reaches the guest through the trace (replay reads no clock).
@Suite(.serialized) struct ResourceUsageTests {
    let dir = Harness.temporaryDirectory()

    @Test func childrenThreadsAndTheProcessHaveTheirOwnCPUTime() throws {
        let out = try Harness.matchesNative(#"""
            #define _GNU_SOURCE
            #include <pthread.h>
            #include <stdio.h>
            #include <unistd.h>
            #include <sys/resource.h>
            #include <sys/times.h>
            #include <sys/wait.h>
            static long long ns(struct rusage *r) {
              return (r->ru_utime.tv_sec + r->ru_stime.tv_sec) * 1000000000LL + (r->ru_utime.tv_usec + r->ru_stime.tv_usec) * 1000LL;
            }
            /* Works until `who` has used `ms` of CPU time; returns what it had then. */
            static volatile unsigned long sink;
            static long long burn(int who, long long ms) {
              struct rusage r;
              for (;;) {
                for (int i = 0; i < 200000; i++) sink += i * 7;
                getrusage(who, &r);
                if (ns(&r) >= ms * 1000000) return ns(&r);
              }
            }
            static long long threadUsed;
            static void *worker(void *a) { threadUsed = burn(RUSAGE_THREAD, 100); return a; }
            int main(void) {
              struct rusage r;
              getrusage(RUSAGE_CHILDREN, &r);
              printf("children before any: %lld\n", ns(&r));
              int p[2]; pipe(p);
              pid_t c = fork();
              if (c == 0) { long long used = burn(RUSAGE_SELF, 200); write(p[1], &used, sizeof used); _exit(0); }
              long long childUsed = 0; read(p[0], &childUsed, sizeof childUsed);
              struct rusage w; int st;
              wait4(c, &st, 0, &w);
              printf("child used >= 200 ms: %d\n", childUsed >= 200000000LL);
              printf("wait4's rusage covers it: %d\n", ns(&w) >= childUsed);
              getrusage(RUSAGE_CHILDREN, &r);
              printf("RUSAGE_CHILDREN covers it: %d, within 20 ms of wait4's: %d\n", ns(&r) >= childUsed, ns(&r) - ns(&w) < 20000000LL && ns(&w) - ns(&r) < 20000000LL);
              struct tms t; times(&t);
              printf("times: children >= 19 ticks: %d\n", t.tms_cutime + t.tms_cstime >= 19);
              struct rusage self; getrusage(RUSAGE_SELF, &self);
              printf("own time below the child's: %d\n", ns(&self) < childUsed);
              pthread_t th; pthread_create(&th, 0, worker, 0); pthread_join(th, 0);
              struct rusage mine; getrusage(RUSAGE_THREAD, &mine); getrusage(RUSAGE_SELF, &self);
              printf("thread used >= 100 ms: %d; the process has it, the main thread not: %d %d\n", threadUsed >= 100000000LL,
                     ns(&self) >= threadUsed, ns(&mine) < threadUsed);
              printf("maxrss set: %d\n", self.ru_maxrss > 0 && w.ru_maxrss > 0);
              return 0;
            }
            """#, name: "rusage", flags: ["-static", "-pthread"], in: dir)
        #expect(out == """
            children before any: 0
            child used >= 200 ms: 1
            wait4's rusage covers it: 1
            RUSAGE_CHILDREN covers it: 1, within 20 ms of wait4's: 1
            times: children >= 19 ticks: 1
            own time below the child's: 1
            thread used >= 100 ms: 1; the process has it, the main thread not: 1 1
            maxrss set: 1

            """)
    }

    /// CLOCK_PROCESS_CPUTIME_ID, CLOCK_THREAD_CPUTIME_ID, a thread's and a
    /// child's clock ids, and /proc/PID/stat's utime and stime read the time
    /// charged to each recorded process and thread. Before, every one was
    /// detrec's own (the main thread's clock counted the worker's time, the
    /// parent's the child's) and stat's times were zeros.
    @Test func cpuClocksAndProcStatAreEachProcessAndThreadsOwn() throws {
        let out = try Harness.matchesNative(#"""
            #define _GNU_SOURCE
            #include <pthread.h>
            #include <stdio.h>
            #include <time.h>
            #include <unistd.h>
            #include <signal.h>
            #include <sys/wait.h>
            static long long ns(clockid_t c) {
              struct timespec t;
              if (clock_gettime(c, &t) != 0) return -1;
              return t.tv_sec * 1000000000LL + t.tv_nsec;
            }
            static volatile unsigned long sink;
            /* Works until clock `c` has counted `ms`; returns what it read then. */
            static long long burn(clockid_t c, long long ms) {
              for (;;) {
                for (int i = 0; i < 200000; i++) sink += i * 7;
                long long t = ns(c);
                if (t < 0 || t >= ms * 1000000) return t;
              }
            }
            /* utime + stime of a /proc stat file, in ticks. */
            static long ticks(const char *path) {
              FILE *f = fopen(path, "r");
              if (!f) return -1;
              char buf[1024]; size_t n = fread(buf, 1, sizeof buf - 1, f); fclose(f); buf[n] = 0;
              char *p = buf; for (char *q = buf; *q; q++) if (*q == ')') p = q + 2;
              unsigned long v[2] = {0, 0};
              sscanf(p, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &v[0], &v[1]);
              return (long)(v[0] + v[1]);
            }
            static long long workerUsed;
            static pid_t workerTid;
            static void *worker(void *a) {
              workerTid = gettid();
              workerUsed = burn(CLOCK_THREAD_CPUTIME_ID, 150);
              return a;
            }
            int main(void) {
              pthread_t th; pthread_create(&th, 0, worker, 0); pthread_join(th, 0);
              long long mine = ns(CLOCK_THREAD_CPUTIME_ID), process = ns(CLOCK_PROCESS_CPUTIME_ID);
              printf("worker counted 150 ms: %d\n", workerUsed >= 150000000LL);
              printf("the main thread's clock has less: %d\n", mine < workerUsed);
              printf("the process's has it: %d\n", process >= workerUsed);
              char path[64];
              snprintf(path, sizeof path, "/proc/%d/stat", getpid());
              printf("stat's utime+stime has it: %d\n", ticks(path) >= 14);
              int p[2]; pipe(p);
              pid_t c = fork();
              if (c == 0) { long long used = burn(CLOCK_PROCESS_CPUTIME_ID, 300); write(p[1], &used, sizeof used); pause(); _exit(0); }
              long long childUsed = 0; read(p[0], &childUsed, sizeof childUsed);
              clockid_t cc; clock_getcpuclockid(c, &cc);
              printf("the child's clock id has its time: %d\n", ns(cc) >= childUsed);
              snprintf(path, sizeof path, "/proc/%d/stat", c);
              printf("and its stat: %d\n", ticks(path) >= 29);
              printf("the parent's process clock has less: %d\n", ns(CLOCK_PROCESS_CPUTIME_ID) < childUsed);
              kill(c, SIGKILL); waitpid(c, 0, 0);
              return 0;
            }
            """#, name: "cpuclocks", flags: ["-static", "-pthread"], in: dir)
        #expect(out == """
            worker counted 150 ms: 1
            the main thread's clock has less: 1
            the process's has it: 1
            stat's utime+stime has it: 1
            the child's clock id has its time: 1
            and its stat: 1
            the parent's process clock has less: 1

            """)
    }
}
