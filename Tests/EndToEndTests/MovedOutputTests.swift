import Foundation
import Testing

/// Bytes that copy_file_range, sendfile and splice move into the inherited
/// stdout never pass through guest memory: replay prints them again from
/// the trace (`cat FILE > out` uses copy_file_range since coreutils 9).
/// The test's stdout is a regular file, as a shell's `> out` makes it.
@Suite(.serialized) struct MovedOutputTests {
    let dir = Harness.temporaryDirectory()

    @Test func copyFileRangeSendfileAndSpliceIntoStdoutReplay() throws {
        let out = try Harness.matchesNative(#"""
            #define _GNU_SOURCE
            #include <fcntl.h>
            #include <stdio.h>
            #include <string.h>
            #include <unistd.h>
            #include <sys/sendfile.h>
            #include <sys/wait.h>
            int main(void) {
              char name[] = "/tmp/moved-XXXXXX"; int f = mkstemp(name); unlink(name);
              const char *text = "0123456789abcdefghij\n";
              write(f, text, strlen(text)); lseek(f, 2, SEEK_SET);
              // The file's own offset, then an explicit one (which it keeps).
              ssize_t a = copy_file_range(f, 0, 1, 0, 5, 0);
              off_t at = 10; ssize_t b = copy_file_range(f, &at, 1, 0, 4, 0);
              write(1, "|", 1);
              ssize_t c = sendfile(1, f, 0, 3);
              off_t from = 14; ssize_t d = sendfile(1, f, &from, 100);
              // From a pipe a child fills, in parts.
              int p[2]; pipe(p);
              if (fork() == 0) { close(p[0]); write(p[1], "piped ", 6); usleep(1000); write(p[1], "more\n", 5); _exit(0); }
              close(p[1]);
              long spliced = 0; ssize_t n;
              while ((n = splice(p[0], 0, 1, 0, 4, 0)) > 0) spliced += n;
              wait(0);
              // A pipe input is not a regular file: EINVAL, as on Linux.
              int q[2]; pipe(q); write(q[1], "x", 1);
              ssize_t e = copy_file_range(q[0], 0, 1, 0, 1, 0);
              printf("\n%zd %zd %lld %zd %zd %lld %ld %zd\n", a, b, (long long)at, c, d, (long long)from, spliced,
                     e < 0 ? -1 : e);
              return 0;
            }
            """#, name: "moved", in: dir)
        #expect(out == "23456abcd|789efghij\npiped more\n\n5 4 14 3 7 21 11 -1\n")
    }

    @Test func catIntoARedirectedStdoutReplays() throws {
        let file = dir.appendingPathComponent("text")
        try "some lines\nof text\n".write(to: file, atomically: true, encoding: .utf8)
        let cat = ["/bin/cat", file.path, file.path]
        let native = try Harness.run(cat)
        let (rec, _) = try Harness.roundTrip(cat, in: dir)
        #expect(rec.stdout == native.stdout)
        #expect(rec.stdout == "some lines\nof text\nsome lines\nof text\n")
    }

    /// A stream socket's bytes spliced into an inherited stdout that is a
    /// pipe (`detrec record ... | cat`): the recording peeks what will
    /// move, and replay prints it again.
    @Test func spliceFromASocketIntoAPipedStdoutReplays() throws {
        let exe = try Harness.compile(#"""
            #define _GNU_SOURCE
            #include <fcntl.h>
            #include <stdio.h>
            #include <unistd.h>
            #include <sys/socket.h>
            #include <sys/wait.h>
            int main(void) {
              int sv[2]; socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
              if (fork() == 0) { close(sv[1]); write(sv[0], "over ", 5); usleep(1000); write(sv[0], "a socket\n", 9); _exit(0); }
              close(sv[0]);
              long moved = 0; ssize_t n;
              while ((n = splice(sv[1], 0, 1, 0, 4, 0)) > 0) moved += n;
              wait(0);
              printf("moved %ld, last %zd\n", moved, n);
              return 0;
            }
            """#, name: "socket_splice", in: dir)
        let trace = dir.appendingPathComponent("socket_splice.trace")
        func piped(_ command: String) throws -> String {
            let r = try Harness.run(["/bin/sh", "-c", command + " | cat"])
            #expect(r.status == 0, "\(command): \(r.stderr)")
            return r.stdout
        }
        let native = try piped(exe)
        #expect(native == "over a socket\nmoved 14, last 0\n")
        #expect(try piped("\(Harness.detrec) record -q -o \(trace.path) -- \(exe)") == native)
        #expect(try piped("\(Harness.detrec) replay \(trace.path)") == native)
    }
}
