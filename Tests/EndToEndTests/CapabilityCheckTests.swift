import Foundation
import Testing

/// The capability checks detrec makes itself (ioprio_set's IOPRIO_CLASS_RT,
/// setpriority's raise, System V IPC's CAP_IPC_OWNER, CAP_SYS_ADMIN and
/// CAP_SYS_RESOURCE, chroot's CAP_SYS_CHROOT) look at the guest's emulated
/// effective set, which capset changes, not at detrec's host thread's.
@Suite(.serialized) struct CapabilityCheckTests {
    let dir = Harness.temporaryDirectory()

    @Test func checksFollowTheGuestsEffectiveCapabilities() throws {
        let out = try Harness.matchesNative(#"""
            #include <errno.h>
            #include <stdio.h>
            #include <string.h>
            #include <unistd.h>
            #include <sys/msg.h>
            #include <sys/resource.h>
            #include <sys/syscall.h>
            #include <linux/capability.h>
            static struct __user_cap_data_struct caps[2];
            static int effective(unsigned long long eff) {
              struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
              struct __user_cap_data_struct d[2]; memcpy(d, caps, sizeof d);
              d[0].effective = (unsigned)eff & (d[0].permitted); d[1].effective = (unsigned)(eff >> 32) & d[1].permitted;
              return syscall(SYS_capset, &h, d);
            }
            static const char *e(long r) { return r >= 0 ? "ok" : errno == EPERM ? "EPERM" : errno == EACCES ? "EACCES" : errno == ENOENT ? "ENOENT" : errno == ENOTDIR ? "ENOTDIR" : strerror(errno); }
            static void checks(const char *when) {
              printf("%s:\n", when);
              printf("  ioprio_set RT %s\n", e(syscall(SYS_ioprio_set, 1, 0, (1 << 13) | 4)));
              syscall(SYS_ioprio_set, 1, 0, (2 << 13) | 4);
              printf("  setpriority -5 %s\n", e(setpriority(PRIO_PROCESS, 0, -5)));
              setpriority(PRIO_PROCESS, 0, 0);
              int q = msgget(IPC_PRIVATE, 0);   /* no rights for anyone: only CAP_IPC_OWNER passes */
              struct { long type; char text[4]; } m = {1, "hi"};
              printf("  msgsnd to a mode-0 queue %s\n", e(msgsnd(q, &m, 3, IPC_NOWAIT)));
              struct msqid_ds ds; msgctl(q, IPC_STAT, &ds);
              printf("  msgctl IPC_STAT of it %s\n", e(msgctl(q, IPC_STAT, &ds)));
              ds.msg_qbytes = 1 << 20;
              printf("  msg_qbytes above MSGMNB %s\n", e(msgctl(q, IPC_SET, &ds)));
              msgctl(q, IPC_RMID, 0);
              printf("  chroot / %s, /nonexistent %s, /etc/passwd %s\n", e(syscall(SYS_chroot, "/")), e(syscall(SYS_chroot, "/nonexistent")),
                     e(syscall(SYS_chroot, "/etc/passwd")));
            }
            int main(void) {
              struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
              syscall(SYS_capget, &h, caps);
              struct rlimit none = {0, 0}; setrlimit(RLIMIT_NICE, &none);
              unsigned long long all = caps[0].permitted | (unsigned long long)caps[1].permitted << 32;
              checks("with detrec's capabilities");
              effective(all & ~(1ull << CAP_SYS_NICE | 1ull << CAP_SYS_ADMIN | 1ull << CAP_SYS_RESOURCE | 1ull << CAP_SYS_CHROOT | 1ull << CAP_IPC_OWNER));
              checks("without CAP_SYS_NICE, CAP_SYS_ADMIN, CAP_SYS_RESOURCE, CAP_SYS_CHROOT, CAP_IPC_OWNER");
              effective(all);
              checks("with them again");
              return 0;
            }
            """#, name: "capchecks", in: dir)
        #expect(out.contains("without CAP_SYS_NICE"))
        #expect(out.contains("  msgsnd to a mode-0 queue EACCES\n"))
        #expect(out.contains("  chroot / EPERM, /nonexistent ENOENT, /etc/passwd ENOTDIR\n"))
    }

    /// chroot to a directory other than the current root is refused by
    /// name: per-process roots are not emulated (ChangeRoot.swift).
    @Test func chrootElsewhereIsRefusedWithAReport() throws {
        let exe = try Harness.compile(#"""
            #include <errno.h>
            #include <stdio.h>
            #include <unistd.h>
            int main(void) {
              int r = chroot("/tmp");
              printf("chroot /tmp %d %s\n", r, r < 0 && errno == ENOSYS ? "ENOSYS" : "?");
              printf("chroot / %d\n", chroot("/"));
              return 0;
            }
            """#, name: "chrootelsewhere", in: dir)
        let (rec, _) = try Harness.roundTrip([exe], in: dir)
        #expect(rec.stdout == "chroot /tmp -1 ENOSYS\nchroot / 0\n")
        #expect(rec.stderr.contains("chroot to /tmp"))
    }
}
