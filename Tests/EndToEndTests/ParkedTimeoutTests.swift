import Foundation
import Testing

/// A parked wait whose timeout passes while another thread computes
/// without syscalls: the computing thread is preempted, and the waiter
/// resumes with its timeout (before, it waited until every thread blocked,
/// which a spinning thread never does). The spinner ends only once the
/// waiter has timed out, so the output does not depend on speed.
@Suite(.serialized) struct ParkedTimeoutTests {
    let dir = Harness.temporaryDirectory()

    @Test func timedWaitsEndWhileAnotherThreadSpins() throws {
        let out = try Harness.matchesNative(EpollTests.prelude + #"""
            static volatile int done;
            static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
            static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
            static void *waiter(void *a) {
              struct timespec ts; clock_gettime(CLOCK_REALTIME, &ts);
              ts.tv_nsec += 20000000; if (ts.tv_nsec >= 1000000000) { ts.tv_sec++; ts.tv_nsec -= 1000000000; }
              pthread_mutex_lock(&m);
              int r = pthread_cond_timedwait(&cv, &m, &ts);
              pthread_mutex_unlock(&m);
              int ep = epoll_create1(0), p[2]; pipe(p); add(ep, p[0], EPOLLIN, 1);
              struct epoll_event ev;
              int n = epoll_wait(ep, &ev, 1, 20);
              printf("cond %s, epoll %d\n", strerror(r), n);
              done = 1;
              return a;
            }
            int main(void) {
              pthread_t t; pthread_create(&t, 0, waiter, 0);
              unsigned long spins = 0;
              while (!done) spins++;
              pthread_join(t, 0);
              printf("spun %d\n", spins > 0);
              return 0;
            }
            """#, name: "timeout_while_spinning", in: dir)
        #expect(out == "cond Connection timed out, epoll 0\nspun 1\n")
    }
}
