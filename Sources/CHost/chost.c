#include "chost.h"
#include <errno.h>
#include <unistd.h>
#include <sys/syscall.h>

long chost_syscall(long number, long a1, long a2, long a3, long a4, long a5, long a6) {
  long r = syscall(number, a1, a2, a3, a4, a5, a6);
  return r == -1 ? -errno : r;
}
