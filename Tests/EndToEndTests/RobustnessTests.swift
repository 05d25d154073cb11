import Foundation
import Testing

/// Bad input gets a clear error and loses nothing: wild guest pointers,
/// unknown syscalls, missing programs, damaged or cut-short traces.
@Suite(.serialized) struct RobustnessTests {
    let dir = Harness.temporaryDirectory()

    @Test func wildPointersGetEFAULT() throws {
        let exe = try Harness.compile(#"""
            #include <errno.h>
            #include <stdio.h>
            #include <unistd.h>
            #include <sys/syscall.h>
            int main(void) {
              long a = syscall(SYS_write, 1, (void *)1, 10); int e1 = errno;
              long b = syscall(SYS_read, 0, (void *)16, 10); int e2 = errno;
              long c = syscall(SYS_openat, -100, (void *)0xdead0000, 0); int e3 = errno;
              printf("%ld %d %ld %d %ld %d\n", a, e1, b, e2, c, e3);
              return 0;
            }
            """#, name: "wild", in: dir)
        let (rec, _) = try Harness.roundTrip([exe], in: dir)
        #expect(rec.stdout == "-1 14 -1 14 -1 14\n")
    }

    @Test func unknownSyscallIsENOSYSAndReported() throws {
        let exe = try Harness.compile(#"""
            #include <errno.h>
            #include <stdio.h>
            #include <unistd.h>
            int main(void) { long r = syscall(1000); printf("%ld %d\n", r, errno); return 0; }
            """#, name: "unknown", in: dir)
        let trace = dir.appendingPathComponent("unknown-trace")
        let rec = try Harness.record([exe], trace: trace)
        #expect(rec.stdout == "-1 38\n")
        #expect(rec.stderr.contains("syscall_1000 (1000)"))
        #expect(rec.stderr.contains("guest rip 0x"))
        let strict = try Harness.record([exe], trace: dir.appendingPathComponent("strict-trace"), options: ["--strict"])
        #expect(strict.status != 0)
        #expect(strict.stderr.contains("unimplemented syscall"))
    }

    @Test func missingProgramAndTrace() throws {
        let rec = try Harness.record(["/nonexistent/program"], trace: dir.appendingPathComponent("none"))
        #expect(rec.status == 127)
        #expect(rec.stderr.contains("no such file"))
        let rep = try Harness.replay(dir.appendingPathComponent("no-such-trace"))
        #expect(rep.status != 0 && rep.status < 128)
        #expect(rep.stderr.hasPrefix("detrec:"))
    }

    /// A file exec cannot run (no #! line, a truncated ELF) is the shell's
    /// 126 with execve's reason, not a bare parser message.
    @Test func unrunnableProgram() throws {
        let script = dir.appendingPathComponent("no-shebang")
        try "echo hi\n".write(to: script, atomically: true, encoding: .utf8)
        chmod(script.path, 0o755)
        let rec = try Harness.record([script.path], trace: dir.appendingPathComponent("no-shebang-trace"))
        #expect(rec.status == 126)
        #expect(rec.stderr.contains("\(script.path): cannot execute: not an ELF file (execve: exec format error)"))
        let truncated = dir.appendingPathComponent("truncated")
        let head = try Data(contentsOf: URL(fileURLWithPath: "/bin/true")).prefix(100)
        try head.write(to: truncated)
        chmod(truncated.path, 0o755)
        let cut = try Harness.record([truncated.path], trace: dir.appendingPathComponent("truncated-trace"))
        #expect(cut.status == 126)
        #expect(cut.stderr.contains("cannot execute: malformed ELF"))
    }

    func recordedHello() throws -> URL {
        let exe = try Harness.compile("#include <stdio.h>\nint main(void){ for (int i = 0; i < 3; i++) printf(\"line %d\\n\", i); return 0; }",
                                      name: "lines", in: dir)
        let trace = dir.appendingPathComponent("t-\(UUID().uuidString.prefix(6))")
        _ = try Harness.record([exe], trace: trace)
        return trace
    }

    @Test func corruptTracesGiveClearErrors() throws {
        let trace = try recordedHello()
        let events = trace.appendingPathComponent("events")
        var data = try Data(contentsOf: events)
        data[data.count / 2] ^= 0xff
        try data.write(to: events)
        let rep = try Harness.replay(trace)
        #expect(rep.status != 0 && rep.status < 128, "\(rep.stderr)")
        #expect(rep.stderr.contains("damaged") || rep.stderr.contains("corrupt"))

        let other = try recordedHello()
        let header = other.appendingPathComponent("header.json")
        let h = try Data(contentsOf: header)
        try h.prefix(h.count / 2).write(to: header)
        let r2 = try Harness.replay(other)
        #expect(r2.status != 0 && r2.status < 128)
        #expect(r2.stderr.hasPrefix("detrec:"))
        let d2 = try Harness.run([Harness.detrec, "dump", other.path])
        #expect(d2.status != 0 && d2.status < 128)
    }

    @Test func divergenceIsReportedWithTheEventNumber() throws {
        let a = try Harness.compile("#include <unistd.h>\nint main(void){ write(1, \"A\\n\", 2); return 0; }", name: "progA", in: dir)
        let b = try Harness.compile("#include <unistd.h>\nint main(void){ write(1, \"BB\\n\", 3); return 0; }", name: "progB", in: dir)
        let ta = dir.appendingPathComponent("ta"), tb = dir.appendingPathComponent("tb")
        _ = try Harness.record([a], trace: ta)
        _ = try Harness.record([b], trace: tb)
        // A's program against B's events.
        try FileManager.default.removeItem(at: ta.appendingPathComponent("events"))
        try FileManager.default.copyItem(at: tb.appendingPathComponent("events"), to: ta.appendingPathComponent("events"))
        let rep = try Harness.replay(ta)
        #expect(rep.status != 0 && rep.status < 128)
        #expect(rep.stderr.contains("diverged at event"), "\(rep.stderr)")
    }

    /// A program that prints a line, then waits on stdin forever.
    func waiter() throws -> String {
        try Harness.compile(#"""
            #include <stdio.h>
            #include <unistd.h>
            int main(void) { printf("ready\n"); fflush(stdout); char b[8]; read(0, b, sizeof b); printf("never\n"); return 0; }
            """#, name: "waiter", in: dir)
    }

    func interrupted(by signal: Int32) throws -> (Harness.Run, URL, Int32) {
        let exe = try waiter()
        let trace = dir.appendingPathComponent("int-\(signal)")
        // The recorder's stdin is a pipe this test keeps open: the program waits.
        var input: [Int32] = [0, 0]
        pipe(&input)
        defer { close(input[0]); close(input[1]) }
        let child = try spawn([Harness.detrec, "record", "-q", "-o", trace.path, "--", exe], stdin: .fd(input[0]),
                              in: Harness.scratch.path)
        // The program waits in read(2) once detrec sleeps in its host poll;
        // what it printed was logged when its write returned, before that.
        child.waitUntil { child.stdoutSoFar.contains("ready") && child.sleepsInHostPoll }
        child.signal(signal)
        let r = child.wait()
        return (Harness.Run(status: r.status, stdout: r.stdout, stderr: r.stderr), trace, r.status > 128 ? r.status - 128 : 0)
    }

    @Test func recorderKilledLeavesAReplayableTrace() throws {
        let (rec, trace, killedBy) = try interrupted(by: SIGKILL)
        #expect(killedBy == SIGKILL)
        #expect(rec.stdout == "ready\n")
        let rep = try Harness.replay(trace)
        #expect(rep.stdout == "ready\n")
        #expect(rep.status == 1)
        #expect(rep.stderr.contains("interrupted"), "\(rep.stderr)")
        let dump = try Harness.run([Harness.detrec, "dump", trace.path])
        #expect(dump.stdout.contains("write"))
    }

    @Test func ctrlCKillsTheProgramAndReplaysTheSame() throws {
        let (rec, trace, _) = try interrupted(by: SIGINT)
        #expect(rec.status == 130)   // detrec exits 128+2 for the program
        let rep = try Harness.replay(trace)
        #expect(rep.stdout == "ready\n")
        #expect(rep.status == 130)
    }
}
