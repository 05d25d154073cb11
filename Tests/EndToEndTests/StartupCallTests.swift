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

    /// sched_getattr/sched_setattr: the emulated policy, reset-on-fork and
    /// nice, Linux's size rules (0 is the first version, a larger struct
    /// needs a zero tail, otherwise E2BIG with the size written back), and
    /// the fair class's slice as the host reports it.
    @Test func schedAttributesMatchLinux() throws {
        let out = try Harness.matchesNative(ProcessControlTests.prelude + #"""
            #include <stdint.h>
            #include <sys/resource.h>
            struct attr { uint32_t size, policy; uint64_t flags; int32_t nice; uint32_t prio; uint64_t rt, dl, per; uint32_t umin, umax, tail[4]; };
            static struct attr a;
            static void get(const char *what, unsigned size) {
              memset(&a, 0xab, sizeof a);
              long r = syscall(SYS_sched_getattr, 0, &a, size, 0);
              if (r < 0) { printf("%s: %d\n", what, -errno); return; }
              printf("%s: size %u policy %u flags %llu nice %d prio %u slice %d dl %llu per %llu util %x %x tail %x\n", what, a.size, a.policy,
                     (unsigned long long)a.flags, a.nice, a.prio, a.rt > 0, (unsigned long long)a.dl, (unsigned long long)a.per, a.umin, a.umax, a.tail[0]);
            }
            static void set(const char *what, unsigned size, unsigned policy, uint64_t flags, int nice) {
              memset(&a, 0, sizeof a); a.size = size; a.policy = policy; a.flags = flags; a.nice = nice;
              long r = syscall(SYS_sched_setattr, 0, &a, 0);
              unsigned written = a.size;
              printf("%s: %d size %u; scheduler %d nice %d\n", what, r < 0 ? -errno : 0, written, sched_getscheduler(0), getpriority(PRIO_PROCESS, 0));
            }
            static void *thread(void *p) { get("thread", 56); return p; }
            int main(void) {
              get("v1", 56); get("v0", 48); get("larger", 72); get("too small", 40);
              printf("flags %d pid -1 %d null %d\n", syscall(SYS_sched_getattr, 0, &a, 56, 1) < 0 ? -errno : 0,
                     syscall(SYS_sched_getattr, -1, &a, 56, 0) < 0 ? -errno : 0, syscall(SYS_sched_getattr, 0, NULL, 56, 0) < 0 ? -errno : 0);
              printf("no such thread %d\n", syscall(SYS_sched_getattr, 999999, &a, 56, 0) < 0 ? -errno : 0);
              set("nice 5", 48, SCHED_OTHER, 0, 5); get("after", 56);
              set("batch nice 7", 48, SCHED_BATCH, 0, 7); get("after", 56);
              set("idle keeps nice", 0, SCHED_IDLE, 0, 9); get("after", 56);
              set("reset on fork", 48, SCHED_OTHER, 1, 8); get("after", 56);
              pthread_t t; pthread_create(&t, NULL, thread, NULL); pthread_join(t, NULL);
              fflush(stdout);
              if (fork() == 0) { get("child", 56); fflush(stdout); _exit(0); }
              wait(NULL);
              set("keep params", 48, SCHED_BATCH, 0x10, 0); get("after", 56);
              set("keep policy", 48, 0, 0x08, 11); get("after", 56);
              set("size 12", 12, SCHED_OTHER, 0, 0);
              memset(&a, 0, sizeof a); a.size = 80; a.tail[3] = 1;
              int dirty = syscall(SYS_sched_setattr, 0, &a, 0) < 0 ? -errno : 0;
              printf("dirty tail %d size %u\n", dirty, a.size);
              memset(&a, 0, sizeof a); a.size = 80; a.nice = 12;
              printf("clean tail %d\n", syscall(SYS_sched_setattr, 0, &a, 0) < 0 ? -errno : 0); get("after", 56);
              set("bad policy", 48, 9, 0, 0); set("bad flags", 48, SCHED_OTHER, 0x100, 0);
              set("priority on other", 48, SCHED_OTHER, 0, 0);
              memset(&a, 0, sizeof a); a.size = 48; a.prio = 3;
              printf("priority on other %d\n", syscall(SYS_sched_setattr, 0, &a, 0) < 0 ? -errno : 0);
              memset(&a, 0, sizeof a); a.size = 48; a.policy = SCHED_FIFO;
              printf("fifo without priority %d\n", syscall(SYS_sched_setattr, 0, &a, 0) < 0 ? -errno : 0);
              memset(&a, 0, sizeof a); a.size = 48; a.policy = 6; a.rt = 10; a.dl = 5;
              printf("deadline shorter than runtime %d\n", syscall(SYS_sched_setattr, 0, &a, 0) < 0 ? -errno : 0);
              memset(&a, 0, sizeof a); a.size = 48; a.flags = 0x20;
              printf("clamp in a v0 struct %d\n", syscall(SYS_sched_setattr, 0, &a, 0) < 0 ? -errno : 0);
              return 0;
            }
            """#, name: "sched_attr", flags: ["-static", "-pthread"], in: dir)
        #expect(out.contains("v0: size 48 policy 0 flags 0 nice 0 prio 0 slice 1"))
        #expect(out.contains("larger: size 56 policy 0"))
        #expect(out.contains("too small: -22\n"))
        #expect(out.contains("batch nice 7: 0 size 48; scheduler 3 nice 7\n"))
        #expect(out.contains("idle keeps nice: 0 size 0; scheduler 5 nice 7\n"))
        #expect(out.contains("keep params: 0 size 48; scheduler 0 nice 8\n"))
        #expect(out.contains("keep policy: 0 size 48; scheduler 0 nice 11\n"))
        #expect(out.contains("reset on fork: 0 size 48; scheduler 1073741824 nice 8\n"))
        #expect(out.contains("child: size 56 policy 0 flags 0 nice 8"))
        #expect(out.contains("size 12: -7 size 56;"))
        #expect(out.contains("dirty tail -7 size 56\n"))
    }

    /// utime, utimes and futimesat (older programs and Tcl's `file mtime`
    /// call them), relative to the emulated working directory, and
    /// readahead.
    @Test func legacyTimestampCallsMatchLinux() throws {
        let out = try Harness.matchesNative(ProcessControlTests.prelude + #"""
            #include <utime.h>
            #include <sys/stat.h>
            #include <sys/time.h>
            static void stamp(const char *what, int r, const char *path) {
              struct stat st; stat(path, &st);
              printf("%s %d: atime %ld.%09ld mtime %ld.%09ld\n", what, r < 0 ? -errno : r, (long)st.st_atim.tv_sec, st.st_atim.tv_nsec,
                     (long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
            }
            int main(void) {
              char dir[64]; snprintf(dir, sizeof dir, "/tmp/detrec-utime-%d", getpid());
              mkdir(dir, 0700); chdir(dir);
              int f = open("file", O_CREAT | O_RDWR, 0600); write(f, "0123456789", 10);
              struct utimbuf ub = { 1000, 2000 };
              stamp("utime", syscall(SYS_utime, "file", &ub), "file");
              struct timeval tv[2] = { { 3000, 500000 }, { 4000, 250 } };
              stamp("utimes", syscall(SYS_utimes, "file", tv), "file");
              int d = open(".", O_RDONLY | O_DIRECTORY);
              tv[1].tv_sec = 5000;
              stamp("futimesat", syscall(SYS_futimesat, d, "file", tv), "file");
              tv[1].tv_sec = 6000;
              stamp("futimesat fd", syscall(SYS_futimesat, f, NULL, tv), "file");
              tv[0].tv_usec = 1000000;
              stamp("bad usec", syscall(SYS_utimes, "file", tv), "file");
              struct stat st;
              int r = syscall(SYS_utime, "file", NULL); stat("file", &st);
              printf("utime now %d %d\n", r, st.st_mtim.tv_sec > 6000);
              printf("missing %d, readahead %ld", syscall(SYS_utimes, "nothing", NULL) < 0 ? -errno : 0, (long)syscall(SYS_readahead, f, 0, 4096));
              int p[2]; pipe(p);
              printf(", on a pipe %d\n", syscall(SYS_readahead, p[0], 0, 4096) < 0 ? -errno : 0);
              unlink("file"); chdir("/"); rmdir(dir);
              return 0;
            }
            """#, name: "legacy_utime", in: dir)
        #expect(out.contains("utime 0: atime 1000.000000000 mtime 2000.000000000\n"))
        #expect(out.contains("utimes 0: atime 3000.500000000 mtime 4000.000250000\n"))
        #expect(out.contains("futimesat fd 0: atime 3000.500000000 mtime 6000.000250000\n"))
        #expect(out.contains("bad usec -22"))
        #expect(out.contains("utime now 0 1\n"))
    }
}
