import Foundation
import Testing

/// The program sees the trace's CPU model through CPUID and XGETBV's
/// consequences, on every host: detrec answers cpuid itself (patched like
/// rdtsc), because some hypervisors (PVM on AMD) do not virtualize it.
@Suite struct CPUModelEndToEndTests {
    let dir = Harness.temporaryDirectory()

    static let source = #"""
        #include <cpuid.h>
        #include <stdio.h>
        #include <string.h>
        int main(void) {
          unsigned a, b, c, d; char vendor[13] = {0};
          __cpuid_count(0, 0, a, b, c, d); memcpy(vendor, &b, 4); memcpy(vendor + 4, &d, 4); memcpy(vendor + 8, &c, 4);
          __cpuid_count(1, 0, a, b, c, d);
          unsigned avx = (c >> 28) & 1, rdrand = (c >> 30) & 1, apic = b >> 24;
          __cpuid_count(7, 0, a, b, c, d);
          unsigned avx2 = (b >> 5) & 1, avx512f = (b >> 16) & 1, rdseed = (b >> 18) & 1;
          __builtin_cpu_init();
          printf("%s avx %u avx2 %u avx512f %u rdrand %u rdseed %u apic %u builtin-avx2 %d\n",
                 vendor, avx, avx2, avx512f, rdrand, rdseed, apic, __builtin_cpu_supports("avx2") != 0);
          return 0;
        }
        """#

    @Test(arguments: [("x86-64-v2", "avx 0 avx2 0 avx512f 0 rdrand 0 rdseed 0 apic 0 builtin-avx2 0"),
                      ("x86-64-v3", "avx 1 avx2 1 avx512f 0 rdrand 0 rdseed 0 apic 0 builtin-avx2 1")])
    func theProgramSeesItsModel(model: String, features: String) throws {
        for link in [["-static"], []] {
            let exe = try Harness.compile(Self.source, name: "cpuid-\(model)\(link.isEmpty ? "-dyn" : "")", flags: link, in: dir)
            let (rec, trace) = try Harness.roundTrip([exe], in: dir, options: ["--cpu", model])
            #expect(rec.status == 0, "\(rec.stderr)")
            #expect(rec.stdout.hasSuffix(features + "\n"), "\(model): \(rec.stdout)")
            let header = try Harness.dumpJSON(trace).first ?? [:]
            #expect((header["extra"] as? [String: String])?["cpuModel"] == model)
        }
    }

    /// cpuid runs unpatched where the hypervisor answers it from the table
    /// (`NativeCPUID`) and patched elsewhere, or with DETREC_CPUID=patch:
    /// each run decides for itself, so a recording made one way replays
    /// the other way with the same answers.
    @Test func patchedOrNotTheAnswersAgree() throws {
        for link in [["-static"], []] {
            let exe = try Harness.compile(Self.source, name: "cpuid-modes\(link.isEmpty ? "-dyn" : "")", flags: link, in: dir)
            for (recording, replaying) in [([String: String](), ["DETREC_CPUID": "patch"]), (["DETREC_CPUID": "patch"], [:])] {
                let trace = dir.appendingPathComponent("modes-\(link.isEmpty ? "dyn" : "static")-\(recording.isEmpty ? "native" : "patch")")
                let rec = try Harness.record([exe], trace: trace, environment: recording)
                #expect(rec.status == 0, "\(rec.stderr)")
                let rep = try Harness.run([Harness.detrec, "replay", trace.path], environment: replaying)
                #expect(rep.status == 0, "\(rep.stderr)")
                #expect(rep.stdout == rec.stdout && !rec.stdout.isEmpty)
            }
        }
    }

    @Test func anUnknownModelIsAUsageError() throws {
        let exe = try Harness.compile(Self.source, name: "cpuid-bad", in: dir)
        let r = try Harness.run([Harness.detrec, "record", "--cpu", "pentium", "-o", dir.appendingPathComponent("bad").path, "--", exe])
        #expect(r.status == 2)
        #expect(r.stderr.contains("unknown --cpu pentium"))
    }
}
