import Foundation
import Testing

/// The NUMA memory-policy calls as a one-node Linux answers them: every
/// mode, flag and node-mask check of mm/mempolicy.c, the thread's policy
/// (per thread, kept by fork) and each mapping's (mbind) as get_mempolicy
/// reports them, migrate_pages and move_pages with nothing to move.
@Suite(.serialized) struct MemoryPolicyTests {
    let dir = Harness.temporaryDirectory()

    @Test func policiesAsAOneNodeLinuxKeepsThem() throws {
        let out = try Harness.matchesNative(#"""
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#define P(name, e) do { long r_ = (e); printf("%s %ld\n", name, r_ < 0 ? -(long)errno : r_); } while (0)
#define SETP(m, mask, max) syscall(SYS_set_mempolicy, m, mask, max)
static void show(const char *what, void *addr, unsigned long flags) {
  int mode = -99; unsigned long nodes[4] = {0xdead, 0xdead, 0xdead, 0xdead};
  long r = syscall(SYS_get_mempolicy, &mode, nodes, 129, addr, flags);
  if (r < 0) printf("%s get -> %d\n", what, -errno);
  else printf("%s mode %d nodes %lx %lx %lx %lx\n", what, mode, nodes[0], nodes[1], nodes[2], nodes[3]);
}
static void *thread(void *a) { show("new thread", 0, 0); P("thread sets bind", SETP(2, (unsigned long[]){1}, 2)); show("thread", 0, 0); return a; }
int main(void) {
  setvbuf(stdout, NULL, _IONBF, 0);
  unsigned long one[20] = {1}, none[20] = {0}, two[20] = {2}, both[20] = {3};
  show("start", 0, 0);
  P("preferred 0", SETP(1, one, 64)); show("preferred", 0, 0);
  P("preferred empty", SETP(1, none, 64)); show("local via preferred", 0, 0);
  P("preferred empty static", SETP(1 | (1 << 15), none, 64));
  P("bind node 1", SETP(2, two, 64));
  P("bind 0,1", SETP(2, both, 64)); show("bind", 0, 0);
  P("bind 0,1 static", SETP(2 | (1 << 15), both, 64)); show("bind static", 0, 0);
  P("bind 1 relative", SETP(2 | (1 << 14), two, 64)); show("bind relative", 0, 0);
  P("static+relative", SETP(2 | (3 << 14), one, 64));
  P("balancing interleave", SETP(3 | (1 << 13), one, 64));
  P("balancing bind", SETP(2 | (1 << 13), one, 64)); show("balancing", 0, 0);
  P("interleave", SETP(3, one, 64)); show("interleave", 0, 0);
  { int node = -1; P("interleave next node", syscall(SYS_get_mempolicy, &node, 0, 0, 0, 1)); printf("node %d\n", node); }
  P("mode 7", SETP(7, one, 64));
  P("mode -1", SETP(-1, one, 64));
  P("default with nodes", SETP(0, one, 64));
  P("local with nodes", SETP(4, one, 64));
  P("maxnode 0 mask", SETP(2, one, 0));
  P("maxnode huge", SETP(2, one, 4096 * 8 + 2));
  unsigned long big[40] = {1}; big[17] = 1;
  P("node 1088 beyond max", SETP(2, big, 40 * 64));
  big[17] = 0; big[15] = 1ul << 63;
  P("node 1023 offline", SETP(1, big, 40 * 64));
  P("bad mask ptr", SETP(2, (void *)8, 64));
  P("default", SETP(0, 0, 0)); show("default", 0, 0);
  P("get node no interleave", syscall(SYS_get_mempolicy, 0, 0, 0, 0, 1));
  P("get addr without F_ADDR", syscall(SYS_get_mempolicy, 0, 0, 0, (void *)4096, 0));
  P("get bad flags", syscall(SYS_get_mempolicy, 0, 0, 0, 0, 8));
  P("get mems allowed+addr", syscall(SYS_get_mempolicy, 0, 0, 0, 0, 6));
  P("get maxnode 0 mask", syscall(SYS_get_mempolicy, 0, one, 0, 0, 0));
  show("mems allowed", 0, 4);
  P("get maxnode huge", syscall(SYS_get_mempolicy, 0, big, 40000, 0, 0));
  char *m = mmap(0, 16 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  P("mbind preferred", syscall(SYS_mbind, m + 4096, 4096, 1, one, 64, 0));
  show("vma 0", m, 2); show("vma 1", m + 4096, 2); show("vma 2", m + 8192, 2);
  P("mbind bind strict move", syscall(SYS_mbind, m, 2 * 4096, 2, one, 64, 3)); show("vma 0 bind", m, 2);
  P("mbind unaligned", syscall(SYS_mbind, m + 1, 4096, 1, one, 64, 0));
  P("mbind bad flags", syscall(SYS_mbind, m, 4096, 1, one, 64, 8));
  P("mbind zero len", syscall(SYS_mbind, m, 0, 1, one, 64, 0));
  P("mbind node 1", syscall(SYS_mbind, m, 4096, 2, two, 64, 0));
  munmap(m + 10 * 4096, 4096);
  P("mbind over hole", syscall(SYS_mbind, m + 8 * 4096, 4 * 4096, 2, one, 64, 0));
  P("mbind default over hole", syscall(SYS_mbind, m + 8 * 4096, 4 * 4096, 0, 0, 0, 0));
  P("mbind default nothing", syscall(SYS_mbind, m + 10 * 4096, 4096, 0, 0, 0, 0));
  P("home node 0 on bind", syscall(SYS_set_mempolicy_home_node, m, 4096, 0, 0));
  P("home node 0 on preferred", syscall(SYS_set_mempolicy_home_node, m + 4096, 2 * 4096, 0, 0));
  P("home node 1", syscall(SYS_set_mempolicy_home_node, m, 4096, 1, 0));
  P("home node flags", syscall(SYS_set_mempolicy_home_node, m, 4096, 0, 1));
  P("get unmapped", syscall(SYS_get_mempolicy, 0, 0, 0, m + 10 * 4096, 2));
  m[0] = 1;
  { int node = -1; P("node of page", syscall(SYS_get_mempolicy, &node, 0, 0, m, 3)); printf("page node %d\n", node); }
  void *pages[3] = {m, m + 5 * 4096, m + 10 * 4096}; int status[3] = {9, 9, 9}, nodes[3] = {0, 0, 0};
  P("move_pages stat", syscall(SYS_move_pages, 0, 3, pages, 0, status, 0)); printf("status %d %d %d\n", status[0], status[1], status[2]);
  P("move_pages to 0", syscall(SYS_move_pages, 0, 1, pages, nodes, status, 2)); printf("status %d\n", status[0]);
  nodes[0] = 1;
  P("move_pages to 1", syscall(SYS_move_pages, 0, 1, pages, nodes, status, 2));
  P("move_pages bad flags", syscall(SYS_move_pages, 0, 1, pages, 0, status, 8));
  P("move_pages no such pid", syscall(SYS_move_pages, 999999, 1, pages, 0, status, 0));
  P("migrate 0->0", syscall(SYS_migrate_pages, 0, 64, one, one));
  P("migrate to none", syscall(SYS_migrate_pages, 0, 64, one, none));
  P("migrate to 1 (root)", syscall(SYS_migrate_pages, 0, 64, one, two));
  P("migrate no such pid", syscall(SYS_migrate_pages, 999999, 64, one, one));
  P("set interleave for fork", SETP(3, one, 64));
  pthread_t t; pthread_create(&t, 0, thread, 0); pthread_join(t, 0); show("main after thread", 0, 0);
  pid_t p = fork();
  if (p == 0) { show("child", 0, 0); show("child vma", m, 2); _exit(0); }
  waitpid(p, 0, 0);
  return 0;
}
"""#, name: "mempolicy", in: dir)
        #expect(out.contains("vma 1 mode 1 nodes 1 0 dead dead\n"))
        #expect(out.contains("bind node 1 -22\n"))
        #expect(out.contains("child vma mode 2 nodes 1 0 dead dead\n"))
    }
}
