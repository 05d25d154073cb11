import Foundation
import Testing

/// Syscall numbers as Linux reads them: only RAX's low 32 bits select the
/// call, so a number with high bits set is a plain syscall and -1 (or any
/// number past the table, x32's included) is ENOSYS, in the recording and
/// in every replay alike (the trace keeps all 64 bits of RAX).
@Suite(.serialized) struct SyscallNumberTests {
    let dir = Harness.temporaryDirectory()

    static let program = #"""
        #include <stdio.h>
        #include <string.h>
        #include <unistd.h>
        static long raw(unsigned long n, long a, long b, long c) {
            long r;
            register long r10 __asm__("r10") = 0;
            __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10) : "rcx", "r11", "memory");
            return r;
        }
        int main(void) {
            long pid = getpid();
            printf("-1: %ld\n", raw(-1UL, 0, 0, 0));
            printf("0xffffffff: %ld\n", raw(0xffffffffUL, 0, 0, 0));
            printf("1000: %ld\n", raw(1000, 0, 0, 0));
            printf("x32 getpid: %ld\n", raw(0x40000027UL, 0, 0, 0));
            printf("x32 bit alone: %ld\n", raw(0x40000000UL, 0, 0, 0));
            printf("0x80000027: %ld\n", raw(0x80000027UL, 0, 0, 0));
            printf("high getpid is getpid: %d\n", raw(0x100000027UL, 0, 0, 0) == pid);
            printf("all-ones high getpid is getpid: %d\n", raw(0xffffffff00000027UL, 0, 0, 0) == pid);
            fflush(stdout);
            static const char msg[] = "written by 0x100000001\n";
            long n = raw(0x100000001UL, 1, (long)msg, strlen(msg));
            printf("write returned %ld\n", n);
            fflush(stdout);
            raw(0x50000000000003cUL, 3, 0, 0);   /* exit_group(3) with high bits */
            return 9;
        }
        """#

    @Test func highBitsAreIgnoredAndUnknownNumbersAreENOSYSInRecordAndReplay() throws {
        let out = try Harness.matchesNative(Self.program, name: "numbers", in: dir)
        #expect(out.contains("-1: -38\n"), "\(out)")
        #expect(out.contains("x32 getpid: -38\n"), "\(out)")
        #expect(out.contains("high getpid is getpid: 1\n"), "\(out)")
        #expect(out.contains("written by 0x100000001\nwrite returned 23\n"), "\(out)")
    }

    /// The recorded event keeps the whole of RAX, and dump names the call
    /// Linux ran for it.
    @Test func theTraceKeepsAll64Bits() throws {
        let exe = try Harness.compile(Self.program, name: "numbers-dump", in: dir)
        let trace = dir.appendingPathComponent("numbers-trace")
        let rec = try Harness.record([exe], trace: trace)
        #expect(rec.status == 3, "\(rec.stderr)")
        let numbers = try Harness.dumpJSON(trace).compactMap { $0["number"] as? NSNumber }.map { $0.uint64Value }
        #expect(numbers.contains(UInt64.max))
        #expect(numbers.contains(0xffff_ffff_0000_0027))
        #expect(numbers.contains(0x1_0000_0001))
    }
}
