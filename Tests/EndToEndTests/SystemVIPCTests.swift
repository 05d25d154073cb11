import Foundation
import Testing

/// System V IPC as Linux has it, emulated inside the recording: shared
/// memory segments coherent between recorded processes, semaphores with
/// SEM_UNDO and parked waiters, message queues with types and blocking
/// senders and receivers. Each program is compared with a native run and
/// its recording replayed.
@Suite(.serialized) struct SystemVIPCTests {
    let dir = Harness.temporaryDirectory()

    @Test func sharedMemorySegmentsBetweenProcesses() throws {
        let out = try Harness.matchesNative(#"""
            #define _GNU_SOURCE
            #include <stdio.h>
            #include <string.h>
            #include <errno.h>
            #include <unistd.h>
            #include <sys/ipc.h>
            #include <sys/shm.h>
            #include <sys/wait.h>
            #include <signal.h>
            #include <setjmp.h>
            static sigjmp_buf jb;
            #define TRY(label, expr) do { errno = 0; long r_ = (long)(expr); printf("%s: %s\n", label, r_ == -1 ? strerror(errno) : "ok"); } while (0)
            static void onsegv(int s) { siglongjmp(jb, 1); }
            int main(void) {
              int id = shmget(IPC_PRIVATE, 10000, IPC_CREAT | 0600);
              if (id < 0) { perror("shmget"); return 1; }
              struct shmid_ds ds;
              shmctl(id, IPC_STAT, &ds);
              printf("size %zu nattch %lu mode %o cpid-is-me %d lpid %d\n", ds.shm_segsz, ds.shm_nattch, ds.shm_perm.mode & 0777, ds.shm_cpid == getpid(), ds.shm_lpid);
              char *m = shmat(id, NULL, 0);
              strcpy(m, "hello from parent");
              shmctl(id, IPC_STAT, &ds);
              printf("after attach nattch %lu lpid-is-me %d atime-set %d\n", ds.shm_nattch, ds.shm_lpid == getpid(), ds.shm_atime != 0);
              fflush(stdout);
              pid_t c = fork();
              if (c == 0) {
                shmctl(id, IPC_STAT, &ds);
                printf("child sees '%s' nattch %lu\n", m, ds.shm_nattch);
                strcpy(m + 5000, "written by the child");
                char *again = shmat(id, NULL, SHM_RDONLY);
                printf("child second attach reads '%s'\n", again + 5000);
                fflush(stdout);
                _exit(0);
              }
              waitpid(c, 0, 0);
              printf("parent sees '%s'\n", m + 5000);
              shmctl(id, IPC_STAT, &ds);
              printf("after child exit nattch %lu\n", ds.shm_nattch);
              /* keys, IPC_EXCL, sizes */
              key_t key = 0x5eed0000 + (getpid() & 0xffff);
              int k1 = shmget(key, 4096, IPC_CREAT | IPC_EXCL | 0640);
              int k2 = shmget(key, 4096, 0);
              int k3 = shmget(key, 4096, IPC_CREAT | IPC_EXCL | 0600);
              printf("keyed: same id %d, excl errno %s\n", k1 == k2, strerror(errno));
              TRY("bigger than segment", shmget(key, 8192, 0));
              TRY("missing key", shmget(key + 1, 4096, 0));
              TRY("size zero", shmget(IPC_PRIVATE, 0, IPC_CREAT|0600));
              /* read-only attach faults on write */
              char *ro = shmat(k1, NULL, SHM_RDONLY);
              signal(SIGSEGV, onsegv);
              if (sigsetjmp(jb, 1) == 0) { ro[0] = 1; printf("wrote read-only!\n"); } else printf("read-only attach: SIGSEGV on write\n");
              /* attach at an address */
              void *want = (void *)0x7e0000000000UL;
              char *at = shmat(k1, want, 0);
              printf("at address: %d\n", at == want);
              TRY("unaligned without SHM_RND", shmat(k1, (char *)want + 12, 0));
              char *rnd = shmat(k1, (char *)0x7d0000000000UL + 12, SHM_RND);
              printf("SHM_RND rounds down: %d\n", rnd == (char *)0x7d0000000000UL);
              strcpy(rnd, "via rnd");
              TRY("overlapping attach", shmat(k1, want, 0));
              TRY("shmdt", shmdt(at));
              TRY("shmdt again", shmdt(at));
              /* IPC_SET */
              shmctl(k1, IPC_STAT, &ds);
              ds.shm_perm.mode = 0604;
              shmctl(k1, IPC_SET, &ds);
              shmctl(k1, IPC_STAT, &ds);
              printf("mode after IPC_SET %o\n", ds.shm_perm.mode & 0777);
              /* IPC_RMID with attachments: SHM_DEST, still usable, key gone */
              shmctl(id, IPC_RMID, 0);
              shmctl(id, IPC_STAT, &ds);
              printf("removed while attached: dest %d key %d nattch %lu; still reads '%s'\n", !!(ds.shm_perm.mode & SHM_DEST), ds.shm_perm.__key, ds.shm_nattch, m);
              shmdt(m);
              TRY("stat after last detach", shmctl(id, IPC_STAT, &ds));
              shmctl(k1, IPC_RMID, 0);
              TRY("bad id", shmctl(12345678, IPC_STAT, &ds));
              TRY("bad command", shmctl(k2, 99, &ds));
              return 0;
            }
            """#, name: "sysvshm", in: dir)
        #expect(out.contains("parent sees 'written by the child'"))
        #expect(out.contains("stat after last detach: Invalid argument"))
    }

    @Test func semaphoresWithUndoAndParkedWaiters() throws {
        let out = try Harness.matchesNative(#"""
            #define _GNU_SOURCE
            #include <stdio.h>
            #include <string.h>
            #include <errno.h>
            #include <time.h>
            #include <unistd.h>
            #include <sys/ipc.h>
            #include <sys/sem.h>
            #include <sys/wait.h>
            #include <pthread.h>
            #define TRY(label, expr) do { errno = 0; long r_ = (long)(expr); printf("%s: %s\n", label, r_ == -1 ? strerror(errno) : "ok"); } while (0)
            union semun { int val; struct semid_ds *buf; unsigned short *array; };
            static int op(int id, int num, int delta, int flags) { struct sembuf b = { num, delta, flags }; return semop(id, &b, 1); }
            static void waitfor(int id, int num, int cmd, int n) { while (semctl(id, num, cmd) != n) usleep(1000); }
            static int tid_set;
            static void *waiter(void *a) { op(tid_set, 0, -1, 0); return 0; }
            int main(void) {
              int id = semget(IPC_PRIVATE, 3, IPC_CREAT | 0600);
              struct semid_ds ds; union semun u = { .buf = &ds };
              semctl(id, 0, IPC_STAT, u);
              printf("nsems %lu mode %o otime %ld\n", ds.sem_nsems, ds.sem_perm.mode & 0777, ds.sem_otime);
              unsigned short all[3] = { 1, 2, 3 };
              u.array = all; semctl(id, 0, SETALL, u);
              unsigned short got[3]; u.array = got; semctl(id, 0, GETALL, u);
              printf("GETALL %d %d %d, GETPID is me %d\n", got[0], got[1], got[2], semctl(id, 1, GETPID) == getpid());
              u.val = 5; semctl(id, 2, SETVAL, u);
              printf("GETVAL %d\n", semctl(id, 2, GETVAL));
              u.val = 40000; TRY("SETVAL too big", semctl(id, 2, SETVAL, u));
              TRY("GETVAL bad semnum", semctl(id, 7, GETVAL));
              TRY("nowait would block", op(id, 0, -2, IPC_NOWAIT));
              TRY("wait-for-zero nowait", op(id, 0, 0, IPC_NOWAIT));
              struct sembuf two[2] = { { 0, -1, 0 }, { 1, -3, IPC_NOWAIT } };
              TRY("atomic pair fails", semop(id, two, 2));
              printf("untouched: %d\n", semctl(id, 0, GETVAL));
              TRY("big value", op(id, 2, 32767, 0));
              TRY("EFBIG", op(id, 3, 1, 0));
              struct timespec ts = { 0, 20 * 1000 * 1000 };
              struct sembuf tb = { 1, -5, 0 };
              TRY("semtimedop times out", semtimedop(id, &tb, 1, &ts));
              /* ping-pong between processes: sem 0 parent's turn, sem 1 child's */
              u.val = 0; semctl(id, 0, SETVAL, u); semctl(id, 1, SETVAL, u);
              fflush(stdout);
              pid_t c = fork();
              if (c == 0) {
                for (int i = 0; i < 3; i++) { op(id, 1, -1, 0); printf("child %d\n", i); fflush(stdout); op(id, 0, 1, 0); }
                op(id, 2, 0, 0);   /* wait for zero */
                printf("child saw zero\n"); fflush(stdout);
                op(id, 0, 10, SEM_UNDO);
                _exit(0);
              }
              for (int i = 0; i < 3; i++) { printf("parent %d\n", i); fflush(stdout); op(id, 1, 1, 0); op(id, 0, -1, 0); }
              u.val = 1; semctl(id, 2, SETVAL, u);
              waitfor(id, 2, GETZCNT, 1);
              printf("GETZCNT 1\n");
              u.val = 0; semctl(id, 2, SETVAL, u);
              waitpid(c, 0, 0);
              printf("after SEM_UNDO exit: %d, pid is child %d\n", semctl(id, 0, GETVAL), semctl(id, 0, GETPID) == c);
              /* a thread parks; GETNCNT sees it */
              tid_set = id;
              pthread_t t; pthread_create(&t, 0, waiter, 0);
              waitfor(id, 0, GETNCNT, 1);
              printf("GETNCNT 1\n");
              op(id, 0, 1, 0);
              pthread_join(t, 0);
              printf("GETNCNT after %d\n", semctl(id, 0, GETNCNT));
              /* keys */
              key_t key = 0x5e300000 + (getpid() & 0xffff);
              int k = semget(key, 2, IPC_CREAT | IPC_EXCL | 0600);
              printf("same key same set %d\n", semget(key, 0, 0) == k);
              TRY("more sems than the set", semget(key, 5, 0));
              TRY("EXCL", semget(key, 2, IPC_CREAT | IPC_EXCL | 0600));
              TRY("nsems 0 new", semget(IPC_PRIVATE, 0, IPC_CREAT | 0600));
              /* EIDRM for a waiter */
              fflush(stdout);
              c = fork();
              if (c == 0) { errno = 0; int r = op(k, 0, -1, 0); printf("child woke: %d %s\n", r, strerror(errno)); fflush(stdout); _exit(0); }
              waitfor(k, 0, GETNCNT, 1);
              semctl(k, 0, IPC_RMID);
              waitpid(c, 0, 0);
              semctl(id, 0, IPC_STAT, (union semun){ .buf = &ds });
              printf("otime set %d\n", ds.sem_otime != 0);
              semctl(id, 0, IPC_RMID);
              TRY("stat removed", semctl(id, 0, IPC_STAT, (union semun){ .buf = &ds }));
              return 0;
            }
            """#, name: "sysvsem", flags: ["-static", "-pthread"], in: dir)
        #expect(out.contains("child woke: -1 Identifier removed"))
        #expect(out.contains("after SEM_UNDO exit: 0, pid is child 1"))
    }

    @Test func messageQueuesWithTypesAndBlocking() throws {
        let out = try Harness.matchesNative(#"""
            #define _GNU_SOURCE
            #include <stdio.h>
            #include <string.h>
            #include <errno.h>
            #include <unistd.h>
            #include <sys/ipc.h>
            #include <sys/msg.h>
            #include <sys/wait.h>
            #define TRY(label, expr) do { errno = 0; long r_ = (long)(expr); printf("%s: %s\n", label, r_ == -1 ? strerror(errno) : "ok"); } while (0)
            struct m { long type; char text[64]; };
            static int snd(int q, long type, const char *s, int flags) { struct m b = { type }; strcpy(b.text, s); return msgsnd(q, &b, strlen(s) + 1, flags); }
            static void rcv(int q, long type, int flags, size_t size) {
              struct m b = { 0 }; errno = 0;
              long n = msgrcv(q, &b, size, type, flags);
              if (n < 0) printf("msgrcv(%ld): %s\n", type, strerror(errno)); else printf("msgrcv(%ld): type %ld, %ld bytes '%.*s'\n", type, b.type, n, (int)n, b.text);
            }
            int main(void) {
              int q = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
              snd(q, 3, "three", 0); snd(q, 1, "one", 0); snd(q, 2, "two", 0); snd(q, 1, "uno", 0); snd(q, 5, "five", 0);
              struct msqid_ds ds; msgctl(q, IPC_STAT, &ds);
              printf("qnum %lu cbytes %lu qbytes %lu lspid me %d\n", ds.msg_qnum, ds.__msg_cbytes, ds.msg_qbytes, ds.msg_lspid == getpid());
              rcv(q, 2, 0, 64);
              rcv(q, -2, 0, 64);
              rcv(q, 1, MSG_EXCEPT, 64);
              rcv(q, 1, MSG_COPY | IPC_NOWAIT, 64);
              rcv(q, 0, 0, 2);
              rcv(q, 0, MSG_NOERROR, 2);
              rcv(q, 0, 0, 64);
              rcv(q, 0, IPC_NOWAIT, 64);
              rcv(q, 0, MSG_COPY, 64);
              TRY("type 0 send", snd(q, 0, "x", 0));
              struct m big = { 1 };
              TRY("too big", msgsnd(q, &big, 9000, 0));
              /* fill the queue: nowait EAGAIN */
              ds.msg_qbytes = 100; msgctl(q, IPC_SET, &ds);
              int sent = 0;
              while (snd(q, 7, "0123456789012345678", IPC_NOWAIT) == 0) sent++;
              printf("filled with %d, then %s\n", sent, strerror(errno));
              ds.msg_qbytes = 1000000;
              TRY("raise qbytes above MSGMNB", msgctl(q, IPC_SET, &ds));
              /* a blocked sender and a blocked receiver between processes */
              fflush(stdout);
              pid_t c = fork();
              if (c == 0) {
                snd(q, 8, "after room", 0);   /* blocks until the parent reads */
                rcv(q, 9, 0, 64);             /* blocks until the parent sends */
                fflush(stdout);
                _exit(0);
              }
              sleep(0);
              for (int i = 0; i < sent; i++) { struct m b; msgrcv(q, &b, 64, 7, 0); }
              rcv(q, 8, 0, 64);
              fflush(stdout);
              snd(q, 9, "to the child", 0);
              waitpid(c, 0, 0);
              msgctl(q, IPC_STAT, &ds);
              printf("lrpid child %d qnum %lu\n", ds.msg_lrpid == c, ds.msg_qnum);
              key_t key = 0x3e500000 + (getpid() & 0xffff);
              int k = msgget(key, IPC_CREAT | 0600);
              printf("same key %d\n", msgget(key, 0) == k);
              TRY("excl", msgget(key, IPC_CREAT | IPC_EXCL));
              msgctl(k, IPC_RMID, 0);
              msgctl(q, IPC_RMID, 0);
              TRY("removed", msgctl(q, IPC_STAT, &ds));
              return 0;
            }
            """#, name: "sysvmsg", in: dir)
        #expect(out.contains("msgrcv(9): type 9, 13 bytes 'to the child'"))
    }

    /// Two attachments of one segment in one process: a write through one
    /// reaches another process even though the other attachment's copy is
    /// stale (the changed page wins when the memory leaves the vCPU).
    @Test func twoAttachmentsInOneProcess() throws {
        let out = try Harness.matchesNative(#"""
            #include <stdio.h>
            #include <string.h>
            #include <unistd.h>
            #include <sys/shm.h>
            #include <sys/wait.h>
            int main(void) {
              int id = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600);
              char *a = shmat(id, NULL, 0), *b = shmat(id, NULL, 0);
              strcpy(a, "through a");
              fflush(stdout);
              pid_t c = fork();
              if (c == 0) { printf("child: a '%s' b '%s'\n", a, b); fflush(stdout); strcpy(b, "child via b"); _exit(0); }
              waitpid(c, 0, 0);
              printf("parent: a '%s' b '%s'\n", a, b);
              shmctl(id, IPC_RMID, 0);
              return 0;
            }
            """#, name: "twoattach", in: dir)
        #expect(out == "child: a 'through a' b 'through a'\nparent: a 'child via b' b 'child via b'\n")
    }

    /// /proc/sysvipc/* list the recording's objects (ipcs reads them), as
    /// Linux lists a namespace's: before, the host's were shown.
    @Test func procSysvipcListsTheRecordingsObjects() throws {
        let out = try Harness.matchesNative(#"""
            #include <stdio.h>
            #include <stdlib.h>
            #include <string.h>
            #include <sys/ipc.h>
            #include <sys/msg.h>
            #include <sys/sem.h>
            #include <sys/shm.h>
            /* The line of `file` whose second column is `id`, its columns 1..ncols (times and pids left out). */
            static void show(const char *file, int id, const int *cols, int ncols) {
              FILE *f = fopen(file, "r");
              if (!f) { perror(file); return; }
              char line[512]; int found = 0;
              if (fgets(line, sizeof line, f)) printf("%s header: %.21s\n", file, line);
              while (fgets(line, sizeof line, f)) {
                char *w[20]; int n = 0;
                for (char *t = strtok(line, " \n"); t && n < 20; t = strtok(0, " \n")) w[n++] = t;
                if (n < 2 || atoi(w[1]) != id) continue;
                found = 1;
                printf("%s:", file);
                for (int i = 0; i < ncols; i++) printf(" %s", cols[i] < n ? w[cols[i]] : "?");
                printf("\n");
              }
              if (!found) printf("%s: no line for the object\n", file);
              fclose(f);
            }
            int main(void) {
              int q = msgget(IPC_PRIVATE, IPC_CREAT | 0640);
              struct { long type; char text[10]; } m = { 7, "123456789" };
              msgsnd(q, &m, 10, 0); msgsnd(q, &m, 5, 0);
              int s = semget(IPC_PRIVATE, 3, IPC_CREAT | 0604);
              int h = shmget(IPC_PRIVATE, 10000, IPC_CREAT | 0600);
              void *at = shmat(h, 0, 0);
              /* msg: key perms cbytes qnum; sem: key perms nsems; shm: key perms size nattch */
              show("/proc/sysvipc/msg", q, (int[]){0, 2, 3, 4}, 4);
              show("/proc/sysvipc/sem", s, (int[]){0, 2, 3}, 3);
              show("/proc/sysvipc/shm", h, (int[]){0, 2, 3, 6}, 4);
              shmdt(at);
              shmctl(h, IPC_RMID, 0); semctl(s, 0, IPC_RMID); msgctl(q, IPC_RMID, 0);
              show("/proc/sysvipc/msg", q, (int[]){0}, 1);
              return 0;
            }
            """#, name: "sysvipcproc", in: dir)
        #expect(out == """
            /proc/sysvipc/msg header:        key      msqid
            /proc/sysvipc/msg: 0 640 15 2
            /proc/sysvipc/sem header:        key      semid
            /proc/sysvipc/sem: 0 604 3
            /proc/sysvipc/shm header:        key      shmid
            /proc/sysvipc/shm: 0 600 10000 1
            /proc/sysvipc/msg header:        key      msqid
            /proc/sysvipc/msg: no line for the object

            """)
    }
}
