#include "chost.h"
#include <errno.h>
#include <unistd.h>
#include <sys/syscall.h>

long chost_syscall(long number, long a1, long a2, long a3, long a4, long a5, long a6) {
  long r = syscall(number, a1, a2, a3, a4, a5, a6);
  return r == -1 ? -errno : r;
}

#include <capstone/capstone.h>
#include <x86intrin.h>

uint64_t chost_rdtsc(void) { return __rdtsc(); }

static csh scanner;
static int scanner_ready;  // 0 untried, 1 ready, -1 failed

// The instruction each kind is (see chost.h).
static int is_kind(const cs_insn *insn, int kind) {
  switch (kind) {
  case CHOST_RDTSC: return insn->size == 2 && insn->id == X86_INS_RDTSC;
  case CHOST_RDTSCP: return insn->size == 3 && insn->id == X86_INS_RDTSCP;
  case CHOST_CPUID: return insn->size == 2 && insn->id == X86_INS_CPUID;
  default: return 0;
  }
}

// Decodes from `start` until reaching `at`: 1 when an instruction starts at
// `at` and is of `kind`, 0 otherwise.
static int lands_on(const uint8_t *code, size_t size, size_t start, size_t at, int kind, cs_insn *insn) {
  const uint8_t *p = code + start;
  size_t left = size - start;
  uint64_t address = start;
  while (address < at) {
    // Bytes that do not decode are stepped over one at a time, as a
    // linear sweep does, until the decoding falls into step.
    if (!cs_disasm_iter(scanner, &p, &left, &address, insn)) {
      p++;
      left--;
      address++;
    }
  }
  if (address != at) return 0;
  if (!cs_disasm_iter(scanner, &p, &left, &address, insn)) return 0;
  return is_kind(insn, kind);
}

int chost_find_special_instructions(const uint8_t *code, size_t size, uint32_t *offsets, uint8_t *kinds, int max) {
  if (scanner_ready == 0) {
    scanner_ready = cs_open(CS_ARCH_X86, CS_MODE_64, &scanner) == CS_ERR_OK ? 1 : -1;
  }
  if (scanner_ready < 0) return -1;
  cs_insn *insn = cs_malloc(scanner);
  if (!insn) return -1;
  int found = 0;
  static const size_t windows[] = {96, 64, 40, 24, 12};
  for (size_t i = 0; i + 1 < size && found < max; i++) {
    if (code[i] != 0x0f) continue;
    int kind = 0;
    if (code[i + 1] == 0x31) kind = CHOST_RDTSC;
    else if (code[i + 1] == 0xa2) kind = CHOST_CPUID;
    else if (i + 2 < size && code[i + 1] == 0x01 && code[i + 2] == 0xf9) kind = CHOST_RDTSCP;
    if (!kind) continue;
    int votes = 0, tries = 0;
    for (size_t w = 0; w < sizeof windows / sizeof windows[0]; w++) {
      size_t start = i > windows[w] ? i - windows[w] : 0;
      tries++;
      votes += lands_on(code, size, start, i, kind, insn);
    }
    // Most starting points must agree: one that has not fallen into step
    // yet may disagree, a pattern inside another instruction fails them all.
    if (votes * 5 >= tries * 4) {
      offsets[found] = (uint32_t)i;
      kinds[found] = (uint8_t)kind;
      found++;
    }
  }
  cs_free(insn, 1);
  return found;
}
