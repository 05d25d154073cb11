import Foundation
import Glibc
import Testing
import Trace

/// Static programs that end normally: what they print is recorded, and
/// every replay prints it again and ends the same way.
@Suite struct StaticProgramTests {
    static let hello = #"""
    #include <stdio.h>
    int main(void) { puts("hello, world"); return 0; }
    """#

    @Test func helloWorld() throws {
        let s = Scratch(); defer { s.remove() }
        let r = try recordAndReplay(try compile(Self.hello), in: s)
        #expect(r.record.status == 0)
        #expect(r.record.stdout == "hello, world\n")
        #expect(r.record.stderr == "", "record -q wrote to stderr: \(r.record.stderr)")
        #expect(r.replay.stderr == "")
    }

    @Test func recordReportsTheTraceUnlessQuiet() throws {
        let s = Scratch(); defer { s.remove() }
        let r = try detrec(["record", "-o", s.file("trace"), "--", try compile(Self.hello)], in: s.path)
        #expect(r.status == 0)
        #expect(r.stdout == "hello, world\n")
        #expect(r.stderr.contains("trace \(s.file("trace"))"), "\(r)")
        #expect(r.stderr.contains("events"))
        for name in ["header.json", "events", "files"] {
            #expect(access(s.file("trace/\(name)"), F_OK) == 0, "the trace has no \(name)")
        }
    }

    static let exitStatus = #"""
    #include <stdio.h>
    #include <stdlib.h>
    #include <unistd.h>
    int main(int argc, char **argv) {
        printf("exiting with %s\n", argv[1]);
        fflush(stdout);
        if (argv[2][0] == '_') _exit(atoi(argv[1]));
        return atoi(argv[1]);
    }
    """#

    @Test(arguments: [("3", "return", Int32(3)), ("3", "_exit", 3), ("0", "return", 0), ("255", "_exit", 255), ("263", "_exit", 7)])
    func exitStatusPropagates(code: String, how: String, expected: Int32) throws {
        let s = Scratch(); defer { s.remove() }
        let r = try recordAndReplay(try compile(Self.exitStatus), [code, how], in: s)
        #expect(r.record.status == expected)
        #expect(r.record.stdout == "exiting with \(code)\n")
        let dump = try dumpJSON(r.trace, in: s)
        #expect(dump.events.last?.string("kind") == "exit")
        #expect(dump.events.last?.int("status") == Int(expected))
    }

    static let argsAndEnvironment = #"""
    #include <stdio.h>
    #include <stdlib.h>
    extern char **environ;
    int main(int argc, char **argv) {
        printf("argc=%d\n", argc);
        for (int i = 1; i < argc; i++) printf("argv[%d]=[%s]\n", i, argv[i]);
        const char *v = getenv("DETREC_TEST_VAR");
        printf("DETREC_TEST_VAR=%s\n", v ? v : "(unset)");
        int n = 0;
        for (char **e = environ; *e; e++) n++;
        printf("envc=%d\n", n);
        return 0;
    }
    """#

    @Test func argumentsAndEnvironmentAreRecorded() throws {
        let s = Scratch(); defer { s.remove() }
        let args = ["one", "two words", "", "ünïcödé", "--flag=x"]
        let env = E2E.baseEnvironment + ["DETREC_TEST_VAR=recorded value"]
        // Replay runs with another environment: the guest still sees the recorded one.
        let r = try recordAndReplay(try compile(Self.argsAndEnvironment), args, environment: env,
                                    replayEnvironment: ["PATH=/usr/bin:/bin", "DETREC_TEST_VAR=replay value"], in: s)
        #expect(r.record.status == 0)
        var expected = "argc=\(args.count + 1)\n"
        for (i, a) in args.enumerated() { expected += "argv[\(i + 1)]=[\(a)]\n" }
        expected += "DETREC_TEST_VAR=recorded value\nenvc=\(env.count)\n"
        #expect(r.record.stdout == expected)
        let dump = try dumpJSON(r.trace, in: s)
        #expect((dump.header["argv"] as? [String])?.dropFirst().map { $0 } == args)
        #expect((dump.header["envp"] as? [String]) == env)
    }

    static let echoStdin = #"""
    #include <stdio.h>
    #include <unistd.h>
    int main(void) {
        char buf[4096];
        size_t total = 0;
        ssize_t n;
        while ((n = read(0, buf, sizeof buf)) > 0) {
            total += n;
            fwrite(buf, 1, n, stdout);
        }
        printf("\n[read %zu bytes, last read returned %zd]\n", total, n);
        return 0;
    }
    """#

    @Test func stdinIsRecordedAndNotReadOnReplay() throws {
        let s = Scratch(); defer { s.remove() }
        let input = (0..<300).map { "line \($0) of the input\n" }.joined()
        let program = try compile(Self.echoStdin)
        let r = try recordAndReplay(program, stdin: .text(input), replayStdin: .devNull, in: s)
        #expect(r.record.status == 0)
        #expect(r.record.stdout == input + "\n[read \(input.utf8.count) bytes, last read returned 0]\n")

        // Stdin closed on replay: the same.
        let closed = try detrec(["replay", r.trace], stdin: .closed, in: s.path)
        #expect(closed.stdout == r.record.stdout)
        #expect(closed.status == 0)

        // A pipe with other data: the same output, and the data is still there afterwards.
        var fds: [Int32] = [0, 0]
        #expect(cloexecPipe(&fds))
        defer { close(fds[0]) }
        let marker = Array("replay must not read this".utf8)
        #expect(write(fds[1], marker, marker.count) == marker.count)
        close(fds[1])
        let piped = try detrec(["replay", r.trace], stdin: .fd(fds[0]), in: s.path)
        #expect(piped.stdout == r.record.stdout)
        #expect(piped.status == 0)
        var left = [UInt8](repeating: 0, count: 100)
        let n = read(fds[0], &left, left.count)
        #expect(n == marker.count, "replay consumed its stdin")
        #expect(Array(left.prefix(max(0, n))) == marker)
    }

    static let nondeterminism = #"""
    #include <stdio.h>
    #include <sys/auxv.h>
    #include <sys/random.h>
    #include <sys/time.h>
    #include <time.h>
    int main(void) {
        unsigned char r[16];
        if (getrandom(r, sizeof r, 0) != sizeof r) return 1;
        printf("getrandom=");
        for (int i = 0; i < 16; i++) printf("%02x", r[i]);
        const unsigned char *at = (const unsigned char *)getauxval(AT_RANDOM);
        printf("\nat_random=");
        for (int i = 0; i < 16; i++) printf("%02x", at[i]);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        printf("\nrealtime=%lld.%09ld\n", (long long)ts.tv_sec, ts.tv_nsec);
        clock_gettime(CLOCK_MONOTONIC, &ts);
        printf("monotonic=%lld.%09ld\n", (long long)ts.tv_sec, ts.tv_nsec);
        struct timeval tv;
        gettimeofday(&tv, 0);
        printf("gettimeofday=%lld.%06ld\n", (long long)tv.tv_sec, (long)tv.tv_usec);
        printf("time=%lld\n", (long long)time(0));
        return 0;
    }
    """#

    @Test func randomnessAndClocksDifferBetweenRecordingsButNotBetweenReplays() throws {
        let s = Scratch(); defer { s.remove() }
        let program = try compile(Self.nondeterminism)
        let first = try recordAndReplay(program, traceName: "first", in: s)
        let second = try recordAndReplay(program, traceName: "second", in: s)
        #expect(first.record.status == 0 && second.record.status == 0)
        let a = keyValues(first.record.stdout), b = keyValues(second.record.stdout)
        for key in ["getrandom", "at_random", "realtime", "monotonic"] {
            #expect(a[key] != nil && b[key] != nil, "missing \(key): \(first.record.stdout)")
            #expect(a[key] != b[key], "\(key) is the same in two recordings: \(a[key] ?? "")")
        }
        #expect(a["getrandom"]?.count == 32 && a["at_random"]?.count == 32)
        #expect(a["getrandom"] != a["at_random"])
        // The trace's processStart carries the AT_RANDOM bytes the guest saw.
        let dump = try dumpJSON(first.trace, in: s)
        #expect(dump.events.first?.string("kind") == "processStart")
        #expect(dump.events.first?.string("atRandom") == a["at_random"])
    }

    static let fileIO = #"""
    #include <fcntl.h>
    #include <stdio.h>
    #include <string.h>
    #include <sys/stat.h>
    #include <unistd.h>
    int main(int argc, char **argv) {
        char a[1024], b[1024], in[1024];
        snprintf(a, sizeof a, "%s/a.txt", argv[1]);
        snprintf(b, sizeof b, "%s/b.txt", argv[1]);
        snprintf(in, sizeof in, "%s/input.txt", argv[1]);
        int fd = open(a, O_CREAT | O_RDWR | O_TRUNC, 0600);
        printf("open ok=%d\n", fd >= 0);
        printf("write=%zd\n", write(fd, "0123456789abcdef", 16));
        printf("lseek=%ld\n", (long)lseek(fd, 10, SEEK_SET));
        char buf[32] = {0};
        printf("read=%zd [%s]\n", read(fd, buf, sizeof buf - 1), buf);
        printf("lseek_end=%ld\n", (long)lseek(fd, 0, SEEK_END));
        struct stat st;
        int rc = fstat(fd, &st);
        printf("fstat=%d size=%ld mode=%o\n", rc, (long)st.st_size, st.st_mode & 0777);
        printf("pread=%zd\n", pread(fd, buf, 4, 2));
        printf("pread_data=[%.4s]\n", buf);
        printf("close=%d\n", close(fd));
        printf("rename=%d\n", rename(a, b));
        printf("stat_old=%d\n", stat(a, &st));
        rc = stat(b, &st);
        printf("stat_new=%d size=%ld\n", rc, (long)st.st_size);
        printf("unlink=%d\n", unlink(b));
        printf("access_after=%d\n", access(b, F_OK));
        int in_fd = open(in, O_RDONLY);
        memset(buf, 0, sizeof buf);
        printf("input=[%.*s]\n", (int)read(in_fd, buf, sizeof buf - 1), buf);
        fd = open(a, O_CREAT | O_WRONLY, 0644);
        printf("left=%zd\n", write(fd, "left behind", 11));
        return 0;
    }
    """#

    @Test func fileIOIsReplayedWithoutTouchingTheFileSystem() throws {
        let s = Scratch(); defer { s.remove() }
        let work = Scratch("files"); defer { work.remove() }
        try "recorded input".write(toFile: work.file("input.txt"), atomically: true, encoding: .utf8)
        let r = try recordAndReplay(try compile(Self.fileIO), [work.path], in: s, beforeReplay: {
            #expect(readBytes(work.file("a.txt")) == Array("left behind".utf8))
            // Replay must take everything from the trace: the directory is gone.
            work.remove()
        })
        #expect(r.record.status == 0)
        let v = keyValues(r.record.stdout)
        #expect(v["open ok"] == "1")
        #expect(v["write"] == "16")
        #expect(v["lseek"] == "10")
        #expect(v["read"] == "6 [abcdef]")
        #expect(v["lseek_end"] == "16")
        #expect(v["fstat"] == "0 size=16 mode=600")
        #expect(v["pread"] == "4" && v["pread_data"] == "[2345]")
        #expect(v["rename"] == "0" && v["stat_old"] == "-1" && v["stat_new"] == "0 size=16")
        #expect(v["unlink"] == "0" && v["access_after"] == "-1")
        #expect(v["input"] == "[recorded input]")
        #expect(v["left"] == "11")
        // Replay created nothing.
        #expect(access(work.path, F_OK) != 0, "replay recreated the program's directory")

        // With the directory back and other contents, replay still shows the recorded ones.
        try FileManager.default.createDirectory(atPath: work.path, withIntermediateDirectories: true)
        try "something else entirely".write(toFile: work.file("input.txt"), atomically: true, encoding: .utf8)
        let again = try detrec(["replay", r.trace], in: s.path)
        #expect(again.stdout == r.record.stdout)
        #expect(again.status == 0)
        #expect(access(work.file("a.txt"), F_OK) != 0, "replay created a.txt")
    }

    static let pipesAndPoll = #"""
    #include <fcntl.h>
    #include <poll.h>
    #include <stdio.h>
    #include <string.h>
    #include <unistd.h>
    int main(void) {
        int p[2];
        printf("pipe=%d\n", pipe(p));
        printf("fds=%d,%d\n", p[0], p[1]);
        struct pollfd pf[2] = {{p[0], POLLIN, 0}, {p[1], POLLOUT, 0}};
        int n = poll(pf, 2, 0);
        printf("poll_empty=%d in=%d out=%d\n", n, pf[0].revents, pf[1].revents);
        printf("write=%zd\n", write(p[1], "through the pipe", 16));
        pf[0].revents = pf[1].revents = 0;
        n = poll(pf, 1, 1000);
        printf("poll_data=%d in=%d\n", n, pf[0].revents);
        char buf[32] = {0};
        printf("read=%zd [%s]\n", read(p[0], buf, sizeof buf - 1), buf);
        int d = dup(p[1]);
        printf("dup=%d\n", d);
        close(p[1]);
        close(d);
        pf[0].revents = 0;
        n = poll(pf, 1, 1000);
        printf("poll_hup=%d hup=%d\n", n, (pf[0].revents & POLLHUP) != 0);
        printf("read_eof=%zd\n", read(p[0], buf, sizeof buf));
        int q[2];
        pipe2(q, O_NONBLOCK | O_CLOEXEC);
        printf("read_nonblock=%zd\n", read(q[0], buf, 1));
        struct pollfd bad = {99, POLLIN, 0};
        n = poll(&bad, 1, 0);
        printf("poll_closed_fd=%d nval=%d\n", n, (bad.revents & POLLNVAL) != 0);
        return 0;
    }
    """#

    @Test func pipesAndPoll() throws {
        let s = Scratch(); defer { s.remove() }
        let r = try recordAndReplay(try compile(Self.pipesAndPoll), in: s)
        #expect(r.record.status == 0)
        #expect(r.record.stdout == """
        pipe=0
        fds=3,4
        poll_empty=1 in=0 out=4
        write=16
        poll_data=1 in=1
        read=16 [through the pipe]
        dup=5
        poll_hup=1 hup=1
        read_eof=0
        read_nonblock=-1
        poll_closed_fd=1 nval=1

        """)
    }

    static let memory = #"""
    #define _GNU_SOURCE
    #include <errno.h>
    #include <stdio.h>
    #include <string.h>
    #include <sys/mman.h>
    int main(void) {
        char *m = mmap(0, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        printf("mmap ok=%d aligned=%d zero=%d\n", m != MAP_FAILED, ((unsigned long)m & 4095) == 0, m[5000] == 0);
        strcpy(m, "first page");
        strcpy(m + 4096, "second page");
        strcpy(m + 8192, "third page");
        printf("mprotect_ro=%d\n", mprotect(m + 4096, 4096, PROT_READ));
        printf("read_ro=[%s]\n", m + 4096);
        printf("mprotect_rw=%d\n", mprotect(m + 4096, 4096, PROT_READ | PROT_WRITE));
        m[4096] = 'S';
        printf("munmap_middle=%d\n", munmap(m + 4096, 4096));
        int rc = mprotect(m + 4096, 2 * 4096, PROT_READ);   /* a hole first: nothing changes */
        printf("mprotect_hole=%d errno=%d\n", rc, errno);
        char *fixed = mmap(m + 4096, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
        printf("map_fixed=%d zero=%d\n", fixed == m + 4096, fixed[0] == 0);
        char *g = mremap(m, 3 * 4096, 64 * 4096, MREMAP_MAYMOVE);
        printf("mremap ok=%d [%s] [%s]\n", g != MAP_FAILED, g, g + 8192);
        g[64 * 4096 - 1] = 7;
        printf("grown_tail=%d\n", g[64 * 4096 - 1]);
        char *h = mremap(g, 64 * 4096, 4096, 0);
        printf("shrink_in_place=%d\n", h == g);
        printf("munmap=%d\n", munmap(h, 4096));
        errno = 0;
        rc = munmap(h + 1, 4096);
        printf("munmap_unaligned=%d errno=%d\n", rc, errno);
        errno = 0;
        void *none = mmap(0, 0, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        printf("mmap_zero failed=%d errno=%d\n", none == MAP_FAILED, errno);
        void *big = mmap(0, 1UL << 30, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        printf("mmap_1g=%d\n", big != MAP_FAILED);
        ((char *)big)[(1UL << 30) - 1] = 1;
        printf("munmap_1g=%d\n", munmap(big, 1UL << 30));
        return 0;
    }
    """#

    @Test func mmapMprotectMunmapMremap() throws {
        let s = Scratch(); defer { s.remove() }
        let r = try recordAndReplay(try compile(Self.memory), in: s)
        #expect(r.record.status == 0, "\(r.record)")
        #expect(r.record.stdout == """
        mmap ok=1 aligned=1 zero=1
        mprotect_ro=0
        read_ro=[second page]
        mprotect_rw=0
        munmap_middle=0
        mprotect_hole=-1 errno=12
        map_fixed=1 zero=1
        mremap ok=1 [first page] [third page]
        grown_tail=7
        shrink_in_place=1
        munmap=0
        munmap_unaligned=-1 errno=22
        mmap_zero failed=1 errno=22
        mmap_1g=1
        munmap_1g=0

        """)
    }

    static let pie = #"""
    #include <stdio.h>
    static int global = 42;
    int main(int argc, char **argv) {
        printf("main=%p\n", (void *)main);
        printf("global=%p value=%d\n", (void *)&global, global);
        printf("stack=%p\n", (void *)&argc);
        printf("%s\n", argv[1]);
        return 0;
    }
    """#

    @Test func staticPIEProgram() throws {
        let s = Scratch(); defer { s.remove() }
        let program = try compile(Self.pie, link: .staticPIE)
        // It really is position-independent.
        let header = readBytes(program)
        #expect(header.count > 18 && header[16] == 3, "not ET_DYN")
        let r = try recordAndReplay(program, ["static-pie says hi"], in: s)
        #expect(r.record.status == 0, "\(r.record)")
        let v = keyValues(r.record.stdout)
        #expect(r.record.stdout.hasSuffix("static-pie says hi\n"))
        let main = v["main"].flatMap { UInt64($0.dropFirst(2), radix: 16) } ?? 0
        #expect(main >= 0x5555_5555_4000 && main < 0x5555_6555_4000, "main at 0x\(String(main, radix: 16)): not where Linux puts a PIE")
        #expect(v["global"]?.hasSuffix("value=42") == true)
        // No address randomization: a second recording lays memory out identically.
        let second = try recordAndReplay(program, ["static-pie says hi"], replays: 1, traceName: "second", in: s)
        #expect(second.record.stdout == r.record.stdout)
    }

    static let dumpProgram = #"""
    #include <unistd.h>
    int main(void) {
        write(1, "hello, dump\n", 12);
        write(2, "to stderr\n", 10);
        return 5;
    }
    """#

    @Test func dumpJSONListsTheProgramsSyscalls() throws {
        let s = Scratch(); defer { s.remove() }
        let r = try recordAndReplay(try compile(Self.dumpProgram), in: s)
        #expect(r.record.status == 5)
        #expect(r.record.stdout == "hello, dump\n")
        #expect(r.record.stderr == "to stderr\n")
        #expect(r.replay.stderr == "to stderr\n", "replay does not re-emit stderr")

        let d = try dumpJSON(r.trace, in: s)
        #expect(d.result.status == 0, "\(d.result)")
        #expect(d.header.int("formatVersion") == Int(traceFormatVersion))
        #expect((d.header["argv"] as? [String])?.count == 1)
        #expect(d.events.count >= 4)
        for (i, e) in d.events.enumerated() {
            #expect(e.int("index") == i)
            #expect(e.string("kind") != nil)
        }
        #expect(d.events.first?.string("kind") == "processStart")
        let writes = d.syscalls(named: "write")
        let toStdout = writes.first { $0.args.first == "0x1" }
        #expect(toStdout?.args[2] == hex(12), "\(String(describing: toStdout))")
        #expect(toStdout?.int("result") == 12)
        #expect(toStdout?.int("number") == 1)
        let toStderr = writes.first { $0.args.first == "0x2" }
        #expect(toStderr?.args[2] == hex(10))
        #expect(d.events.last?.string("kind") == "exit")
        #expect(d.events.last?.int("status") == 5)

        let text = try detrec(["dump", r.trace], in: s.path)
        #expect(text.status == 0)
        #expect(text.stdout.contains("write"))
        #expect(text.stdout.contains("exit"))
        #expect(text.stdout.split(separator: "\n").count >= d.events.count)
    }
}
