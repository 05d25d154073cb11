// The parts of the KVM API that Swift cannot reach on its own: the ioctl
// request macros (_IOWR and friends) and the variadic ioctl(2), plus the
// flexible-array structs (kvm_cpuid2, kvm_msrs). Everything else is used
// from Swift directly through <linux/kvm.h>.
#ifndef CKVM_H
#define CKVM_H
#include <linux/kvm.h>
#include <stdint.h>

int ckvm_ioctl(int fd, unsigned long request, void *arg);
int ckvm_ioctl_int(int fd, unsigned long request, unsigned long arg);

// Fills `entries` with KVM_GET_SUPPORTED_CPUID; returns the count or -errno.
int ckvm_get_supported_cpuid(int kvm_fd, struct kvm_cpuid_entry2 *entries, int max);
// KVM_SET_CPUID2 with `count` entries; 0 or -errno.
int ckvm_set_cpuid(int vcpu_fd, const struct kvm_cpuid_entry2 *entries, int count);
// The CPUID instruction as this process sees it (the hardware's features,
// as the host kernel exposes them): out = eax, ebx, ecx, edx.
void ckvm_native_cpuid(uint32_t leaf, uint32_t subleaf, uint32_t out[4]);
// One MSR at a time: enough for the few that detrec sets.
int ckvm_set_msr(int vcpu_fd, uint32_t index, uint64_t value);
int ckvm_get_msr(int vcpu_fd, uint32_t index, uint64_t *value);

static const unsigned long CKVM_GET_API_VERSION = KVM_GET_API_VERSION;
static const unsigned long CKVM_CREATE_VM = KVM_CREATE_VM;
static const unsigned long CKVM_CHECK_EXTENSION = KVM_CHECK_EXTENSION;
static const unsigned long CKVM_GET_VCPU_MMAP_SIZE = KVM_GET_VCPU_MMAP_SIZE;
static const unsigned long CKVM_CREATE_VCPU = KVM_CREATE_VCPU;
static const unsigned long CKVM_SET_USER_MEMORY_REGION = KVM_SET_USER_MEMORY_REGION;
static const unsigned long CKVM_RUN = KVM_RUN;
static const unsigned long CKVM_GET_REGS = KVM_GET_REGS;
static const unsigned long CKVM_SET_REGS = KVM_SET_REGS;
static const unsigned long CKVM_GET_SREGS = KVM_GET_SREGS;
static const unsigned long CKVM_SET_SREGS = KVM_SET_SREGS;
static const unsigned long CKVM_GET_XCRS = KVM_GET_XCRS;
static const unsigned long CKVM_SET_XCRS = KVM_SET_XCRS;
static const unsigned long CKVM_GET_XSAVE = KVM_GET_XSAVE;
static const unsigned long CKVM_SET_XSAVE = KVM_SET_XSAVE;
static const unsigned long CKVM_GET_FPU = KVM_GET_FPU;
static const unsigned long CKVM_SET_FPU = KVM_SET_FPU;
static const unsigned long CKVM_GET_DIRTY_LOG = KVM_GET_DIRTY_LOG;
static const unsigned long CKVM_GET_VCPU_EVENTS = KVM_GET_VCPU_EVENTS;
static const unsigned long CKVM_SET_VCPU_EVENTS = KVM_SET_VCPU_EVENTS;
static const unsigned int CKVM_MEM_LOG_DIRTY_PAGES = KVM_MEM_LOG_DIRTY_PAGES;

static const int CKVM_CAP_SYNC_REGS = KVM_CAP_SYNC_REGS;
static const int CKVM_CAP_XCRS = KVM_CAP_XCRS;
static const int CKVM_CAP_IMMEDIATE_EXIT = KVM_CAP_IMMEDIATE_EXIT;
static const int CKVM_CAP_NR_MEMSLOTS = KVM_CAP_NR_MEMSLOTS;
static const unsigned int CKVM_SYNC_X86_REGS = KVM_SYNC_X86_REGS;
static const unsigned int CKVM_SYNC_X86_SREGS = KVM_SYNC_X86_SREGS;
static const unsigned int CKVM_SYNC_X86_EVENTS = KVM_SYNC_X86_EVENTS;


// KVM_GET_DIRTY_LOG of one memslot into `bitmap` (one bit per page of the
// slot, rounded up to 64): 0 or -errno. Reading the log re-arms it.
int ckvm_get_dirty_log(int vm_fd, uint32_t slot, uint64_t *bitmap);

// perf_event_open(2) of retired branch instructions for this thread, user
// mode only: returns an fd, or -errno (ENOENT where the host has no PMU).
int ckvm_probe_branch_counter(void);

// userfaultfd write protection (docs/preemption.md, "copy before write").
// Opens a userfaultfd with the WP feature negotiated: an fd, or -errno.
int ckvm_uffd_open(void);
// Registers [start, start+len) for write-protect faults: 0 or -errno.
int ckvm_uffd_register_wp(int uffd, void *start, uint64_t len);
int ckvm_uffd_unregister(int uffd, void *start, uint64_t len);
// Write-protects (protect != 0) or unprotects the range; unprotecting wakes
// the threads blocked on a fault in it. 0 or -errno.
int ckvm_uffd_protect(int uffd, void *start, uint64_t len, int protect);
// Waits for the next write-protect fault or for `stop_fd` to become
// readable: 1 with the faulting address in *address, 0 when stopped, -errno.
int ckvm_uffd_next_fault(int uffd, int stop_fd, uint64_t *address);
#endif
