import Foundation
import Testing

/// A stop and continue ends a parked call's wait as a signal does: a call
/// that has no restart code (epoll_wait) fails with EINTR, one that has
/// (read) runs again, as a native run shows.
@Suite(.serialized) struct StopInterruptionTests {
    let dir = Harness.temporaryDirectory()

    @Test func epollWaitFailsWithEINTRAfterStopAndContinue() throws {
        let out = try Harness.matchesNative(#"""
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/wait.h>
static char state(pid_t pid) {
  char path[64], buf[256]; snprintf(path, sizeof path, "/proc/%d/stat", pid);
  int fd = open(path, O_RDONLY); int n = read(fd, buf, sizeof buf - 1); close(fd);
  if (n <= 0) return '?';
  buf[n] = 0; char *p = strrchr(buf, ')'); return p ? p[2] : '?';
}
int main(void) {
  setvbuf(stdout, NULL, _IONBF, 0);
  int p[2], out[2]; pipe(p); pipe(out);
  pid_t c = fork();
  if (c == 0) {
    int ep = epoll_create1(0); struct epoll_event ev = {.events = EPOLLIN};
    epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev);
    int r = epoll_wait(ep, &ev, 1, -1);
    char msg[64]; int n = snprintf(msg, sizeof msg, "epoll_wait %d errno %s\n", r, r < 0 ? strerrorname_np(errno) : "-");
    write(out[1], msg, n);
    char buf[8]; ssize_t k = read(p[0], buf, 1);   // a read restarts after a stop
    n = snprintf(msg, sizeof msg, "read %zd\n", k); write(out[1], msg, n);
    _exit(0);
  }
  while (state(c) != 'S') usleep(1000);
  kill(c, SIGSTOP);
  int st; waitpid(c, &st, WUNTRACED); printf("stopped %d\n", WIFSTOPPED(st));
  kill(c, SIGCONT);
  waitpid(c, &st, WCONTINUED); printf("continued %d\n", WIFCONTINUED(st));
  char buf[128]; ssize_t n = read(out[0], buf, sizeof buf); fwrite(buf, 1, n, stdout);
  while (state(c) != 'S') usleep(1000);
  kill(c, SIGSTOP); waitpid(c, &st, WUNTRACED); kill(c, SIGCONT); waitpid(c, &st, WCONTINUED);
  write(p[1], "x", 1);
  n = read(out[0], buf, sizeof buf); fwrite(buf, 1, n, stdout);
  waitpid(c, &st, 0); printf("exit %d\n", WEXITSTATUS(st));
  return 0;
}
"""#, name: "stopint", in: dir)
        #expect(out.contains("epoll_wait -1 errno EINTR\nread 1\n"))
    }
}
