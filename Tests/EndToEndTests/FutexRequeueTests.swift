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
}
