import Foundation
import Testing

/// Syscalls with bad arguments (NULL and wild pointers, huge and negative
/// sizes, bad flags, buffers that run into a hole) return what Linux
/// returns, in record and in replay: each line of the probe is compared
/// with a native run. Calls detrec does not implement are left out (they
/// are ENOSYS, reported): prctl, eventfd2, epoll_create,
/// sched_setaffinity, clock_settime, getpriority, sched_getparam, select, pselect6.
@Suite struct BadArgumentTests {
    let dir = Harness.temporaryDirectory()

    static let source = #"""
        #define _GNU_SOURCE
        #include <errno.h>
        #include <fcntl.h>
        #include <linux/futex.h>
        #include <poll.h>
        #include <signal.h>
        #include <stdint.h>
        #include <stdio.h>
        #include <stdlib.h>
        #include <string.h>
        #include <sys/mman.h>
        #include <sys/resource.h>
        #include <sys/socket.h>
        #include <sys/stat.h>
        #include <sys/syscall.h>
        #include <sys/uio.h>
        #include <sys/time.h>
        #include <sched.h>
        #include <time.h>
        #include <unistd.h>

        #define WILD ((void *)0x10)
        static int n;
        static void show(const char *what, long r) {
          int e = errno;
          printf("%2d %-28s %ld errno %d\n", ++n, what, r < 0 ? -1L : r, r < 0 ? e : 0);
          errno = 0;
        }
        #define T(what, call) do { errno = 0; long r_ = (long)(call); show(what, r_); } while (0)

        int main(void) {
          setvbuf(stdout, NULL, _IOLBF, 0);
          int p[2]; pipe(p);
          int u[2]; socketpair(AF_UNIX, SOCK_DGRAM, 0, u);
          char buf[64]; struct stat st; struct timespec ts;
          int fd = open("/proc/self/exe", O_RDONLY);
          T("futex wake NULL", syscall(SYS_futex, NULL, FUTEX_WAKE, 1, 0, 0, 0));
          T("futex wake NULL private", syscall(SYS_futex, NULL, FUTEX_WAKE_PRIVATE, 1, 0, 0, 0));
          T("futex wake wild", syscall(SYS_futex, WILD, FUTEX_WAKE, 1, 0, 0, 0));
          T("futex wake unaligned", syscall(SYS_futex, buf + 1, FUTEX_WAKE_PRIVATE, 1, 0, 0, 0));
          T("futex wait NULL", syscall(SYS_futex, NULL, FUTEX_WAIT_PRIVATE, 0, 0, 0, 0));
          T("futex bad op", syscall(SYS_futex, buf, 99, 0, 0, 0, 0));
          T("getrlimit NULL", syscall(SYS_getrlimit, RLIMIT_NOFILE, NULL));
          T("setrlimit NULL", syscall(SYS_setrlimit, RLIMIT_NOFILE, NULL));
          T("getrlimit bad resource", syscall(SYS_getrlimit, 999, buf));
          T("prlimit NULL NULL", syscall(SYS_prlimit64, 0, RLIMIT_NOFILE, NULL, NULL));
          T("prlimit wild old", syscall(SYS_prlimit64, 0, RLIMIT_NOFILE, NULL, WILD));
          write(p[1], "0123456789", 10);
          T("read NULL", read(p[0], NULL, 10));
          T("read huge", read(p[0], buf, (size_t)1 << 40));
          write(p[1], "0123456789", 10);
          T("read size_max", syscall(SYS_read, p[0], buf, (size_t)-1));
          T("write NULL 0", write(p[1], NULL, 0));
          T("write NULL 1", write(p[1], NULL, 1));
          T("write huge", write(p[1], buf, (size_t)1 << 40));
          read(p[0], buf, sizeof buf);
          T("pread huge", pread(fd, buf, (size_t)1 << 40, 0));
          T("pread negative offset", pread(fd, buf, 4, -1));
          char *two = mmap(0, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
          munmap(two + 4096, 4096);
          T("pread across end", pread(fd, two + 4090, 20, 0));
          T("mprotect hole", mprotect(two, 8192, PROT_READ));
          T("mprotect applied", (long)(mprotect(two, 4096, PROT_READ | PROT_WRITE) == 0));
          T("mprotect huge len", mprotect(two, (size_t)-1, PROT_READ));
          T("mprotect bad prot", mprotect(two, 4096, 0x40));
          T("mprotect unaligned", mprotect(two + 1, 4096, PROT_READ));
          T("madvise bad advice", madvise(two, 4096, 999));
          T("madvise hole", madvise(two, 8192, MADV_DONTNEED));
          T("munmap zero", munmap(two, 0));
          T("mmap zero", (long)mmap(0, 0, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
          T("mmap no type", (long)mmap(0, 4096, PROT_READ, MAP_ANONYMOUS, -1, 0));
          T("mmap bad fd", (long)mmap(0, 4096, PROT_READ, MAP_PRIVATE, -1, 0));
          T("mmap huge", (long)mmap(0, (size_t)1 << 62, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) > 0);
          T("mremap bad flags", (long)mremap(two, 4096, 4096, 99));
          T("clock_gettime NULL", syscall(SYS_clock_gettime, CLOCK_REALTIME, NULL));
          T("clock_gettime bad clock", syscall(SYS_clock_gettime, 99, &ts));
          T("clock_getres NULL", syscall(SYS_clock_getres, CLOCK_MONOTONIC, NULL));
          T("gettimeofday NULL", syscall(SYS_gettimeofday, NULL, NULL));
          T("uname NULL", syscall(SYS_uname, NULL));
          T("getcwd NULL", syscall(SYS_getcwd, NULL, 100));
          T("getcwd small", syscall(SYS_getcwd, buf, 1));
          T("pipe NULL", syscall(SYS_pipe, NULL));
          T("pipe2 bad flags", syscall(SYS_pipe2, buf, 0xffff));
          T("open NULL", syscall(SYS_open, NULL, O_RDONLY));
          T("open empty", syscall(SYS_open, "", O_RDONLY));
          T("stat NULL buf", syscall(SYS_stat, "/", NULL));
          T("fstat bad fd", syscall(SYS_fstat, -1, &st));
          T("fstat NULL", syscall(SYS_fstat, 1, NULL));
          T("rt_sigaction KILL", syscall(SYS_rt_sigaction, SIGKILL, buf, NULL, 8));
          T("rt_sigaction 65", syscall(SYS_rt_sigaction, 65, NULL, NULL, 8));
          T("rt_sigaction size 4", syscall(SYS_rt_sigaction, SIGUSR1, NULL, NULL, 4));
          T("rt_sigaction wild", syscall(SYS_rt_sigaction, SIGUSR1, WILD, NULL, 8));
          T("sigprocmask bad how", syscall(SYS_rt_sigprocmask, 99, buf, NULL, 8));
          T("sigprocmask wild", syscall(SYS_rt_sigprocmask, SIG_BLOCK, WILD, NULL, 8));
          T("sigprocmask size 4", syscall(SYS_rt_sigprocmask, SIG_BLOCK, NULL, NULL, 4));
          T("readlink size 0", syscall(SYS_readlink, "/proc/self/exe", buf, 0));
          T("readlink NULL buf", syscall(SYS_readlink, "/proc/self/exe", NULL, 10));
          T("poll NULL 1", syscall(SYS_poll, NULL, 1, 0));
          T("poll NULL 0", syscall(SYS_poll, NULL, 0, 0));
          struct timespec zero = {0, 0};
          T("ppoll bad sigsetsize", syscall(SYS_ppoll, NULL, 0, &zero, buf, 4));
          T("ppoll bad timeout", syscall(SYS_ppoll, NULL, 0, WILD, NULL, 8));
          T("dup2 negative", dup2(1, -1));
          T("dup3 same", syscall(SYS_dup3, 1, 1, 0));
          T("fcntl bad cmd", fcntl(1, 9999));
          T("lseek pipe", lseek(p[0], 0, SEEK_SET));
          T("lseek bad whence", lseek(fd, 0, 99));
          T("getdents NULL", syscall(SYS_getdents64, open("/", O_RDONLY | O_DIRECTORY), NULL, 100));
          T("writev NULL", syscall(SYS_writev, p[1], NULL, 1));
          struct iovec iov = {buf, 1};
          T("writev negative", syscall(SYS_writev, p[1], &iov, -1));
          T("writev 1025", syscall(SYS_writev, p[1], &iov, 1025));
          T("sched_getaffinity 0", syscall(SYS_sched_getaffinity, 0, 0, NULL));
          T("getrandom NULL", syscall(SYS_getrandom, NULL, 16, 0));
          T("getrandom bad flags", syscall(SYS_getrandom, buf, 16, 0xff));
          T("socket bad family", socket(999, SOCK_STREAM, 0));
          T("kill bad signal", kill(getpid(), 99));
          T("wait4 no child", syscall(SYS_wait4, -1, NULL, 0, NULL));
          T("nanosleep NULL", syscall(SYS_nanosleep, NULL, NULL));
          struct timespec badns = {0, -1}, bigns = {0, 1000000000};
          T("nanosleep negative ns", syscall(SYS_nanosleep, &badns, NULL));
          T("nanosleep 1e9 ns", syscall(SYS_nanosleep, &bigns, NULL));
          T("clock_nanosleep bad clock", syscall(SYS_clock_nanosleep, 99, 0, &zero, NULL));
          T("sysinfo NULL", syscall(SYS_sysinfo, NULL));
          T("getgroups negative", syscall(SYS_getgroups, -1, NULL));
          T("set_robust_list bad len", syscall(SYS_set_robust_list, buf, 1));
          T("arch_prctl bad code", syscall(SYS_arch_prctl, 999, 0));
          send(u[0], "0123456789", 10, 0);
          T("recv MSG_TRUNC", recv(u[1], buf, 1, MSG_TRUNC));
          send(u[0], "0123456789", 10, 0);
          T("recv NULL", recv(u[1], NULL, 10, 0));
          T("sendto NULL", sendto(u[0], NULL, 10, 0, NULL, 0));
          T("getsockname NULL len", syscall(SYS_getsockname, u[0], buf, NULL));
          T("tgkill bad", syscall(SYS_tgkill, getpid(), getpid(), 99));
          T("rt_sigtimedwait size", syscall(SYS_rt_sigtimedwait, buf, NULL, &zero, 4));
          T("sigaltstack wild", syscall(SYS_sigaltstack, WILD, NULL));
          T("setitimer bad which", syscall(SYS_setitimer, 99, buf, NULL));
          T("getitimer NULL", syscall(SYS_getitimer, ITIMER_REAL, NULL));
          T("timer_create bad clock", syscall(SYS_timer_create, 99, NULL, buf));
          T("times NULL", (long)(syscall(SYS_times, NULL) != 0));
          T("umask high bits", syscall(SYS_umask, 0777777) & 0777);

          int wfd = open("/tmp", O_RDONLY | O_DIRECTORY);
          T("lseek negative", lseek(fd, -1, SEEK_SET));
          T("ftruncate pipe", ftruncate(p[1], 0));
          T("ftruncate negative", ftruncate(fd, -1));
          T("fcntl bad fd", fcntl(999, F_SETFD, 1));
          T("fchdir pipe", fchdir(p[0]));
          T("access empty", access("", F_OK));
          T("access bad mode", access("/", 99));
          T("openat bad dirfd", openat(99, "x", O_RDONLY));
          T("openat pipe dirfd", openat(p[0], "x", O_RDONLY));
          T("mkdir NULL", syscall(SYS_mkdir, NULL, 0755));
          T("unlink empty", unlink(""));
          T("rename NULL", syscall(SYS_rename, NULL, "x"));
          T("clock_nanosleep bad flags", syscall(SYS_clock_nanosleep, CLOCK_MONOTONIC, 99, &zero, NULL));
          T("timer_settime bad id", syscall(SYS_timer_settime, 12345, 0, buf, NULL));
          stack_t small = {0}; small.ss_sp = buf; small.ss_size = 16;
          T("sigaltstack small", syscall(SYS_sigaltstack, &small, NULL));
          small.ss_size = 1 << 16; small.ss_flags = 99;
          T("sigaltstack bad flags", syscall(SYS_sigaltstack, &small, NULL));
          T("setitimer NULL", syscall(SYS_setitimer, ITIMER_REAL, NULL, NULL));
          T("tkill negative", syscall(SYS_tkill, -1, 0));
          int word = 5;
          T("futex wait mismatch", syscall(SYS_futex, &word, FUTEX_WAIT_PRIVATE, 4, NULL, 0, 0));
          struct timespec badwait = {0, 2000000000L};
          T("futex wait bad timeout", syscall(SYS_futex, &word, FUTEX_WAIT_PRIVATE, 5, &badwait, 0, 0));
          T("mmap bad prot bits", (long)(mmap(0, 4096, 0x100 | PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) != MAP_FAILED));
          T("mmap fixed unaligned", (long)mmap((void *)0x10001, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0));
          T("munmap huge", munmap(two, (size_t)-4096));
          T("mremap new 0", (long)mremap(two, 4096, 0, MREMAP_MAYMOVE));
          T("mremap old 0 private", (long)mremap(two, 0, 4096, MREMAP_MAYMOVE));
          T("brk 1", (long)((void *)syscall(SYS_brk, 1) == sbrk(0)));
          T("write to rdonly", write(fd, "x", 1));
          int wo = open("/dev/null", O_WRONLY);
          T("read from wronly", read(wo, buf, 1));
          T("read directory", read(wfd, buf, 1));
          T("dup negative", dup(-1));
          T("close negative", close(-1));
          T("getsockopt NULL len", syscall(SYS_getsockopt, u[0], SOL_SOCKET, SO_TYPE, buf, NULL));
          T("setsockopt bad level", setsockopt(u[0], 9999, 1, buf, 4));
          T("accept non-socket", accept(p[0], NULL, NULL));
          T("socketpair NULL", syscall(SYS_socketpair, AF_UNIX, SOCK_STREAM, 0, NULL));
          T("kill no such group", kill(-99999, 0));
          T("getpgid no such", syscall(SYS_getpgid, 99999999));
          T("uname wild", syscall(SYS_uname, WILD));
          T("readv partial", ({ struct iovec v[2] = {{two + 4090, 20}, {buf, 4}}; preadv(fd, v, 2, 0); }));
          T("writev partial", ({ struct iovec v[2] = {{buf, 4}, {two + 4094, 20}}; writev(p[1], v, 2); }));
          T("execve NULL", syscall(SYS_execve, NULL, NULL, NULL));
          T("execve nonexistent", syscall(SYS_execve, "/nonexistent", NULL, NULL));
          T("chdir NULL", syscall(SYS_chdir, NULL));
          T("sched_get_priority_max bad", syscall(SYS_sched_get_priority_max, 99));
          T("sched_get_priority_min rr", syscall(SYS_sched_get_priority_min, SCHED_RR));
          T("getcpu NULL", syscall(SYS_getcpu, NULL, NULL, NULL));
          T("getcpu wild", syscall(SYS_getcpu, WILD, NULL, NULL));
          return 0;
        }

        """#

    @Test func badArgumentsGetLinuxsErrors() throws {
        let out = try Harness.matchesNative(BadArgumentTests.source, name: "badargs", in: dir)
        #expect(out.contains("recv MSG_TRUNC               10 errno 0"))
        #expect(out.contains("futex wake NULL              -1 errno 14"))
        #expect(out.contains("pread across end             6 errno 0"))
    }
}
