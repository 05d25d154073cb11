// A raw Linux syscall for performing a guest's syscall on the host:
// syscall(2) is variadic, which Swift cannot call. Returns the result, or
// -errno on failure, as the kernel's own ABI does.
#ifndef CHOST_H
#define CHOST_H
long chost_syscall(long number, long a1, long a2, long a3, long a4, long a5, long a6);
#endif
