import Foundation
import Testing

/// Raw rdtsc/rdtscp replay the recorded values: detrec patches them, since
/// PVM cannot trap them, and the patch is invisible to the program.
@Suite(.serialized) struct TimestampCounterTests {
    let dir = Harness.temporaryDirectory()

    @Test func rawTimestampReadsReplayAsRecorded() throws {
        let exe = try Harness.compile(#"""
            #include <stdio.h>
            #include <string.h>
            #include <unistd.h>
            #include <x86intrin.h>
            static unsigned long long probe(void) { return __rdtsc(); }
            int main(void) {
              unsigned aux; unsigned long long a = __rdtsc(), b = __rdtscp(&aux), c = probe();
              /* What the kernel reads of the code (here through a pipe) is the
                 original; the program's own loads would see the int3. */
              unsigned char code[32]; int p[2], seen = 0; pipe(p);
              write(p[1], (const void *)probe, sizeof code); read(p[0], code, sizeof code);
              for (int i = 0; i + 1 < 32; i++) if (code[i] == 0x0f && code[i + 1] == 0x31) seen = 1;
              printf("%llu %llu %llu ordered %d own-code %d\n", a, b, c, a <= b && b <= c, seen);
              return 0;
            }
            """#, name: "rdtsc", in: dir)
        let (first, trace) = try Harness.roundTrip([exe], in: dir)
        #expect(first.stdout.hasSuffix("ordered 1 own-code 1\n"), "\(first.stdout)")
        let (second, _) = try Harness.roundTrip([exe], in: dir)
        #expect(first.stdout != second.stdout, "two recordings read different counters")
        let events = try Harness.dumpJSON(trace)
        #expect(events.contains { $0["name"] as? String == "rdtsc" })
        #expect(events.contains { $0["name"] as? String == "rdtscp" })
    }
}
