import Foundation
import Testing

/// Identity changes as Linux makes them (set*id, setgroups, capabilities,
/// keepcaps, exec's rules), emulated per thread, and the host calls made
/// for a thread that dropped root checked with its ids: each program's
/// output must match a native run, and every replay the recording.
@Suite(.serialized) struct CredentialsTests {
    let dir = Harness.temporaryDirectory()

    static let dropsPrivileges = #"""
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/fsuid.h>
#include <sys/wait.h>
#include <linux/capability.h>
#define P(name, e) do { long r_ = (e); printf("%s %ld\n", name, r_ < 0 ? -(long)errno : r_); } while (0)
static void caps(const char *when) {
  struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct d[2];
  syscall(SYS_capget, &h, d);
  printf("%s caps eff %x perm %x inh %x\n", when, d[0].effective, d[0].permitted, d[0].inheritable);
}
static void status(void) {
  char line[256]; FILE *f = fopen("/proc/self/status", "r");
  while (fgets(line, sizeof line, f))
    if (!strncmp(line, "Uid:", 4) || !strncmp(line, "Gid:", 4) || !strncmp(line, "Groups:", 7) || !strncmp(line, "Cap", 3))
      fputs(line, stdout);
  fclose(f);
}
static pthread_barrier_t b1, b2;
static void *other(void *a) {
  pthread_barrier_wait(&b1); pthread_barrier_wait(&b2);
  printf("other thread uid %ld euid %ld\n", syscall(SYS_getuid), syscall(SYS_geteuid));
  return a;
}
int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IONBF, 0);
  if (argc > 1) {
    caps("after exec");
    status();
    P("dumpable after exec", prctl(PR_GET_DUMPABLE));
    P("keepcaps after exec", prctl(PR_GET_KEEPCAPS));
    return 0;
  }
  char d[] = "/tmp/detrec-cred-XXXXXX";
  if (!mkdtemp(d)) return 1;
  chmod(d, 0777);
  char secret[300], mine[300], viafs[300];
  snprintf(secret, sizeof secret, "%s/secret", d);
  snprintf(mine, sizeof mine, "%s/mine", d);
  snprintf(viafs, sizeof viafs, "%s/viafs", d);
  int fd = open(secret, O_CREAT | O_WRONLY, 0600); write(fd, "x", 1); close(fd);
  printf("uid %d euid %d\n", getuid(), geteuid());
  caps("root");
  pid_t p = fork();
  if (p == 0) {
    pthread_t t; pthread_barrier_init(&b1, 0, 2); pthread_barrier_init(&b2, 0, 2);
    pthread_create(&t, 0, other, 0);
    pthread_barrier_wait(&b1);
    gid_t g[] = {65534, 100};
    P("setgroups", setgroups(2, g));
    P("setgid", setgid(65534));
    P("setuid", setuid(65534));
    pthread_barrier_wait(&b2); pthread_join(t, 0);
    uid_t r, e, s; getresuid(&r, &e, &s); printf("resuid %d %d %d\n", r, e, s);
    gid_t gr, ge, gs; getresgid(&gr, &ge, &gs); printf("resgid %d %d %d\n", gr, ge, gs);
    gid_t list[8]; int n = getgroups(8, list); printf("groups %d:", n); for (int i = 0; i < n; i++) printf(" %d", list[i]); printf("\n");
    P("getgroups too small", getgroups(1, list));
    P("open secret", open(secret, O_RDONLY));
    P("access secret", access(secret, R_OK));
    fd = open(mine, O_CREAT | O_WRONLY, 0644);
    struct stat st; fstat(fd, &st); printf("mine owned by %d:%d\n", st.st_uid, st.st_gid); close(fd);
    P("chown secret", chown(secret, 65534, 65534));
    P("setuid 0", setuid(0));
    P("seteuid 0", seteuid(0));
    P("setresuid other", setresuid(-1, 1000, -1));
    P("setgroups again", setgroups(0, NULL));
    caps("dropped");
    status();
    P("kill root parent", kill(getppid(), 0));
    P("dumpable", prctl(PR_GET_DUMPABLE));
    _exit(0);
  }
  int ws; waitpid(p, &ws, 0); printf("child status %x\n", ws);
  p = fork();
  if (p == 0) {
    P("keepcaps", prctl(PR_SET_KEEPCAPS, 1));
    P("get keepcaps", prctl(PR_GET_KEEPCAPS));
    P("setresuid 1000", setresuid(1000, 1000, 1000));
    caps("kept");
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct cd[2];
    syscall(SYS_capget, &h, cd);
    cd[0].effective = cd[0].permitted; cd[1].effective = cd[1].permitted;
    P("capset effective", syscall(SYS_capset, &h, cd));
    cd[0].permitted |= 1u << 31; cd[1].permitted = 0xff;
    P("capset more", syscall(SYS_capset, &h, cd));
    caps("raised");
    P("setfsuid 65534", setfsuid(65534));
    P("setfsuid query", setfsuid(-1));
    fd = open(viafs, O_CREAT | O_WRONLY, 0644);
    struct stat st; fstat(fd, &st); printf("viafs owned by %d:%d\n", st.st_uid, st.st_gid); close(fd);
    caps("fs");
    P("setfsuid back", setfsuid(1000));
    P("setuid 0 with caps", setuid(0));
    status();
    _exit(0);
  }
  waitpid(p, &ws, 0); printf("child status %x\n", ws);
  p = fork();
  if (p == 0) {
    prctl(PR_SET_KEEPCAPS, 1);
    P("setresgid 1000", setresgid(1000, 1000, 1000));
    P("setresuid 1000", setresuid(1000, 1000, 1000));
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct cd[2];
    syscall(SYS_capget, &h, cd);
    cd[0].effective = cd[0].permitted; cd[1].effective = cd[1].permitted;
    syscall(SYS_capset, &h, cd);
    caps("before exec");
    execl("/proc/self/exe", "cred", "exec", (char *)0);
    P("exec", -1);
    _exit(1);
  }
  waitpid(p, &ws, 0); printf("child status %x\n", ws);
  stat(mine, &(struct stat){0});
  struct stat st; stat(mine, &st); printf("parent sees mine owned by %d\n", st.st_uid);
  unlink(secret); unlink(mine); unlink(viafs); rmdir(d);
  P("setuid 1 as root", setuid(1));
  P("getuid", getuid());
  caps("after");
  return 0;
}
"""#

    /// A root program creates a root-only file, drops to nobody (groups,
    /// gid, uid; another thread follows through glibc's broadcast), cannot
    /// open it (EACCES), creates one owned by 65534, cannot get root back,
    /// cannot signal its root parent; keepcaps keeps the permitted set over
    /// setresuid, setfsuid decides new files' owner, exec clears what a
    /// non-root process kept; /proc/self/status shows all of it.
    @Test func rootDropsPrivilegesAsLinuxDoes() throws {
        let out = try Harness.matchesNative(Self.dropsPrivileges, name: "drops", in: dir)
        guard geteuid() == 0 else { return }
        #expect(out.contains("open secret -13\n"))
        #expect(out.contains("mine owned by 65534:65534\n"))
        #expect(out.contains("setuid 0 -1\n"))
        #expect(out.contains("other thread uid 65534 euid 65534\n"))
        #expect(out.contains("Groups:\t100 65534 \n"))
        #expect(out.contains("viafs owned by 65534:0\n"))
        #expect(out.contains("after exec caps eff 0 perm 0 inh 0\n"))
    }

    /// runuser and su (PAM, setgroups/setgid/setuid, then exec of id) give
    /// what they give natively, recorded and replayed.
    @Test func runuserAndSuBecomeNobody() throws {
        for argv in [["/usr/sbin/runuser", "-u", "nobody", "--", "id"], ["/usr/bin/su", "-s", "/bin/sh", "nobody", "-c", "id"]] {
            guard FileManager.default.isExecutableFile(atPath: argv[0]) else { continue }
            let native = try Harness.run(argv)
            guard native.status == 0 else { continue }
            let (rec, _) = try Harness.roundTrip(argv, in: dir)
            #expect(rec.stdout == native.stdout, "\(argv[0])")
            #expect(rec.status == 0, "\(argv[0]): \(rec.stderr)")
        }
    }
}
