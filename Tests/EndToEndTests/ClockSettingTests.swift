import Foundation
import Testing

/// clock_settime and settimeofday: every error Linux finds before it would
/// set a clock is Linux's (compared with a native run, which sets
/// nothing), and a call that would set one is EPERM with a report, never
/// the host's clock changed (Python's test_time accepts PermissionError).
@Suite struct ClockSettingTests {
    let dir = Harness.temporaryDirectory()

    static let prelude = #"""
        #define _GNU_SOURCE
        #include <errno.h>
        #include <stdio.h>
        #include <string.h>
        #include <sys/syscall.h>
        #include <sys/time.h>
        #include <time.h>
        #include <unistd.h>
        static void T(const char *what, long r) { printf("%s: %ld %s\n", what, r, r < 0 ? strerror(errno) : ""); }
        """#

    @Test func errorsBeforeSettingAreLinuxs() throws {
        let out = try Harness.matchesNative(Self.prelude + #"""
            int main(void) {
              struct timespec now;
              clock_gettime(CLOCK_REALTIME, &now);
              struct timespec bad = now;
              bad.tv_nsec = 1000000000;
              T("monotonic", syscall(SYS_clock_settime, CLOCK_MONOTONIC, &now));
              T("boottime", syscall(SYS_clock_settime, CLOCK_BOOTTIME, &now));
              T("tai", syscall(SYS_clock_settime, CLOCK_TAI, &now));
              T("unknown clock", syscall(SYS_clock_settime, 99, &now));
              T("process clock", syscall(SYS_clock_settime, CLOCK_PROCESS_CPUTIME_ID, &now));
              T("unknown clock, bad pointer", syscall(SYS_clock_settime, 99, (void *)8));
              T("realtime, bad pointer", syscall(SYS_clock_settime, CLOCK_REALTIME, (void *)8));
              T("realtime, bad nanoseconds", syscall(SYS_clock_settime, CLOCK_REALTIME, &bad));
              bad.tv_nsec = 0; bad.tv_sec = -1;
              T("realtime, negative seconds", syscall(SYS_clock_settime, CLOCK_REALTIME, &bad));
              clockid_t own;
              clock_getcpuclockid(getpid(), &own);
              T("own cpu clock", syscall(SYS_clock_settime, own, &now));
              T("cpu clock of no process", syscall(SYS_clock_settime, (clockid_t)((~999999) << 3 | 2), &now));
              T("clock descriptor that is no clock", syscall(SYS_clock_settime, (clockid_t)((~0) << 3 | 3), &now));
              struct timeval tv = { now.tv_sec, -1 };
              T("settimeofday, bad microseconds", syscall(SYS_settimeofday, &tv, NULL));
              tv.tv_usec = 0;
              T("settimeofday, bad time pointer", syscall(SYS_settimeofday, (void *)8, NULL));
              T("settimeofday, bad zone pointer", syscall(SYS_settimeofday, &tv, (void *)8));
              tv.tv_sec = -1;
              T("settimeofday, negative seconds", syscall(SYS_settimeofday, &tv, NULL));
              return 0;
            }
            """#, name: "clockerrors", in: dir)
        #expect(out.contains("monotonic: -1 Invalid argument"))
        #expect(out.contains("realtime, bad pointer: -1 Bad address"))
        #expect(out.contains("own cpu clock: -1 Operation not permitted"))
    }

    /// Run as root (detrec needs /dev/kvm), Linux would set the clock:
    /// the recording gets EPERM and says so; settimeofday(NULL, NULL),
    /// which sets nothing, succeeds.
    @Test func settingIsRefusedWithAReport() throws {
        let exe = try Harness.compile(Self.prelude + #"""
            int main(void) {
              struct timespec now;
              clock_gettime(CLOCK_REALTIME, &now);
              T("clock_settime", syscall(SYS_clock_settime, CLOCK_REALTIME, &now));
              struct timeval tv = { now.tv_sec, 0 };
              T("settimeofday", syscall(SYS_settimeofday, &tv, NULL));
              struct timezone tz = { 0, 0 };
              T("settimeofday zone", syscall(SYS_settimeofday, NULL, &tz));
              T("settimeofday nothing", syscall(SYS_settimeofday, NULL, NULL));
              return 0;
            }
            """#, name: "clockset", in: dir)
        let (rec, _) = try Harness.roundTrip([exe], in: dir)
        #expect(rec.stdout == """
            clock_settime: -1 Operation not permitted
            settimeofday: -1 Operation not permitted
            settimeofday zone: -1 Operation not permitted
            settimeofday nothing: 0 \("")

            """)
        #expect(rec.stderr.contains("clock_settime would set CLOCK_REALTIME, which detrec does not do"))
    }
}
