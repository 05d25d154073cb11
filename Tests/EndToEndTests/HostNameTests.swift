import Foundation
import Testing

/// sethostname and setdomainname: the errors Linux finds first are
/// Linux's (compared with a native run, which sets nothing), and a call
/// that would change the host's name is EPERM with a report. Before, both
/// were unimplemented (ENOSYS), which Python's test_socket.test_sethostname
/// does not accept (it skips on EPERM).
@Suite struct HostNameTests {
    let dir = Harness.temporaryDirectory()

    static let prelude = #"""
        #define _GNU_SOURCE
        #include <errno.h>
        #include <stdio.h>
        #include <string.h>
        #include <sys/syscall.h>
        #include <unistd.h>
        static void T(const char *what, long r) { printf("%s: %ld %s\n", what, r, r < 0 ? strerror(errno) : ""); }
        """#

    @Test func errorsBeforeSettingAreLinuxs() throws {
        let out = try Harness.matchesNative(Self.prelude + #"""
            int main(void) {
              char name[80]; memset(name, 'a', sizeof name);
              T("sethostname, too long", syscall(SYS_sethostname, name, 65));
              T("sethostname, negative length", syscall(SYS_sethostname, name, -1));
              T("sethostname, bad pointer", syscall(SYS_sethostname, (void *)8, 5));
              T("setdomainname, too long", syscall(SYS_setdomainname, name, 65));
              T("setdomainname, bad pointer", syscall(SYS_setdomainname, (void *)8, 5));
              return 0;
            }
            """#, name: "hostnameerrors", in: dir)
        #expect(out == """
            sethostname, too long: -1 Invalid argument
            sethostname, negative length: -1 Invalid argument
            sethostname, bad pointer: -1 Bad address
            setdomainname, too long: -1 Invalid argument
            setdomainname, bad pointer: -1 Bad address

            """)
    }

    /// Run as root (detrec needs /dev/kvm), Linux would change the names:
    /// the recording gets EPERM and says so, and the host's name stays.
    @Test func settingIsRefusedWithAReport() throws {
        let exe = try Harness.compile(Self.prelude + #"""
            int main(void) {
              char before[256], after[256];
              gethostname(before, sizeof before);
              T("sethostname", syscall(SYS_sethostname, "detrec-test", 11));
              T("setdomainname", syscall(SYS_setdomainname, "detrec-test", 11));
              gethostname(after, sizeof after);
              printf("unchanged: %d\n", strcmp(before, after) == 0);
              return 0;
            }
            """#, name: "hostnameset", in: dir)
        let (rec, _) = try Harness.roundTrip([exe], in: dir)
        #expect(rec.stdout == """
            sethostname: -1 Operation not permitted
            setdomainname: -1 Operation not permitted
            unchanged: 1

            """)
        #expect(rec.stderr.contains("sethostname would set the host name, which detrec does not do"))
    }
}
