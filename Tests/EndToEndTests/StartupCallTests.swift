import Foundation
import Testing

/// The calls runtimes and tools make at start-up besides the descriptor
/// families: close_range, membarrier, personality, scheduling queries,
/// extended attributes, FIFOs from mknod, sync. Compared with a native run
/// where the host answers the same for the recording (so not real-time
/// policies, which the recording refuses).
@Suite(.serialized) struct StartupCallTests {
    let dir = Harness.temporaryDirectory()

    @Test func startupCallsMatchLinux() throws {
        let out = try Harness.matchesNative(ProcessControlTests.prelude + #"""
            #include <sys/personality.h>
            #include <sys/stat.h>
            #include <sys/xattr.h>
            #include <linux/membarrier.h>
            int main(void) {
              int a = open("/dev/null", O_RDONLY), b = dup(a), c = dup(a), d = dup(a);
              printf("close_range %ld", syscall(SYS_close_range, b, c, 0));
              printf(" -> %d %d %d\n", fcntl(b, F_GETFD) < 0 ? -errno : 0, fcntl(c, F_GETFD) < 0 ? -errno : 0, fcntl(d, F_GETFD));
              printf("cloexec %ld -> %d; backwards %d, bad flags %d\n", syscall(SYS_close_range, d, ~0U, 4), fcntl(d, F_GETFD),
                     syscall(SYS_close_range, 5, 4, 0) < 0 ? -errno : 0, syscall(SYS_close_range, 0, 1, 1) < 0 ? -errno : 0);
              int before = syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) < 0 ? -errno : 0;
              printf("membarrier private before registering %d", before);
              printf(", register %ld", syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0));
              printf(", after %ld, global %ld, bad flags %d\n", syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0),
                     syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0), syscall(SYS_membarrier, 1, 4, 0) < 0 ? -errno : 0);
              printf("personality %x", personality(0xffffffff));
              printf(" set %x", personality(ADDR_NO_RANDOMIZE));
              printf(" -> %x\n", personality(0xffffffff));
              printf("scheduler %d max fifo %d min rr %d max other %d bad policy %d\n", sched_getscheduler(0),
                     sched_get_priority_max(SCHED_FIFO), sched_get_priority_min(SCHED_RR), sched_get_priority_max(SCHED_OTHER),
                     sched_get_priority_max(42) < 0 ? -errno : 0);
              struct sched_param sp = {0};
              printf("batch %d", sched_setscheduler(0, SCHED_BATCH, &sp));
              printf(" -> %d, bad priority %d", sched_getscheduler(0), (sp.sched_priority = 5, sched_setscheduler(0, SCHED_BATCH, &sp)) < 0 ? -errno : 0);
              printf(", no such thread %d\n", sched_getscheduler(999999) < 0 ? -errno : 0);
              struct timespec ts; printf("rr interval %d\n", sched_rr_get_interval(0, &ts));
              char path[64]; snprintf(path, sizeof path, "/tmp/detrec-startup-%d", getpid());
              int f = open(path, O_CREAT | O_RDWR, 0600);
              printf("setxattr %d", fsetxattr(f, "user.detrec", "value", 5, 0) < 0 ? -errno : 0);
              char v[32] = {0};
              printf(" size %zd", getxattr(path, "user.detrec", NULL, 0));
              printf(" get %zd %s", getxattr(path, "user.detrec", v, sizeof v), v);
              printf(" small %d", lgetxattr(path, "user.detrec", v, 2) < 0 ? -errno : 0);
              char list[64]; ssize_t n = flistxattr(f, list, sizeof list);
              printf(" list %zd %s", n, list);
              printf(" remove %d missing %d\n", removexattr(path, "user.detrec"), getxattr(path, "user.detrec", v, sizeof v) < 0 ? -errno : 0);
              unlink(path);
              printf("mknod fifo %d", mknod(path, S_IFIFO | 0600, 0));
              struct stat st; stat(path, &st);
              printf(" is fifo %d", S_ISFIFO(st.st_mode));
              int r = open(path, O_RDONLY | O_NONBLOCK), w = open(path, O_WRONLY | O_NONBLOCK);
              write(w, "fifo", 4); char got[8] = {0}; read(r, got, sizeof got);
              printf(" through it %s\n", got);
              unlink(path);
              sync(); printf("syncfs %d sync_file_range %d\n", syncfs(r), sync_file_range(r, 0, 0, 0) < 0 ? -errno : 0);
              return 0;
            }
            """#, name: "startup_calls", in: dir)
        #expect(out.contains("close_range 0 -> -9 -9 0\n"))
        #expect(out.contains("membarrier private before registering -1, register 0, after 0, global 0, bad flags -22\n"))
        #expect(out.contains("personality 0 set 0 -> 40000\n"))
        #expect(out.contains("mknod fifo 0 is fifo 1 through it fifo\n"))
    }
}
