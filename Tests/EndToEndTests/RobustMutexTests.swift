import Foundation
import Testing

/// A thread or process that dies holding a robust mutex: the next locker
/// gets EOWNERDEAD (and can make it consistent) instead of waiting forever.
@Suite struct RobustMutexTests {
    let dir = Harness.temporaryDirectory()

    @Test func ownerDeathIsReportedToTheNextLocker() throws {
        let out = try Harness.matchesNative(#"""
            #define _GNU_SOURCE
            #include <errno.h>
            #include <pthread.h>
            #include <stdio.h>
            #include <string.h>
            #include <sys/mman.h>
            #include <sys/wait.h>
            #include <unistd.h>
            static pthread_mutex_t m;
            static volatile int ready;
            static void *hold(void *a) { pthread_mutex_lock(&m); return a; }   // exits holding it
            static void *holdAWhile(void *a) { pthread_mutex_lock(&m); ready = 1; usleep(20000); return a; }
            static void *waiter(void *a) {
              while (!ready) usleep(1000);
              int r = pthread_mutex_lock(&m);
              if (r == EOWNERDEAD) pthread_mutex_consistent(&m);
              pthread_mutex_unlock(&m);
              return (void *)(long)r;
            }
            int main(void) {
              pthread_mutexattr_t at; pthread_mutexattr_init(&at);
              pthread_mutexattr_setrobust(&at, PTHREAD_MUTEX_ROBUST);
              pthread_mutex_init(&m, &at);
              pthread_t t; pthread_create(&t, 0, hold, 0); pthread_join(t, 0);
              int r = pthread_mutex_lock(&m);
              printf("after the owner thread died: %s\n", strerror(r));
              pthread_mutex_consistent(&m);
              pthread_mutex_unlock(&m);
              // A waiter parked on it when the owner dies is woken with EOWNERDEAD.
              pthread_t w; pthread_create(&t, 0, holdAWhile, 0); pthread_create(&w, 0, waiter, 0);
              void *wr; pthread_join(w, &wr); pthread_join(t, 0);
              printf("waiter: %s\n", strerror((int)(long)wr));

              pthread_mutexattr_setpshared(&at, PTHREAD_PROCESS_SHARED);
              pthread_mutex_t *s = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
              pthread_mutex_init(s, &at);
              pid_t c = fork();
              if (c == 0) { pthread_mutex_lock(s); _exit(0); }
              waitpid(c, 0, 0);
              r = pthread_mutex_lock(s);
              printf("after the owner process died: %s\n", strerror(r));
              return 0;
            }
            """#, name: "robust", in: dir)
        #expect(out == """
            after the owner thread died: Owner died
            waiter: Owner died
            after the owner process died: Owner died

            """)
    }
}
