import Foundation
import Testing

/// What a program gets for bad requests: -EFAULT for bad pointers, ENOSYS
/// for syscalls detrec does not know (reported on stderr), the errors Linux
/// gives for out-of-range arguments. detrec itself must never crash on
/// anything a guest passes it.
@Suite struct GuestErrorTests {
    static let badPointers = #"""
    #include <errno.h>
    #include <fcntl.h>
    #include <stdio.h>
    #include <string.h>
    #include <sys/stat.h>
    #include <sys/uio.h>
    #include <unistd.h>
    #define SHOW(name, call) do { errno = 0; long r_ = (long)(call); printf("%s=%ld errno=%d\n", name, r_, errno); } while (0)
    int main(void) {
        SHOW("write", write(1, (void *)1, 10));
        SHOW("read", read(0, (void *)16, 10));
        SHOW("write_kernel_half", write(1, (void *)0xffff800000000000UL, 10));
        SHOW("open", open((const char *)8, O_RDONLY));
        SHOW("stat", stat("/", (struct stat *)24));
        struct iovec iov = { (void *)4096, 8 };
        SHOW("writev", writev(1, &iov, 1));
        SHOW("readv_bad_iovec", readv(0, (struct iovec *)32, 1));
        SHOW("clock_gettime", clock_gettime(0, (void *)40));
        SHOW("pipe", pipe((int *)48));
        char rest[8] = {0};
        SHOW("read_after", read(0, rest, 7));
        printf("rest=[%s]\n", rest);
        return 0;
    }
    """#

    @Test func badPointersGiveEFAULT() throws {
        let s = Scratch(); defer { s.remove() }
        let r = try recordAndReplay(try compile(Self.badPointers), stdin: .text("stdin data"), in: s)
        #expect(r.record.status == 0, "detrec did not survive: \(r.record)")
        let v = keyValues(r.record.stdout)
        for name in ["write", "read", "write_kernel_half", "open", "stat", "writev", "readv_bad_iovec", "clock_gettime", "pipe"] {
            #expect(v[name] == "-1 errno=14", "\(name): \(v[name] ?? "missing")")
        }
        // The failed read consumed nothing.
        #expect(v["read_after"] == "7 errno=0" && v["rest"] == "[stdin d]", "\(r.record.stdout)")
        #expect(!r.record.stderr.contains("Fatal error") && !r.record.stderr.contains("runtime failure"))
    }

    static let unknownSyscall = #"""
    #include <errno.h>
    #include <stdio.h>
    #include <unistd.h>
    #include <sys/syscall.h>
    int main(void) {
        errno = 0;
        long r = syscall(1000, 1, 2, 3);
        printf("syscall(1000)=%ld errno=%d\n", r, errno);
        errno = 0;
        r = syscall(1000);
        printf("again=%ld errno=%d\n", r, errno);
        return 0;
    }
    """#

    @Test func unknownSyscallReturnsENOSYSWithAReport() throws {
        let s = Scratch(); defer { s.remove() }
        let r = try recordAndReplay(try compile(Self.unknownSyscall), in: s)
        #expect(r.record.status == 0)
        #expect(r.record.stdout == "syscall(1000)=-1 errno=38\nagain=-1 errno=38\n")
        let reports = r.record.stderr.split(separator: "\n").filter { $0.contains("1000") }
        #expect(reports.count == 1, "one report line naming the syscall, once: \(r.record.stderr)")
        #expect(reports.first?.contains("ENOSYS") == true)
        #expect(reports.first?.range(of: #"rip 0x[0-9a-f]+"#, options: .regularExpression) != nil, "the report names no RIP: \(r.record.stderr)")
        let d = try dumpJSON(r.trace, in: s)
        let calls = d.events.filter { $0.int("number") == 1000 }
        #expect(calls.count == 2)
        #expect(calls.allSatisfy { $0.int("result") == -38 })
    }

    @Test func strictMakesAnUnknownSyscallFatal() throws {
        let s = Scratch(); defer { s.remove() }
        let program = try compile(Self.unknownSyscall)
        let r = try detrec(["record", "-q", "--strict", "-o", s.file("trace"), "--", program], in: s.path)
        #expect(r.status != 0 && r.status < 128, "\(r)")
        #expect(r.stdout == "")
        #expect(r.stderr.contains("1000"), "\(r.stderr)")
        #expect(r.stderr.contains("rip 0x"))
        #expect(!r.stderr.contains("runtime failure"))
        // Without --strict the same program runs to its end.
        let lax = try detrec(["record", "-q", "-o", s.file("lax"), "--", program], in: s.path)
        #expect(lax.status == 0)
    }

    @Test func recordHelpIsTheCommandsHelpUnlessAfterDashDash() throws {
        let s = Scratch(); defer { s.remove() }
        let help = try detrec(["record", "--help"], in: s.path)
        #expect(help.status == 0, "\(help)")
        #expect(help.stdout.contains("USAGE: detrec record"), "\(help)")
        // After `--` it is the program's name, as for any other word.
        let program = try detrec(["record", "-q", "-o", s.file("t"), "--", "--help"], in: s.path)
        #expect(program.status != 0)
        #expect(program.stderr.contains("--help"), "\(program)")
    }

    // MARK: - Out-of-range arguments: Linux's answer, not a detrec crash.

    /// Runs `source` natively and under record/replay: all three must print
    /// the same and end the same way.
    @discardableResult
    func behavesAsNatively(_ source: String, args: [String] = [], sourceLocation: SourceLocation = #_sourceLocation) throws -> Recording {
        let s = Scratch(); defer { s.remove() }
        let program = try compile(source)
        let native = try run([program] + args, in: s.path)
        let r = try recordAndReplay(program, args, replays: 0, in: s, sourceLocation: sourceLocation)
        if r.record.status >= 128, ["runtime failure", "Fatal error", "*** Signal"].contains(where: r.record.stderr.contains) {
            let where_ = r.record.stderr.split(separator: "\n").first { $0.contains("Sources/") }.map(String.init) ?? ""
            Issue.record("detrec crashed (status \(r.record.status)) where Linux prints:\n\(native.stdout)\(where_)", sourceLocation: sourceLocation)
            return r
        }
        #expect(r.record.stdout == native.stdout, "native: \(native)\nrecorded: \(r.record)", sourceLocation: sourceLocation)
        #expect(r.record.status == native.status, "native: \(native)\nrecorded: \(r.record)", sourceLocation: sourceLocation)
        for i in 0..<2 {
            let replay = try detrec(["replay", r.trace], in: s.path)
            #expect(replay.stdout == r.record.stdout && replay.status == r.record.status, "replay \(i): \(replay)", sourceLocation: sourceLocation)
        }
        return r
    }

    @Test func mmapHintNearTheTopOfTheAddressSpaceIsIgnored() throws {
        // Linux ignores a hint it cannot use. detrec must not overflow computing hint + length.
        try behavesAsNatively(#"""
        #include <stdio.h>
        #include <sys/mman.h>
        int main(void) {
            void *p = mmap((void *)0xfffffffffffff000UL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            printf("mmap %s\n", p == MAP_FAILED ? "failed" : "ok");
            void *q = mmap((void *)0x7ffffffff000UL, 1UL << 20, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            printf("mmap2 %s\n", q == MAP_FAILED ? "failed" : "ok");
            return 0;
        }
        """#)
    }

    @Test func pollWithHugeDescriptorCountIsEINVAL() throws {
        try behavesAsNatively(#"""
        #include <errno.h>
        #include <poll.h>
        #include <stdio.h>
        #include <unistd.h>
        #include <sys/syscall.h>
        int main(void) {
            struct pollfd pf = {0, POLLIN, 0};
            errno = 0;
            long r = syscall(SYS_poll, &pf, (unsigned long)-1, 0);
            printf("poll(nfds=-1)=%ld errno=%d\n", r, errno);
            errno = 0;
            r = syscall(SYS_poll, &pf, 1UL << 40, 0);
            printf("poll(nfds=2^40)=%ld errno=%d\n", r, errno);
            return 0;
        }
        """#)
    }

    @Test func ppollWithHugeTimeoutDoesNotOverflow() throws {
        try behavesAsNatively(#"""
        #define _GNU_SOURCE
        #include <errno.h>
        #include <poll.h>
        #include <stdio.h>
        #include <time.h>
        #include <unistd.h>
        #include <sys/syscall.h>
        int main(void) {
            int p[2];
            pipe(p);
            write(p[1], "x", 1);
            struct pollfd pf = {p[0], POLLIN, 0};
            struct timespec ts = {0x7fffffffffffffffL, 999999999};
            errno = 0;
            long r = syscall(SYS_ppoll, &pf, 1UL, &ts, 0, 8);
            printf("ppoll=%ld errno=%d revents=%d\n", r, errno, pf.revents);
            struct timespec bad = {-1, 0};
            errno = 0;
            r = syscall(SYS_ppoll, &pf, 1UL, &bad, 0, 8);
            printf("ppoll_negative=%ld errno=%d\n", r, errno);
            return 0;
        }
        """#)
    }

    @Test func mremapAcrossTwoMappingsIsEFAULT() throws {
        // Linux's mremap works on one mapping: a range covering two (here
        // with different protections) fails with EFAULT.
        try behavesAsNatively(#"""
        #define _GNU_SOURCE
        #include <errno.h>
        #include <stdio.h>
        #include <sys/mman.h>
        int main(void) {
            char *m = mmap(0, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            mprotect(m, 4096, PROT_READ);
            errno = 0;
            void *r = mremap(m, 8192, 1 << 20, MREMAP_MAYMOVE);
            printf("mremap %s errno=%d\n", r == MAP_FAILED ? "failed" : "moved", errno);
            return 0;
        }
        """#)
    }

    @Test func negativeAndHugeSizes() throws {
        try behavesAsNatively(#"""
        #include <errno.h>
        #include <stdio.h>
        #include <sys/mman.h>
        #include <sys/uio.h>
        #include <unistd.h>
        #define SHOW(name, call) do { errno = 0; long r_ = (long)(call); printf("%s=%ld errno=%d\n", name, r_, errno); } while (0)
        int main(void) {
            char buf[16];
            SHOW("read_negative_fd", read(-1, buf, 1));
            SHOW("read_fd_high_bits", read((int)0x100000000L, buf, 0));
            SHOW("mmap_huge", (long)mmap(0, 1UL << 62, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
            SHOW("munmap_zero", munmap(buf, 0));
            SHOW("mprotect_bad_prot", mprotect((void *)((unsigned long)buf & ~4095UL), 4096, 0x100));
            struct iovec iov[1] = {{buf, 1}};
            SHOW("readv_negative_count", readv(0, iov, -1));
            SHOW("readv_huge_count", readv(0, iov, 100000));
            SHOW("lseek_bad_whence", lseek(0, 0, 99));
            SHOW("dup2_negative", dup2(1, -1));
            SHOW("close_unopened", close(77));
            return 0;
        }
        """#)
    }
}
