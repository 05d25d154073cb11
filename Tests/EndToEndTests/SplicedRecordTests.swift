import Foundation
import Testing

/// A datagram or seqpacket socket's records spliced into an inherited
/// stdout that is a pipe (`detrec record ... | cat`): the recording peeks
/// the record that will move (a splice shorter than it drops the rest, as
/// Linux's does), and replay prints it again. Before, detrec refused the
/// splice with EINVAL where Linux moves the record.
@Suite(.serialized) struct SplicedRecordTests {
    let dir = Harness.temporaryDirectory()

    @Test func spliceFromADatagramSocketIntoAPipedStdoutReplays() throws {
        let exe = try Harness.compile(#"""
            #define _GNU_SOURCE
            #include <errno.h>
            #include <fcntl.h>
            #include <stdio.h>
            #include <string.h>
            #include <unistd.h>
            #include <sys/socket.h>
            int main(void) {
              int sv[2]; socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
              write(sv[1], "through a socket\n", 17);
              long r = splice(sv[0], 0, 1, 0, 17, 0);
              fprintf(stderr, "splice %ld %s\n", r, r < 0 ? strerror(errno) : "");
              int d[2]; socketpair(AF_UNIX, SOCK_DGRAM, 0, d);
              write(d[1], "datagram\n", 9);
              r = splice(d[0], 0, 1, 0, 9, 0);
              fprintf(stderr, "splice dgram %ld %s\n", r, r < 0 ? strerror(errno) : "");
              write(d[1], "0123456789\n", 11);
              write(d[1], "next\n", 5);
              r = splice(d[0], 0, 1, 0, 4, 0);
              fprintf(stderr, "\nsplice cut %ld\n", r);
              r = splice(d[0], 0, 1, 0, 100, 0);
              fprintf(stderr, "splice next %ld\n", r);
              int q[2]; socketpair(AF_UNIX, SOCK_SEQPACKET, 0, q);
              write(q[1], "packet\n", 7);
              r = splice(q[0], 0, 1, 0, 100, 0);
              fprintf(stderr, "splice seqpacket %ld\n", r);
              return 0;
            }
            """#, name: "record_splice", in: dir)
        let trace = dir.appendingPathComponent("record_splice.trace")
        func piped(_ command: String) throws -> (String, String) {
            let r = try Harness.run(["/bin/sh", "-c", command + " | cat"])
            #expect(r.status == 0, "\(command): \(r.stderr)")
            return (r.stdout, r.stderr)
        }
        let native = try piped(exe)
        #expect(native.0 == "through a socket\ndatagram\n0123next\npacket\n")
        #expect(native.1.contains("splice dgram 9 \n"))
        let recorded = try piped("\(Harness.detrec) record -q -o \(trace.path) -- \(exe)")
        #expect(recorded.0 == native.0)
        #expect(recorded.1 == native.1)
        #expect(try piped("\(Harness.detrec) replay \(trace.path)").0 == native.0)
    }
}
