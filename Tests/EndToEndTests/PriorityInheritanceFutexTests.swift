import Foundation
import Testing

/// PI futexes: pthread mutexes with PTHREAD_PRIO_INHERIT between threads
/// (with a condition variable) and a process-shared robust one between
/// processes (its owner dies holding it), and the raw LOCK_PI, TRYLOCK_PI,
/// UNLOCK_PI and REQUEUE_PI operations with their errors, each compared
/// with a native run and replayed.
@Suite(.serialized) struct PriorityInheritanceFutexTests {
    let dir = Harness.temporaryDirectory()

    @Test func priorityInheritanceMutexesBetweenThreadsAndProcesses() throws {
        let out = try Harness.matchesNative(#"""
            #define _GNU_SOURCE
            #include <stdio.h>
            #include <pthread.h>
            #include <errno.h>
            #include <string.h>
            #include <unistd.h>
            #include <sys/mman.h>
            #include <sys/wait.h>
            #include <sched.h>
            static pthread_mutex_t m;
            static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
            static int counter, ready;
            static void *worker(void *a) {
              for (int i = 0; i < 200; i++) { pthread_mutex_lock(&m); counter++; if (i % 20 == 0) sched_yield(); pthread_mutex_unlock(&m); }
              pthread_mutex_lock(&m); ready++; pthread_cond_signal(&cv); pthread_mutex_unlock(&m);
              return 0;
            }
            int main(void) {
              pthread_mutexattr_t at; pthread_mutexattr_init(&at);
              pthread_mutexattr_setprotocol(&at, PTHREAD_PRIO_INHERIT);
              pthread_mutexattr_settype(&at, PTHREAD_MUTEX_ERRORCHECK);
              pthread_mutex_init(&m, &at);
              pthread_t t[3];
              for (int i = 0; i < 3; i++) pthread_create(&t[i], 0, worker, 0);
              pthread_mutex_lock(&m);
              while (ready < 3) pthread_cond_wait(&cv, &m);
              printf("relock: %s\n", strerror(pthread_mutex_lock(&m)));
              pthread_mutex_unlock(&m);
              for (int i = 0; i < 3; i++) pthread_join(t[i], 0);
              printf("counter %d\n", counter);
              printf("trylock free: %d\n", pthread_mutex_trylock(&m));
              int u1 = pthread_mutex_unlock(&m);
              int u2 = pthread_mutex_unlock(&m);
              printf("unlock: %d, unlock again: %s\n", u1, strerror(u2));
              pid_t c;
              /* process-shared robust PI mutex */
              pthread_mutex_t *sm = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
              int *shared = (int *)(sm + 1);
              pthread_mutexattr_t sa; pthread_mutexattr_init(&sa);
              pthread_mutexattr_setprotocol(&sa, PTHREAD_PRIO_INHERIT);
              pthread_mutexattr_setpshared(&sa, PTHREAD_PROCESS_SHARED);
              pthread_mutexattr_setrobust(&sa, PTHREAD_MUTEX_ROBUST);
              pthread_mutex_init(sm, &sa);
              fflush(stdout);
              pid_t kids[2];
              for (int k = 0; k < 2; k++) {
                kids[k] = fork();
                if (kids[k] == 0) {
                  for (int i = 0; i < 200; i++) { pthread_mutex_lock(sm); (*shared)++; if (i % 20 == 0) sched_yield(); pthread_mutex_unlock(sm); }
                  _exit(0);
                }
              }
              for (int k = 0; k < 2; k++) waitpid(kids[k], 0, 0);
              printf("shared counter %d\n", *shared);
              c = fork();
              if (c == 0) { pthread_mutex_lock(sm); _exit(0); }   /* dies holding it */
              waitpid(c, 0, 0);
              int r = pthread_mutex_lock(sm);
              printf("after owner death: %s\n", strerror(r));
              if (r == EOWNERDEAD) pthread_mutex_consistent(sm);
              pthread_mutex_unlock(sm);
              return 0;
            }
            """#, name: "pimutex", flags: ["-static", "-pthread"], in: dir)
        #expect(out.contains("counter 600"))
        #expect(out.contains("shared counter 400"))
        #expect(out.contains("after owner death: Owner died"))
    }

    @Test func lockUnlockAndRequeuePIOperations() throws {
        let out = try Harness.matchesNative(#"""
            #define _GNU_SOURCE
            #include <stdio.h>
            #include <errno.h>
            #include <limits.h>
            #include <pthread.h>
            #include <stdint.h>
            #include <unistd.h>
            #include <linux/futex.h>
            #include <sys/syscall.h>
            static uint32_t cond, mutex;
            static int owned[2], done;
            static long fx(uint32_t *a, int op, uint32_t v, void *t, uint32_t *a2, uint32_t v3) { return syscall(SYS_futex, a, op, v, t, a2, v3); }
            static void unlock(void) {
              uint32_t me = gettid();
              if (!__sync_bool_compare_and_swap(&mutex, me, 0)) fx(&mutex, FUTEX_UNLOCK_PI, 0, 0, 0, 0);
            }
            static void *waiter(void *a) {
              int i = (int)(long)a;
              long r = fx(&cond, FUTEX_WAIT_REQUEUE_PI, 0, 0, &mutex, 0);
              owned[i] = r == 0 && (mutex & FUTEX_TID_MASK) == (uint32_t)gettid();
              __sync_fetch_and_add(&done, 1);
              unlock();
              return 0;
            }
            int main(void) {
              uint32_t me = gettid();
              long r = fx(&mutex, FUTEX_LOCK_PI, 0, 0, 0, 0);
              printf("LOCK_PI free: %ld, word is me %d\n", r, mutex == me);
              r = fx(&mutex, FUTEX_LOCK_PI, 0, 0, 0, 0);
              printf("LOCK_PI again: %ld errno EDEADLK %d\n", r, errno == EDEADLK);
              printf("TRYLOCK_PI by owner: errno EDEADLK %d\n", fx(&mutex, FUTEX_TRYLOCK_PI, 0, 0, 0, 0) == -1 && errno == EDEADLK);
              r = fx(&mutex, FUTEX_UNLOCK_PI, 0, 0, 0, 0);
              printf("UNLOCK_PI: %ld word %u\n", r, mutex);
              errno = 0;
              printf("UNLOCK_PI not owner: errno EPERM %d\n", fx(&mutex, FUTEX_UNLOCK_PI, 0, 0, 0, 0) == -1 && errno == EPERM);
              printf("CMP_REQUEUE_PI nr_wake 2: EINVAL %d\n", fx(&cond, FUTEX_CMP_REQUEUE_PI, 2, (void *)1, &mutex, 0) == -1 && errno == EINVAL);
              printf("CMP_REQUEUE_PI value differs: EAGAIN %d\n", fx(&cond, FUTEX_CMP_REQUEUE_PI, 1, (void *)1, &mutex, 5) == -1 && errno == EAGAIN);
              printf("WAIT_REQUEUE_PI same word: EINVAL %d\n", fx(&cond, FUTEX_WAIT_REQUEUE_PI, 0, 0, &cond, 0) == -1 && errno == EINVAL);
              struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts); ts.tv_nsec += 10000000; if (ts.tv_nsec >= 1000000000) { ts.tv_sec++; ts.tv_nsec -= 1000000000; }
              printf("WAIT_REQUEUE_PI timeout: ETIMEDOUT %d\n", fx(&cond, FUTEX_WAIT_REQUEUE_PI, 0, &ts, &mutex, 0) == -1 && errno == ETIMEDOUT);
              /* main holds the mutex: both waiters are requeued onto it */
              mutex = me;
              pthread_t t[2];
              for (long i = 0; i < 2; i++) pthread_create(&t[i], 0, waiter, (void *)i);
              long moved = 0;
              while (moved < 2) { long n = fx(&cond, FUTEX_CMP_REQUEUE_PI, 1, (void *)INT_MAX, &mutex, 0); if (n > 0) moved += n; else usleep(1000); }
              printf("requeued %ld, waiters bit %d\n", moved, !!(mutex & FUTEX_WAITERS));
              unlock();
              for (int i = 0; i < 2; i++) pthread_join(t[i], 0);
              printf("each owned the mutex on return: %d %d, word %u\n", owned[0], owned[1], mutex);
              /* the mutex is free: the first waiter gets it at once */
              done = 0;
              pthread_create(&t[0], 0, waiter, (void *)0);
              long n = 0;
              while (n < 1) { n = fx(&cond, FUTEX_CMP_REQUEUE_PI, 1, (void *)INT_MAX, &mutex, 0); if (n < 1) usleep(1000); }
              pthread_join(t[0], 0);
              printf("woken owning it: %ld %d\n", n, owned[0]);
              return 0;
            }
            """#, name: "requeuepi", flags: ["-static", "-pthread"], in: dir)
        #expect(out.contains("each owned the mutex on return: 1 1, word 0"))
        #expect(out.contains("woken owning it: 1 1"))
    }
}
