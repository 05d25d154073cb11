import Foundation
import Testing

/// pidfds for processes of the recording: pidfd_open's checks, readable in
/// poll and epoll once the process ends, waitid(P_PIDFD) (EAGAIN for a
/// non-blocking one), pidfd_send_signal with kill's rules, pidfd_getfd,
/// /proc/self/fdinfo's Pid line (-1 once reaped): output as a native run's.
@Suite(.serialized) struct ProcessDescriptorTests {
    let dir = Harness.temporaryDirectory()

    @Test func pidfdsFollowTheirProcess() throws {
        let out = try Harness.matchesNative(#"""
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#ifndef P_PIDFD
#define P_PIDFD 3
#endif
#define P(name, e) do { long r_ = (e); printf("%s %ld\n", name, r_ < 0 ? -(long)errno : r_); } while (0)
static int pidfd_open(pid_t pid, unsigned flags) { return syscall(SYS_pidfd_open, pid, flags); }
static void fdinfo(int fd, pid_t pid) {
  char path[64], line[256]; snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
  FILE *f = fopen(path, "r");
  while (fgets(line, sizeof line, f)) {
    if (!strncmp(line, "flags:", 6)) fputs(line, stdout);
    if (!strncmp(line, "Pid:", 4)) printf("Pid: %s\n", atoi(line + 5) == pid ? "child" : line + 5);
    if (!strncmp(line, "NSpid:", 6)) printf("NSpid: %s\n", atoi(line + 7) == pid ? "child" : line + 7);
  }
  fclose(f);
}
int main(void) {
  setvbuf(stdout, NULL, _IONBF, 0);
  int pipefd[2]; pipe(pipefd);
  pid_t child = fork();
  if (child == 0) { char c; read(pipefd[0], &c, 1); _exit(7); }
  int fd = pidfd_open(child, 0);
  printf("pidfd ok %d cloexec %d\n", fd >= 0, (fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
  fdinfo(fd, child);
  char link[64], target[64] = {0}; snprintf(link, sizeof link, "/proc/self/fd/%d", fd); readlink(link, target, sizeof target - 1);
  printf("link %s\n", target);
  P("bad flags", pidfd_open(child, 1));
  P("pid 0", pidfd_open(0, 0));
  P("pid -1", pidfd_open(-1, 0));
  struct pollfd pf = {fd, POLLIN, 0};
  P("poll running", poll(&pf, 1, 0)); printf("revents %x\n", pf.revents);
  int ep = epoll_create1(0); struct epoll_event ev = {.events = EPOLLIN, .data.u32 = 42};
  P("epoll add", epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev));
  P("epoll running", epoll_wait(ep, &ev, 1, 0));
  P("signal 0", syscall(SYS_pidfd_send_signal, fd, 0, NULL, 0));
  P("signal bad flags", syscall(SYS_pidfd_send_signal, fd, 0, NULL, 8));
  P("signal not pidfd", syscall(SYS_pidfd_send_signal, 0, 0, NULL, 0));
  P("signal bad fd", syscall(SYS_pidfd_send_signal, 99, 0, NULL, 0));
  P("signal bad signal", syscall(SYS_pidfd_send_signal, fd, 99, NULL, 0));
  siginfo_t info; memset(&info, 0, sizeof info); info.si_signo = SIGWINCH; info.si_code = SI_QUEUE;
  P("signal with SI_QUEUE info to other", syscall(SYS_pidfd_send_signal, fd, SIGWINCH, &info, 0));
  info.si_code = SI_USER;
  P("signal posing as kill", syscall(SYS_pidfd_send_signal, fd, SIGWINCH, &info, 0));
  info.si_code = -1;
  P("signal mismatched signo", syscall(SYS_pidfd_send_signal, fd, SIGUSR2, &info, 0));
  int nb = pidfd_open(child, O_NONBLOCK);
  siginfo_t si; memset(&si, 0x55, sizeof si);
  P("waitid nonblock running", syscall(SYS_waitid, P_PIDFD, nb, &si, WEXITED, 0)); printf("si_pid %d\n", si.si_pid);
  P("waitid not pidfd", syscall(SYS_waitid, P_PIDFD, 0, &si, WEXITED, 0));
  P("waitid bad fd", syscall(SYS_waitid, P_PIDFD, 77, &si, WEXITED, 0));
  int selfd = pidfd_open(getpid(), 0);
  P("waitid self not child", syscall(SYS_waitid, P_PIDFD, selfd, &si, WEXITED, 0));
  int dupfd = syscall(SYS_pidfd_getfd, selfd, pipefd[1], 0);
  printf("getfd own ok %d cloexec %d\n", dupfd >= 0, (fcntl(dupfd, F_GETFD) & FD_CLOEXEC) != 0);
  P("getfd bad target fd", syscall(SYS_pidfd_getfd, fd, 55, 0));
  P("getfd flags", syscall(SYS_pidfd_getfd, fd, 0, 1));
  int childpipe = syscall(SYS_pidfd_getfd, fd, pipefd[0], 0);
  printf("getfd child's ok %d\n", childpipe >= 0);
  write(dupfd, "x", 1);
  P("poll until exit", poll(&pf, 1, -1)); printf("revents %x\n", pf.revents);
  P("epoll after exit", epoll_wait(ep, &ev, 1, -1)); printf("data %u events %x\n", ev.data.u32, ev.events);
  P("signal zombie", syscall(SYS_pidfd_send_signal, fd, SIGTERM, NULL, 0));
  fdinfo(fd, child);
  memset(&si, 0, sizeof si);
  P("waitid pidfd", syscall(SYS_waitid, P_PIDFD, fd, &si, WEXITED, 0));
  printf("si_pid is child %d status %d code %d\n", si.si_pid == child, si.si_status, si.si_code);
  fdinfo(fd, child);
  P("signal reaped", syscall(SYS_pidfd_send_signal, fd, SIGTERM, NULL, 0));
  P("getfd reaped", syscall(SYS_pidfd_getfd, fd, 0, 0));
  P("waitid reaped", syscall(SYS_waitid, P_PIDFD, fd, &si, WEXITED, 0));
  P("open reaped", pidfd_open(child, 0));
  pid_t c2 = fork();
  if (c2 == 0) { pause(); _exit(0); }
  int fd2 = pidfd_open(c2, 0);
  P("kill via pidfd", syscall(SYS_pidfd_send_signal, fd2, SIGKILL, NULL, 0));
  int st; waitpid(c2, &st, 0); printf("c2 signalled %d sig %d\n", WIFSIGNALED(st), WTERMSIG(st));
  P("close", close(fd));
  return 0;
}
"""#, name: "pidfd", in: dir)
        #expect(out.contains("poll until exit 1\nrevents 1\n"))
        #expect(out.contains("waitid nonblock running -11\n"))
        #expect(out.contains("c2 signalled 1 sig 9\n"))
    }

    /// clone3 and clone with CLONE_PIDFD: the parent gets a pidfd (O_CLOEXEC),
    /// the child does not; with CLONE_PARENT_SETTID on the same pointer EINVAL.
    @Test func clonePidfd() throws {
        let out = try Harness.matchesNative(#"""
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <sys/syscall.h>
#include <sys/wait.h>
int main(void) {
  setvbuf(stdout, NULL, _IONBF, 0);
  int pidfd = -1;
  struct clone_args a; memset(&a, 0, sizeof a);
  a.flags = CLONE_PIDFD; a.pidfd = (unsigned long)&pidfd; a.exit_signal = SIGCHLD;
  long pid = syscall(SYS_clone3, &a, sizeof a);
  if (pid == 0) _exit(fcntl(3, F_GETFD) >= 0 ? 4 : 3);
  printf("clone3 pidfd %d cloexec %d\n", pidfd >= 0, (fcntl(pidfd, F_GETFD) & FD_CLOEXEC) != 0);
  struct pollfd pf = {pidfd, POLLIN, 0};
  int n = poll(&pf, 1, -1);
  printf("poll %d revents %x\n", n, pf.revents);
  siginfo_t si; memset(&si, 0, sizeof si);
  long w = syscall(SYS_waitid, 3, pidfd, &si, WEXITED, 0);
  printf("waitid %ld status %d\n", w, si.si_status);
  int both = -1;
  long r = syscall(SYS_clone, CLONE_PIDFD | CLONE_PARENT_SETTID | SIGCHLD, 0, &both, 0, 0);
  printf("clone pidfd+settid %ld %d\n", r, r < 0 ? errno : 0);
  r = syscall(SYS_clone, CLONE_PIDFD | SIGCHLD, 0, &both, 0, 0);
  if (r == 0) _exit(0);
  printf("clone pidfd ok %d\n", both >= 0 && both != pidfd);
  waitpid(r, 0, 0);
  return 0;
}
"""#, name: "clonepidfd", in: dir)
        #expect(out.contains("waitid 0 status 3\n"))
    }

    /// pidfd_send_signal takes a /proc/<pid> directory as its pidfd, as
    /// Linux's pidfd_to_pid does (CPython's test_signal
    /// test_pidfd_send_signal); a task/<tid> directory or another file is
    /// EBADF, a reaped process's directory ESRCH. Before, every
    /// descriptor that was not a pidfd was EBADF.
    @Test func procDirectoryAsPidfd() throws {
        let out = try Harness.matchesNative(#"""
            // pidfd_send_signal with a /proc/<pid> directory as the pidfd (Linux's
            // pidfd_to_pid accepts it), a task/<tid> directory and a file (EBADF),
            // a reaped child's directory (ESRCH).
            #define _GNU_SOURCE
            #include <errno.h>
            #include <fcntl.h>
            #include <signal.h>
            #include <stdio.h>
            #include <string.h>
            #include <unistd.h>
            #include <sys/syscall.h>
            #include <sys/wait.h>
            static volatile sig_atomic_t got;
            static void on(int s) { got = s; }
            static long send(int fd, int sig) { long r = syscall(SYS_pidfd_send_signal, fd, sig, NULL, 0); return r < 0 ? -errno : r; }
            int main(void) {
                signal(SIGUSR1, on);
                char path[64];
                snprintf(path, sizeof path, "/proc/%d", getpid());
                int self = open(path, O_DIRECTORY | O_CLOEXEC);
                long r = send(self, SIGUSR1);
                printf("self dir: %ld, got %d\n", r, got);
                int slf = open("/proc/self", O_DIRECTORY | O_CLOEXEC);
                got = 0; r = send(slf, SIGUSR1);
                printf("/proc/self: %ld, got %d\n", r, got);
                snprintf(path, sizeof path, "/proc/%d/task/%d", getpid(), getpid());
                int task = open(path, O_DIRECTORY | O_CLOEXEC);
                printf("task dir: %ld\n", send(task, SIGUSR1));
                int status = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
                printf("status file: %ld\n", send(status, SIGUSR1));
                printf("not open: %ld\n", send(99, SIGUSR1));
                int opath = open("/proc/self", O_PATH | O_DIRECTORY | O_CLOEXEC);
                got = 0;
                printf("O_PATH dir: %ld, got %d\n", send(opath, SIGUSR1), got);
                printf("flags: plain O_PATH %d, O_PATH one %d\n", (fcntl(slf, F_GETFL) & O_PATH) != 0, (fcntl(opath, F_GETFL) & O_PATH) != 0);
                pid_t child = fork();
                if (child == 0) { pause(); _exit(0); }
                snprintf(path, sizeof path, "/proc/%d", child);
                int cd = open(path, O_DIRECTORY | O_CLOEXEC);
                printf("child dir, signal 0: %ld\n", send(cd, 0));
                printf("child dir, SIGTERM: %ld\n", send(cd, SIGTERM));
                int st; waitpid(child, &st, 0);
                printf("child ended by signal %d\n", WIFSIGNALED(st) ? WTERMSIG(st) : 0);
                printf("reaped child dir: %ld\n", send(cd, 0));
                return 0;
            }
            """#, name: "pidfdproc", in: dir)
        #expect(out.hasPrefix("self dir: 0, got 10\n/proc/self: 0, got 10\ntask dir: -9\n"))
        #expect(out.contains("O_PATH dir: -9, got 0\nflags: plain O_PATH 0, O_PATH one 1\n"))
        #expect(out.contains("child ended by signal 15\nreaped child dir: -3\n"))
    }
}
