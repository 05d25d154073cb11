import Foundation
import Testing

/// One checkpoint for several slices of a thread (docs/preemption.md,
/// "Windows"): a rollback re-runs the window's earlier slices and puts
/// back what each of their syscalls did instead of running them again.
@Suite(.serialized) struct PreemptionWindowTests {
    let dir = Harness.temporaryDirectory()

    /// Each round, a thread preads fresh bytes into a buffer on its stack,
    /// folds them into a sum, and then computes until the other thread has
    /// made progress too, which it cannot do inside its own slice on any
    /// CPU: it is preempted there, with the preads in the same window as
    /// the computing slice. The rollback must put their bytes back at the
    /// same syscalls, or the sums differ from a native run's.
    @Test func rerunThroughASlicesSyscallsPutsTheirWritesBack() throws {
        let data = dir.appendingPathComponent("window-data")
        var bytes = [UInt8](repeating: 0, count: 4 * 256)
        for i in bytes.indices { bytes[i] = UInt8(truncatingIfNeeded: i &* 7 &+ i / 256) }
        try Data(bytes).write(to: data)
        let exe = try Harness.compile(#"""
            #include <fcntl.h>
            #include <pthread.h>
            #include <stdio.h>
            #include <unistd.h>
            static volatile long progress[2];
            static int fd;
            static unsigned long sums[2];
            static void *run(void *a) {
              int me = (int)(long)a;
              unsigned char buf[256];
              unsigned long sum = 0;
              for (int round = 0; round < 2; round++) {
                for (int i = 0; i < 8; i++)
                  if (pread(fd, buf + 32 * i, 32, (me * 2 + round) * 256 + 32 * i) != 32) return 0;
                for (int i = 0; i < 256; i++) sum = sum * 31 + buf[i];
                long goal = (round + 1) * 100;
                while (progress[1 - me] < goal || progress[me] < goal) progress[me]++;
              }
              sums[me] = sum;
              return a;
            }
            int main(int argc, char **argv) {
              fd = open(argv[1], O_RDONLY);
              if (fd < 0) return 2;
              pthread_t t[2];
              for (long i = 0; i < 2; i++) pthread_create(&t[i], 0, run, (void *)i);
              for (int i = 0; i < 2; i++) pthread_join(t[i], 0);
              printf("sums %lu %lu\n", sums[0], sums[1]);
              return 0;
            }
            """#, name: "windowrerun", in: dir)
        let native = try Harness.run([exe, data.path])
        #expect(native.status == 0)
        let (rec, trace) = try Harness.roundTrip([exe, data.path], in: dir, environment: ["DETREC_PREEMPTION_STATS": "1"])
        #expect(rec.status == 0, "\(rec)")
        #expect(rec.stdout == native.stdout)
        // The computing slices were preempted from windows that held the preads.
        let reruns = rec.stderr.split(separator: "\n").first { $0.hasPrefix("preemption: ") }
            .flatMap { $0.split(separator: ",").first { $0.hasSuffix(" re-runs through refeeds") } }
            .flatMap { $0.split(separator: " ").first }.flatMap { Int($0) }
        #expect((reruns ?? 0) >= 1, "\(rec.stderr)")
        #expect(try Harness.dumpJSON(trace).contains { $0["kind"] as? String == "preempt" })
    }
}
