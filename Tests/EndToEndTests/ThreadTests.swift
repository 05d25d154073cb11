import Foundation
import Testing

/// Threads switch at syscalls and the trace is the schedule: every replay
/// of a recording runs the same interleaving.
@Suite(.serialized) struct ThreadTests {
    let dir = Harness.temporaryDirectory()

    @Test func mutexesCondvarsAndJoin() throws {
        let exe = try Harness.compile(#"""
            #include <pthread.h>
            #include <stdio.h>
            static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER; static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
            static int turn, log_[64], n;
            static void *run(void *arg) { long id = (long)arg;
              for (int i = 0; i < 8; i++) { pthread_mutex_lock(&mu); while (turn % 3 != id) pthread_cond_wait(&cv, &mu);
                log_[n++] = (int)id; turn++; pthread_cond_broadcast(&cv); pthread_mutex_unlock(&mu); }
              return 0; }
            int main(void) { pthread_t t[3]; for (long i = 0; i < 3; i++) pthread_create(&t[i], 0, run, (void *)i);
              for (int i = 0; i < 3; i++) pthread_join(t[i], 0);
              for (int i = 0; i < n; i++) printf("%d", log_[i]); printf("\n"); return 0; }
            """#, name: "condvar", in: dir)
        let (rec, _) = try Harness.roundTrip([exe], in: dir)
        #expect(rec.stdout == String(repeating: "012", count: 8) + "\n")
    }

    @Test func socketsBetweenThreads() throws {
        let exe = try Harness.compile(#"""
            #include <pthread.h>
            #include <stdio.h>
            #include <string.h>
            #include <sys/socket.h>
            #include <unistd.h>
            static int sv[2];
            static void *echo(void *a) { char b[16]; ssize_t n = read(sv[1], b, sizeof b); write(sv[1], b, n); return a; }
            int main(void) { socketpair(AF_UNIX, SOCK_STREAM, 0, sv); pthread_t t; pthread_create(&t, 0, echo, 0);
              usleep(1000); write(sv[0], "ping", 4); char b[8] = {0}; read(sv[0], b, 4); pthread_join(t, 0);
              printf("%s\n", b); return 0; }
            """#, name: "sockthreads", in: dir)
        let (rec, _) = try Harness.roundTrip([exe], in: dir)
        #expect(rec.stdout == "ping\n")
    }

    @Test func chaosSeedsExploreInterleavingsAndEachReplays() throws {
        let exe = try Harness.compile(#"""
            #include <pthread.h>
            #include <unistd.h>
            static void *run(void *arg) { char c = '0' + (int)(long)arg; for (int i = 0; i < 6; i++) write(1, &c, 1); return 0; }
            int main(void) { pthread_t t[3]; for (long i = 0; i < 3; i++) pthread_create(&t[i], 0, run, (void *)i);
              for (int i = 0; i < 3; i++) pthread_join(t[i], 0); write(1, "\n", 1); return 0; }
            """#, name: "order", in: dir)
        let runs = try Harness.chaosRoundTrips([exe], seeds: 1...20, name: "chaos", in: dir)
        for run in runs {
            let header = try Harness.dumpJSON(run.trace).first?["extra"] as? [String: String]
            #expect(header?["chaosSeed"] == "\(run.seed)")
        }
        let outputs = Set(runs.map(\.stdout))
        #expect(outputs.count >= 2, "20 chaos seeds gave one interleaving: \(outputs)")
    }
}
