#include "ckvm.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

int ckvm_ioctl(int fd, unsigned long request, void *arg) { return ioctl(fd, request, arg); }
int ckvm_ioctl_int(int fd, unsigned long request, unsigned long arg) { return ioctl(fd, request, arg); }

int ckvm_get_supported_cpuid(int kvm_fd, struct kvm_cpuid_entry2 *entries, int max) {
  size_t size = sizeof(struct kvm_cpuid2) + (size_t)max * sizeof(struct kvm_cpuid_entry2);
  struct kvm_cpuid2 *c = calloc(1, size);
  if (!c) return -ENOMEM;
  c->nent = (uint32_t)max;
  if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, c) < 0) {
    int e = errno;
    free(c);
    return -e;
  }
  int n = (int)c->nent;
  memcpy(entries, c->entries, (size_t)n * sizeof(struct kvm_cpuid_entry2));
  free(c);
  return n;
}

void ckvm_native_cpuid(uint32_t leaf, uint32_t subleaf, uint32_t out[4]) {
  uint32_t a, b, c, d;
  __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(leaf), "c"(subleaf));
  out[0] = a; out[1] = b; out[2] = c; out[3] = d;
}

int ckvm_set_cpuid(int vcpu_fd, const struct kvm_cpuid_entry2 *entries, int count) {
  size_t size = sizeof(struct kvm_cpuid2) + (size_t)count * sizeof(struct kvm_cpuid_entry2);
  struct kvm_cpuid2 *c = calloc(1, size);
  if (!c) return -ENOMEM;
  c->nent = (uint32_t)count;
  memcpy(c->entries, entries, (size_t)count * sizeof(struct kvm_cpuid_entry2));
  int r = ioctl(vcpu_fd, KVM_SET_CPUID2, c);
  int e = errno;
  free(c);
  return r < 0 ? -e : 0;
}

struct one_msr { struct kvm_msrs head; struct kvm_msr_entry entry; };

int ckvm_set_msr(int vcpu_fd, uint32_t index, uint64_t value) {
  struct one_msr m;
  memset(&m, 0, sizeof m);
  m.head.nmsrs = 1;
  m.entry.index = index;
  m.entry.data = value;
  int r = ioctl(vcpu_fd, KVM_SET_MSRS, &m);
  if (r < 0) return -errno;
  return r == 1 ? 0 : -EINVAL;
}

int ckvm_get_msr(int vcpu_fd, uint32_t index, uint64_t *value) {
  struct one_msr m;
  memset(&m, 0, sizeof m);
  m.head.nmsrs = 1;
  m.entry.index = index;
  int r = ioctl(vcpu_fd, KVM_GET_MSRS, &m);
  if (r < 0) return -errno;
  if (r != 1) return -EINVAL;
  *value = m.entry.data;
  return 0;
}

#include <linux/perf_event.h>
#include <sys/syscall.h>
#include <unistd.h>

int ckvm_probe_branch_counter(void) {
  struct perf_event_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.size = sizeof attr;
  attr.type = PERF_TYPE_HARDWARE;
  attr.config = PERF_COUNT_HW_BRANCH_INSTRUCTIONS;
  attr.exclude_kernel = 1;
  attr.exclude_hv = 1;
  long fd = syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0);
  return fd < 0 ? -errno : (int)fd;
}

int ckvm_get_dirty_log(int vm_fd, uint32_t slot, uint64_t *bitmap) {
  struct kvm_dirty_log log;
  memset(&log, 0, sizeof log);
  log.slot = slot;
  log.dirty_bitmap = bitmap;
  return ioctl(vm_fd, KVM_GET_DIRTY_LOG, &log) < 0 ? -errno : 0;
}
