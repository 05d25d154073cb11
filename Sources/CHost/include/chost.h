// A raw Linux syscall for performing a guest's syscall on the host:
// syscall(2) is variadic, which Swift cannot call. Returns the result, or
// -errno on failure, as the kernel's own ABI does.
#ifndef CHOST_H
#define CHOST_H
long chost_syscall(long number, long a1, long a2, long a3, long a4, long a5, long a6);

#include <stddef.h>
#include <stdint.h>

// The host's time-stamp counter (the instruction Swift cannot emit).
uint64_t chost_rdtsc(void);

// The instructions detrec patches because the hardware may not trap them.
enum { CHOST_RDTSC = 1, CHOST_RDTSCP = 2, CHOST_CPUID = 3 };

// Finds the rdtsc (0f 31), rdtscp (0f 01 f9) and cpuid (0f a2) instructions
// in x86-64 code, with Capstone: each byte pattern is a candidate, kept only
// when decoding from several points before it lands on it as that
// instruction (x86 decoding resynchronizes within a few instructions), so a
// pattern inside another instruction or in data is left alone. Writes up to
// `max` offsets and kinds; returns how many were found, or -1 without Capstone.
int chost_find_special_instructions(const uint8_t *code, size_t size, uint32_t *offsets, uint8_t *kinds, int max);
#endif
