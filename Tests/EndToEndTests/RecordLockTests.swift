import Foundation
import Testing

/// File locks between recorded processes and threads, which are all one
/// host process: POSIX record locks kept per guest process (ranges, merge
/// and split, read and write, released by any close, not inherited,
/// F_GETLK with the holder's pid, F_SETLKW waking on release, EDEADLK),
/// OFD locks and flock per open file description, each compared with a
/// native run.
@Suite(.serialized) struct RecordLockTests {
    let dir = Harness.temporaryDirectory()

    static let prelude = #"""
        #define _GNU_SOURCE
        #include <errno.h>
        #include <fcntl.h>
        #include <pthread.h>
        #include <stdio.h>
        #include <stdlib.h>
        #include <string.h>
        #include <unistd.h>
        #include <sys/file.h>
        #include <sys/wait.h>
        static int lk(int fd, int cmd, int type, int whence, long start, long len) {
          struct flock fl; memset(&fl, 0, sizeof fl); fl.l_type = type; fl.l_whence = whence; fl.l_start = start; fl.l_len = len;
          return fcntl(fd, cmd, &fl) == 0 ? 0 : -errno;
        }
        /* What F_GETLK (or F_OFD_GETLK) says is in the way of a lock of `type`. */
        static void show(const char *who, int fd, int cmd, int type, long start, long len, pid_t expect) {
          struct flock fl; memset(&fl, 0, sizeof fl); fl.l_type = type; fl.l_start = start; fl.l_len = len;
          if (fcntl(fd, cmd, &fl) != 0) { printf("%s: getlk errno %d\n", who, errno); return; }
          if (fl.l_type == F_UNLCK) { printf("%s: [%ld,+%ld) free\n", who, start, len); return; }
          printf("%s: [%ld,+%ld) held %s [%ld,+%ld) by %s\n", who, start, len, fl.l_type == F_WRLCK ? "write" : "read",
                 (long)fl.l_start, (long)fl.l_len, fl.l_pid == expect ? "the expected pid" : fl.l_pid == -1 ? "-1" : "another pid");
        }

        """#

    @Test func posixLocksBetweenProcesses() throws {
        let out = try Harness.matchesNative(Self.prelude + #"""
            int main(int argc, char **argv) {
              const char *path = argv[1];
              int fd = open(path, O_CREAT | O_RDWR | O_TRUNC, 0600); char zero[100] = {0}; write(fd, zero, sizeof zero);
              // Adjacent read locks merge; a write lock inside a range splits it; l_len < 0 counts back.
              lk(fd, F_SETLK, F_RDLCK, SEEK_SET, 0, 10); lk(fd, F_SETLK, F_RDLCK, SEEK_SET, 10, 10);
              lk(fd, F_SETLK, F_WRLCK, SEEK_SET, 50, -10);
              lk(fd, F_SETLK, F_WRLCK, SEEK_SET, 60, 30); lk(fd, F_SETLK, F_UNLCK, SEEK_SET, 70, 5);
              lseek(fd, 95, SEEK_SET); lockf(fd, F_TLOCK, 3);
              printf("bad whence %d, negative start %d, read lock on a write-only fd %d\n",
                     lk(fd, F_SETLK, F_RDLCK, 7, 0, 1), lk(fd, F_SETLK, F_RDLCK, SEEK_SET, -5, 1),
                     lk(open(path, O_WRONLY), F_SETLK, F_RDLCK, SEEK_SET, 0, 1));
              fflush(stdout);
              int ready[2]; pipe(ready); pid_t parent = getpid();
              pid_t c = fork();
              if (c == 0) {
                // Not inherited: the child sees the parent's locks, with the parent's pid.
                show("child", fd, F_GETLK, F_WRLCK, 5, 1, parent);
                show("child", fd, F_GETLK, F_WRLCK, 42, 2, parent);
                show("child", fd, F_GETLK, F_WRLCK, 71, 3, parent);
                show("child", fd, F_GETLK, F_WRLCK, 74, 2, parent);
                show("child", fd, F_GETLK, F_RDLCK, 15, 1, parent);
                show("child", fd, F_GETLK, F_WRLCK, 96, 0, parent);
                printf("child: read on read %d, write on read %d, write in the gap %d, read on write %d\n",
                       lk(fd, F_SETLK, F_RDLCK, SEEK_SET, 5, 1), lk(fd, F_SETLK, F_WRLCK, SEEK_SET, 5, 1),
                       lk(fd, F_SETLK, F_WRLCK, SEEK_SET, 71, 3), lk(fd, F_SETLK, F_RDLCK, SEEK_SET, 45, 1));
                fflush(stdout);
                write(ready[1], "r", 1);
                // Waits until the parent's close of another descriptor drops its locks.
                int r = lk(fd, F_SETLKW, F_WRLCK, SEEK_SET, 0, 0);
                printf("child: the whole file %d\n", r); fflush(stdout);
                _exit(0);
              }
              char b; read(ready[0], &b, 1);
              show("parent", fd, F_GETLK, F_WRLCK, 72, 1, c); fflush(stdout);
              int other = open(path, O_RDONLY); close(other);   // any close releases the process's locks
              int st; waitpid(c, &st, 0);
              show("parent", fd, F_GETLK, F_WRLCK, 0, 0, c);   // the child's ended with it
              unlink(path); return 0;
            }
            """#, name: "posixlocks", args: [dir.appendingPathComponent("posix-locks").path], in: dir)
        #expect(out == """
            bad whence -22, negative start -22, read lock on a write-only fd -9
            child: [5,+1) held read [0,+20) by the expected pid
            child: [42,+2) held write [40,+10) by the expected pid
            child: [71,+3) free
            child: [74,+2) held write [75,+15) by the expected pid
            child: [15,+1) free
            child: [96,+0) held write [95,+3) by the expected pid
            child: read on read 0, write on read -11, write in the gap 0, read on write -11
            parent: [72,+1) held write [71,+3) by the expected pid
            child: the whole file 0
            parent: [0,+0) free

            """)
    }

    @Test func aCycleOfWaitingProcessesIsEDEADLK() throws {
        let out = try Harness.matchesNative(Self.prelude + #"""
            // Each holds one byte and waits for the other's: the second to wait gets EDEADLK
            // and lets go, so the first gets its lock. Which one is second does not matter.
            int main(int argc, char **argv) {
              int fd = open(argv[1], O_CREAT | O_RDWR | O_TRUNC, 0600);
              int go[2], held[2]; pipe(go); pipe(held);
              lk(fd, F_SETLK, F_WRLCK, SEEK_SET, 0, 1);
              pid_t c = fork();
              if (c == 0) {
                lk(fd, F_SETLK, F_WRLCK, SEEK_SET, 1, 1); write(held[1], "h", 1);
                int r = lk(fd, F_SETLKW, F_WRLCK, SEEK_SET, 0, 1);
                if (r == -EDEADLK) lk(fd, F_SETLK, F_UNLCK, SEEK_SET, 1, 1);
                _exit(r == -EDEADLK ? 1 : r == 0 ? 0 : 2);
              }
              char b; read(held[0], &b, 1);
              int r = lk(fd, F_SETLKW, F_WRLCK, SEEK_SET, 1, 1);
              if (r == -EDEADLK) lk(fd, F_SETLK, F_UNLCK, SEEK_SET, 0, 1);
              int st; waitpid(c, &st, 0);
              int deadlocks = (r == -EDEADLK) + (WEXITSTATUS(st) == 1), granted = (r == 0) + (WEXITSTATUS(st) == 0);
              printf("EDEADLK %d granted %d\n", deadlocks, granted);
              unlink(argv[1]); return 0;
            }
            """#, name: "deadlock", args: [dir.appendingPathComponent("deadlock-file").path], in: dir)
        #expect(out == "EDEADLK 1 granted 1\n")
    }

    @Test func ofdLocksAndFlockFollowTheDescription() throws {
        let out = try Harness.matchesNative(Self.prelude + #"""
            static const char *path;
            static int shared;
            static void *ofdWaiter(void *a) {
              int own = open(path, O_RDWR);
              int r = lk(own, F_OFD_SETLKW, F_WRLCK, SEEK_SET, 0, 10);
              printf("thread: OFD wait %d\n", r); fflush(stdout); close(own); return a;
            }
            static void *posixSameProcess(void *a) {
              printf("thread: POSIX write lock on the main thread's range %d\n", lk(shared, F_SETLK, F_WRLCK, SEEK_SET, 200, 10));
              fflush(stdout); return a;
            }
            int main(int argc, char **argv) {
              path = argv[1];
              int fd = open(path, O_CREAT | O_RDWR | O_TRUNC, 0600); shared = fd;
              // An OFD lock conflicts with the same process's POSIX lock, and F_GETLK shows pid -1.
              int ofd = lk(fd, F_OFD_SETLK, F_WRLCK, SEEK_SET, 0, 10);
              int over = lk(fd, F_SETLK, F_RDLCK, SEEK_SET, 5, 1);
              struct flock given = {F_RDLCK, SEEK_SET, 0, 1, 7};
              int pidGiven = fcntl(fd, F_OFD_SETLK, &given) ? -errno : 0;
              printf("OFD %d, POSIX over it %d, l_pid given %d\n", ofd, over, pidGiven);
              int second = open(path, O_RDWR);
              show("main", second, F_OFD_GETLK, F_RDLCK, 0, 1, 0);
              show("main", second, F_GETLK, F_RDLCK, 0, 1, 0);
              // A POSIX lock is in the way of an OFD lock, with its holder's pid.
              lk(fd, F_SETLK, F_WRLCK, SEEK_SET, 100, 10);
              show("main", second, F_OFD_GETLK, F_RDLCK, 105, 1, getpid());
              fflush(stdout);
              pid_t c = fork();
              if (c == 0) {
                // Shared description: the lock is the child's too; its own open: in the way.
                printf("child: shared %d, own %d\n", lk(fd, F_OFD_SETLK, F_WRLCK, SEEK_SET, 0, 10),
                       lk(open(path, O_RDWR), F_OFD_SETLK, F_WRLCK, SEEK_SET, 0, 10));
                printf("child: flock shared %d\n", flock(fd, LOCK_EX | LOCK_NB));
                int own = open(path, O_RDWR);
                printf("child: flock own %d %s\n", flock(own, LOCK_EX | LOCK_NB), errno == EWOULDBLOCK ? "EWOULDBLOCK" : "");
                fflush(stdout); _exit(0);
              }
              flock(fd, LOCK_EX);
              int st; waitpid(c, &st, 0);
              // Threads of one process share POSIX locks; another description's OFD wait ends at the unlock.
              lk(fd, F_SETLK, F_UNLCK, SEEK_SET, 100, 10);
              lk(fd, F_SETLK, F_WRLCK, SEEK_SET, 200, 10);
              pthread_t t; pthread_create(&t, 0, posixSameProcess, 0); pthread_join(t, 0);
              pthread_create(&t, 0, ofdWaiter, 0);
              for (int i = 0; i < 3; i++) sched_yield();
              printf("main: unlocks\n"); fflush(stdout);
              lk(fd, F_OFD_SETLK, F_UNLCK, SEEK_SET, 0, 0);
              pthread_join(t, 0);
              unlink(path); return 0;
            }
            """#, name: "ofdlocks", args: [dir.appendingPathComponent("ofd-locks").path], in: dir)
        #expect(out == """
            OFD 0, POSIX over it -11, l_pid given -22
            main: [0,+1) held write [0,+10) by -1
            main: [0,+1) held write [0,+10) by -1
            main: [105,+1) held write [100,+10) by the expected pid
            child: shared 0, own -11
            child: flock shared 0
            child: flock own -1 EWOULDBLOCK
            thread: POSIX write lock on the main thread's range 0
            main: unlocks
            thread: OFD wait 0

            """)
    }

    /// A process outside the recording: `hold` takes a write lock on bytes
    /// 0-9 and keeps it until its stdin closes; `check` says what is in the
    /// way of a write lock on bytes 20-29.
    static let outsider = #"""
        #include <fcntl.h>
        #include <stdio.h>
        #include <string.h>
        #include <unistd.h>
        int main(int argc, char **argv) {
          int fd = open(argv[2], O_CREAT | O_RDWR, 0600);
          struct flock fl; memset(&fl, 0, sizeof fl); fl.l_type = F_WRLCK; fl.l_whence = SEEK_SET;
          if (!strcmp(argv[1], "hold")) {
            fl.l_start = 0; fl.l_len = 10; fcntl(fd, F_SETLK, &fl); printf("held\n"); fflush(stdout);
            char b; while (read(0, &b, 1) > 0) {}
            return 0;
          }
          fl.l_start = 20; fl.l_len = 10; fcntl(fd, F_GETLK, &fl);
          printf("%s\n", fl.l_type == F_WRLCK ? "write lock in the way" : fl.l_type == F_UNLCK ? "free" : "read lock in the way");
          return 0;
        }
        """#

    @Test func locksOfProcessesOutsideTheRecordingCountBothWays() throws {
        let outsider = try Harness.compile(Self.outsider, name: "outsider", in: dir)
        let path = dir.appendingPathComponent("shared-with-outside").path
        let recorded = try Harness.compile(Self.prelude + #"""
            int main(int argc, char **argv) {
              int fd = open(argv[1], O_RDWR);
              printf("outside lock: set %d\n", lk(fd, F_SETLK, F_WRLCK, SEEK_SET, 5, 1));
              show("recorded", fd, F_GETLK, F_WRLCK, 0, 10, atoi(argv[2]));
              lk(fd, F_SETLK, F_WRLCK, SEEK_SET, 20, 10);
              printf("locked\n"); fflush(stdout);
              char b; while (read(0, &b, 1) > 0) {}
              return 0;
            }
            """#, name: "insider", in: dir)
        // The outsider holds its lock while the program records.
        var holderInput: [Int32] = [0, 0]
        pipe(&holderInput)
        let holder = try spawn([outsider, "hold", path], stdin: .fd(holderInput[0]), in: Harness.scratch.path)
        close(holderInput[0])
        defer { close(holderInput[1]); _ = holder.wait() }
        #expect(holder.waitUntil { holder.stdoutSoFar.contains("held") })
        var input: [Int32] = [0, 0]
        pipe(&input)
        let trace = dir.appendingPathComponent("outside-locks")
        let child = try spawn([Harness.detrec, "record", "-q", "-o", trace.path, "--", recorded, path, "\(holder.pid)"],
                              stdin: .fd(input[0]), in: Harness.scratch.path)
        close(input[0])
        child.waitUntil { child.stdoutSoFar.contains("locked") }
        // The recorded lock is in the way of a process outside.
        let seen = try Harness.run([outsider, "check", path])
        close(input[1])
        let r = child.wait()
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout == """
            outside lock: set -11
            recorded: [0,+10) held write [0,+10) by the expected pid
            locked

            """)
        #expect(seen.stdout == "write lock in the way\n")
        // Replay takes the answers from the trace (the outsider still holds its lock).
        let rep = try Harness.replay(trace)
        #expect(rep.stdout == r.stdout)
        #expect(rep.status == 0, "\(rep.stderr)")
    }
}
