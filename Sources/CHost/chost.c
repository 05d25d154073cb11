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

// Decodes from `start` until reaching `at`: 1 when an instruction starts at
// `at` and is rdtsc/rdtscp of `length` bytes, 0 otherwise.
static int lands_on(const uint8_t *code, size_t size, size_t start, size_t at, int length, cs_insn *insn) {
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
  unsigned id = insn->id;
  return insn->size == length && ((length == 2 && id == X86_INS_RDTSC) || (length == 3 && id == X86_INS_RDTSCP));
}

int chost_find_timestamp_reads(const uint8_t *code, size_t size, uint32_t *offsets, uint8_t *lengths, int max) {
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
    int length = 0;
    if (code[i + 1] == 0x31) length = 2;
    else if (i + 2 < size && code[i + 1] == 0x01 && code[i + 2] == 0xf9) length = 3;
    if (!length) continue;
    int votes = 0, tries = 0;
    for (size_t w = 0; w < sizeof windows / sizeof windows[0]; w++) {
      size_t start = i > windows[w] ? i - windows[w] : 0;
      tries++;
      votes += lands_on(code, size, start, i, length, insn);
    }
    // Most starting points must agree: one that has not fallen into step
    // yet may disagree, a pattern inside another instruction fails them all.
    if (votes * 5 >= tries * 4) {
      offsets[found] = (uint32_t)i;
      lengths[found] = (uint8_t)length;
      found++;
    }
  }
  cs_free(insn, 1);
  return found;
}
