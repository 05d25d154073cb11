import Foundation
import Testing

/// FUTEX_REQUEUE and FUTEX_CMP_REQUEUE return the waiters woken plus the
/// waiters requeued, as Linux's futex_requeue does.
@Suite struct FutexRequeueTests {
    let dir = Harness.temporaryDirectory()

    @Test func requeueCountsWokenAndMovedWaiters() throws {
        let out = try Harness.matchesNative(#"""
            #define _GNU_SOURCE
            #include <linux/futex.h>
            #include <pthread.h>
            #include <stdio.h>
            #include <sys/syscall.h>
            #include <unistd.h>
            static int a, b;
            static void *w(void *x) { while (syscall(SYS_futex, &a, FUTEX_WAIT, 0, 0, 0, 0) != 0) {} return x; }
            int main(void) {
              pthread_t t[3];
              for (int i = 0; i < 3; i++) pthread_create(&t[i], 0, w, 0);
              // Move every waiter to b as it arrives: each call says how many it moved.
              long moved = 0;
              for (int i = 0; i < 5000 && moved < 3; i++) {
                moved += syscall(SYS_futex, &a, FUTEX_REQUEUE, 0, 3, &b, 0);
                if (moved < 3) usleep(1000);
              }
              long woken = syscall(SYS_futex, &b, FUTEX_CMP_REQUEUE, 1, 5, &a, 0);
              long rest = syscall(SYS_futex, &a, FUTEX_WAKE, 10, 0, 0, 0);
              printf("moved %ld, cmp_requeue woke and moved %ld, then woke %ld\n", moved, woken, rest);
              for (int i = 0; i < 3; i++) pthread_join(t[i], 0);
              return 0;
            }
            """#, name: "requeue", in: dir)
        #expect(out == "moved 3, cmp_requeue woke and moved 3, then woke 2\n")
    }

    /// A plain REQUEUE that meets a PI waiter (a WAIT_REQUEUE_PI condition
    /// waiter, or a LOCK_PI waiter) fails with EINVAL and leaves it where
    /// it waits, as futex_requeue's check of rt_waiter and pi_state.
    @Test func requeueOfPriorityInheritanceWaiterIsInvalid() throws {
        let out = try Harness.matchesNative(#"""
            #define _GNU_SOURCE
            #include <errno.h>
            #include <linux/futex.h>
            #include <pthread.h>
            #include <stdio.h>
            #include <sys/syscall.h>
            #include <unistd.h>
            static int cond, mutex, lock, other;
            static long condResult = -2, lockResult = -2;
            static void *condWaiter(void *x) {
              condResult = syscall(SYS_futex, &cond, FUTEX_WAIT_REQUEUE_PI, 0, 0, &mutex, 0);
              return x;
            }
            static void *lockWaiter(void *x) {
              lockResult = syscall(SYS_futex, &lock, FUTEX_LOCK_PI, 0, 0, 0, 0);
              return x;
            }
            /* Plain REQUEUE of `word` until it meets the waiter: 0 while nobody waits. */
            static const char *requeueUntilRefused(int *word) {
              for (int i = 0; i < 5000; i++) {
                long r = syscall(SYS_futex, word, FUTEX_REQUEUE, 0, 1, &other, 0);
                if (r < 0) return errno == EINVAL ? "EINVAL" : "other error";
                if (r > 0) return "moved a PI waiter";
                usleep(1000);
              }
              return "no waiter came";
            }
            int main(void) {
              pthread_t t;
              pthread_create(&t, 0, condWaiter, 0);
              printf("requeue of a WAIT_REQUEUE_PI waiter: %s\n", requeueUntilRefused(&cond));
              long cr = syscall(SYS_futex, &cond, FUTEX_CMP_REQUEUE_PI, 1, 0, &mutex, 0);
              pthread_join(t, 0);
              printf("cmp_requeue_pi %ld, the waiter got %ld, owns the mutex %d\n", cr, condResult, mutex != 0);
              lock = (int)gettid();
              pthread_create(&t, 0, lockWaiter, 0);
              printf("requeue of a LOCK_PI waiter: %s\n", requeueUntilRefused(&lock));
              long ur = syscall(SYS_futex, &lock, FUTEX_UNLOCK_PI, 0, 0, 0, 0);
              pthread_join(t, 0);
              printf("unlock_pi %ld, the waiter got %ld\n", ur, lockResult);
              return 0;
            }
            """#, name: "requeue-pi-waiter", in: dir)
        #expect(out == """
            requeue of a WAIT_REQUEUE_PI waiter: EINVAL
            cmp_requeue_pi 1, the waiter got 0, owns the mutex 1
            requeue of a LOCK_PI waiter: EINVAL
            unlock_pi 0, the waiter got 0

            """)
    }

    /// FUTEX_WAKE and FUTEX_WAKE_OP that meet a LOCK_PI waiter fail with
    /// EINVAL and leave it waiting (futex_wake's pi_state check); UNLOCK_PI
    /// then hands it the lock.
    @Test func wakeOfPriorityInheritanceWaiterIsInvalid() throws {
        let out = try Harness.matchesNative(#"""
            #define _GNU_SOURCE
            #include <errno.h>
            #include <linux/futex.h>
            #include <pthread.h>
            #include <stdio.h>
            #include <sys/syscall.h>
            #include <unistd.h>
            static int lock, other;
            static long lockResult = -2;
            static void *lockWaiter(void *x) {
              lockResult = syscall(SYS_futex, &lock, FUTEX_LOCK_PI, 0, 0, 0, 0);
              return x;
            }
            /* FUTEX_WAKE of the word until it meets the waiter: 0 while nobody waits. */
            static const char *wakeUntilRefused(int op) {
              for (int i = 0; i < 5000; i++) {
                long r = op == FUTEX_WAKE ? syscall(SYS_futex, &lock, FUTEX_WAKE, 1, 0, 0, 0)
                                          : syscall(SYS_futex, &other, FUTEX_WAKE_OP, 1, 1, &lock, FUTEX_OP(FUTEX_OP_ADD, 0, FUTEX_OP_CMP_NE, 0));
                if (r < 0) return errno == EINVAL ? "EINVAL" : "other error";
                if (r > 0) return "woke a PI waiter";
                usleep(1000);
              }
              return "no waiter came";
            }
            int main(void) {
              pthread_t t;
              lock = (int)gettid();
              pthread_create(&t, 0, lockWaiter, 0);
              printf("wake of a LOCK_PI waiter: %s\n", wakeUntilRefused(FUTEX_WAKE));
              printf("wake_op reaching it: %s\n", wakeUntilRefused(FUTEX_WAKE_OP));
              long ur = syscall(SYS_futex, &lock, FUTEX_UNLOCK_PI, 0, 0, 0, 0);
              pthread_join(t, 0);
              printf("unlock_pi %ld, the waiter got %ld\n", ur, lockResult);
              return 0;
            }
            """#, name: "wake-pi-waiter", in: dir)
        #expect(out == """
            wake of a LOCK_PI waiter: EINVAL
            wake_op reaching it: EINVAL
            unlock_pi 0, the waiter got 0

            """)
    }

    /// REQUEUE and CMP_REQUEUE with a negative count are EINVAL (a
    /// negative FUTEX_WAKE count is not).
    @Test func negativeRequeueCountsAreInvalid() throws {
        let out = try Harness.matchesNative(#"""
            #include <errno.h>
            #include <linux/futex.h>
            #include <stdio.h>
            #include <sys/syscall.h>
            #include <unistd.h>
            static int a, b;
            static void show(const char *what, long r) { printf("%s: %ld %s\n", what, r, r < 0 && errno == EINVAL ? "EINVAL" : ""); }
            int main(void) {
              show("requeue, wake -1", syscall(SYS_futex, &a, FUTEX_REQUEUE, -1, 0, &b, 0));
              show("requeue, requeue -1", syscall(SYS_futex, &a, FUTEX_REQUEUE, 0, (void *)-1L, &b, 0));
              show("cmp_requeue, requeue -1, wrong value", syscall(SYS_futex, &a, FUTEX_CMP_REQUEUE, 0, (void *)-1L, &b, 5));
              show("wake -1", syscall(SYS_futex, &a, FUTEX_WAKE, -1, 0, 0, 0));
              return 0;
            }
            """#, name: "requeue-negative", in: dir)
        #expect(out == """
            requeue, wake -1: -1 EINVAL
            requeue, requeue -1: -1 EINVAL
            cmp_requeue, requeue -1, wrong value: -1 EINVAL
            wake -1: 0 

            """)
    }
}
