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

#include <linux/userfaultfd.h>
#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <fcntl.h>

int ckvm_uffd_open(void) {
  int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return -errno;
  struct uffdio_api api;
  memset(&api, 0, sizeof api);
  api.api = UFFD_API;
  api.features = UFFD_FEATURE_PAGEFAULT_FLAG_WP;
  if (ioctl(fd, UFFDIO_API, &api) < 0) {
    int e = errno;
    close(fd);
    return -e;
  }
  if (!(api.ioctls & (1ULL << _UFFDIO_REGISTER))) {
    close(fd);
    return -ENOTSUP;
  }
  return fd;
}

int ckvm_uffd_register_wp(int uffd, void *start, uint64_t len) {
  struct uffdio_register r;
  memset(&r, 0, sizeof r);
  r.range.start = (uint64_t)(uintptr_t)start;
  r.range.len = len;
  r.mode = UFFDIO_REGISTER_MODE_WP;
  if (ioctl(uffd, UFFDIO_REGISTER, &r) < 0) return -errno;
  if (!(r.ioctls & (1ULL << _UFFDIO_WRITEPROTECT))) return -ENOTSUP;
  return 0;
}

int ckvm_uffd_unregister(int uffd, void *start, uint64_t len) {
  struct uffdio_range r = {.start = (uint64_t)(uintptr_t)start, .len = len};
  return ioctl(uffd, UFFDIO_UNREGISTER, &r) < 0 ? -errno : 0;
}

int ckvm_uffd_protect(int uffd, void *start, uint64_t len, int protect) {
  struct uffdio_writeprotect w;
  memset(&w, 0, sizeof w);
  w.range.start = (uint64_t)(uintptr_t)start;
  w.range.len = len;
  w.mode = protect ? UFFDIO_WRITEPROTECT_MODE_WP : 0;
  for (;;) {
    if (ioctl(uffd, UFFDIO_WRITEPROTECT, &w) == 0) return 0;
    if (errno != EAGAIN && errno != EINTR) return -errno;
  }
}

int ckvm_uffd_next_fault(int uffd, int stop_fd, uint64_t *address) {
  for (;;) {
    struct pollfd p[2] = {{.fd = uffd, .events = POLLIN}, {.fd = stop_fd, .events = POLLIN}};
    if (poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (p[1].revents) return 0;
    struct uffd_msg m;
    ssize_t n = read(uffd, &m, sizeof m);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      return -errno;
    }
    if (n != sizeof m || m.event != UFFD_EVENT_PAGEFAULT) continue;
    *address = m.arg.pagefault.address;
    return 1;
  }
}
