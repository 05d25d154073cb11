import Foundation
import Glibc
import Testing

/// A program whose functions gdb calls (`print add(2,3)`, `call puts`),
/// whose global gdb sets, recorded once for the diversion tests.
struct DiversionFixture: @unchecked Sendable {
    let executable: String
    let trace: String
    let detrec: String

    static let source = """
        #include <stdio.h>
        #include <string.h>
        #include <unistd.h>
        int x = 1;
        char buf[32] = "hello, world";
        __attribute__((noinline)) int add(int a, int b) { return a + b; }
        __attribute__((noinline)) int bump(void) { x += 100; return x; }
        __attribute__((noinline)) int crash(int *p) { return *p + 1; }
        __attribute__((noinline)) void report(int v) {
          char line[32];
          int n = snprintf(line, sizeof line, "x=%d\\n", v);
          write(1, line, n);
        }
        int main(void) {
          setvbuf(stdout, 0, _IOLBF, 0);
          printf("start\\n");
          report(x);
          x = x * 2;
          report(x);
          return 0;
        }
        """

    static let shared: Result<DiversionFixture, Fixture.FixtureError> = Result { try DiversionFixture() }
        .mapError { Fixture.FixtureError("\($0)") }

    private init() throws {
        let base = try Fixture.shared.get()
        detrec = base.detrec
        let c = base.directory + "/diversion.c"
        try DiversionFixture.source.write(toFile: c, atomically: true, encoding: .utf8)
        executable = base.directory + "/diversion"
        trace = base.directory + "/diversion-trace"
        let cc = try run("/usr/bin/env", ["gcc", "-static", "-O0", "-g", "-o", executable, c])
        guard cc.status == 0 else { throw Fixture.FixtureError("gcc failed: \(cc.output)") }
        let rec = try run(detrec, ["record", "-q", "-o", trace, "--", executable])
        guard rec.status == 0, rec.output.contains("x=2") else { throw Fixture.FixtureError("recording failed: \(rec.output)") }
    }

    /// gdb's arguments for these commands: one `-ex` each, so that an
    /// error (the call that faults) does not end the session.
    static func arguments(_ commands: [String]) -> [String] {
        (["set pagination off", "set confirm off", "set remotetimeout 120"] + commands).flatMap { ["-ex", $0] }
    }

    /// gdb in batch mode against a fresh stub: gdb's output, the stub's
    /// stdout (where the replay and the diversion's writes go) and stderr.
    func replay(_ commands: [String]) throws -> (gdb: String, stdout: String, stderr: String) {
        let out = NSTemporaryDirectory() + "detrec-diversion-out-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        FileManager.default.createFile(atPath: out, contents: nil)
        defer { unlink(out) }
        let stub = Process()
        stub.executableURL = URL(fileURLWithPath: detrec)
        stub.arguments = ["replay", "--gdb-listen", "127.0.0.1:0", trace]
        let err = Pipe()
        stub.standardError = err
        stub.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: out))
        try stub.run()
        var text = ""
        while !text.contains("\n") {
            let d = err.fileHandleForReading.availableData
            if d.isEmpty { break }
            text += String(decoding: d, as: UTF8.self)
        }
        guard let r = text.range(of: "127.0.0.1:"), let port = UInt16(text[r.upperBound...].prefix { $0.isNumber }) else {
            stub.terminate()
            throw Fixture.FixtureError("the stub did not say where it listens: \(text)")
        }
        let g = try run("/usr/bin/env", ["gdb", "-nx", "-batch", "-ex", "target remote 127.0.0.1:\(port)"] + DiversionFixture.arguments(commands) + [executable]).output
        let deadline = Date().addingTimeInterval(30)
        while stub.isRunning && Date() < deadline { usleep(20_000) }
        if stub.isRunning { stub.terminate() }
        let rest = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        return (g, (try? String(contentsOfFile: out, encoding: .utf8)) ?? "", text + rest)
    }
}

@Suite(.serialized) struct DiversionTests {
    func fixture() throws -> DiversionFixture { try DiversionFixture.shared.get() }

    @Test func functionCallsPrintWhatANativeSessionPrints() throws {
        let f = try fixture()
        // strlen and puts are libc's, without debug information: gdb wants their types.
        let calls = ["print add(2,3)", "print (int)strlen(buf)", "call (int)puts(\"from-gdb\")", "print add(x, 40)", "print x"]
        let replay = try f.replay(["break report", "continue"] + calls + ["continue", "print v", "continue"])
        // What gdb prints for the same commands on the program run natively
        // (`break report`, `run`, then these; gdb under the test runner's
        // own process cannot start a native inferior, so checked by hand).
        #expect(ReverseExecutionTests.values(replay.gdb) == ["5", "12", "9", "41", "1", "2"], "\(replay.gdb)\n\(replay.stderr)")
        // puts wrote through the diversion to detrec's stdout, before the
        // replay's own write of report's line; the replay then went on as recorded.
        #expect(replay.stdout == "start\nfrom-gdb\nx=1\nx=2\n", "\(replay.stdout)\n\(replay.stderr)")
        #expect(replay.gdb.contains("exited normally"), "\(replay.gdb)")
    }

    @Test func setVarIsDiscardedWhenTheReplayContinues() throws {
        let f = try fixture()
        let commands = ["break report", "continue", "up", "set var x = 5", "print x", "continue", "print v", "print x"]
        let replay = try f.replay(commands)
        // The recording doubled 1: the value set from gdb is gone, with a
        // message saying so (natively the program would double the 5: 10).
        #expect(ReverseExecutionTests.values(replay.gdb) == ["5", "2", "2"], "\(replay.gdb)\n\(replay.stderr)")
        #expect(replay.gdb.contains("(memory at 0x"), "\(replay.gdb)")
        #expect(replay.gdb.contains("are discarded; the replay continues as recorded"), "\(replay.gdb)")
    }

    @Test func aCalledFunctionsWritesAreDiscardedToo() throws {
        let f = try fixture()
        let replay = try f.replay(["break report", "continue", "print bump()", "print x", "continue", "print v",
                                   "set var $rax = 77", "print $rax", "stepi", "print $rax == 77"])
        #expect(Array(ReverseExecutionTests.values(replay.gdb).prefix(3)) == ["101", "101", "2"], "\(replay.gdb)\n\(replay.stderr)")
        #expect(replay.gdb.contains("(memory ("), "\(replay.gdb)")
        // A register set from gdb is discarded at the next step as well.
        #expect(replay.gdb.contains("(registers) are discarded"), "\(replay.gdb)")
        #expect(ReverseExecutionTests.values(replay.gdb).last == "0", "\(replay.gdb)")
    }

    @Test func aFaultInACalledFunctionStopsIt() throws {
        let f = try fixture()
        let replay = try f.replay(["break report", "continue", "print crash(0)", "print add(1,1)", "continue", "print v", "continue"])
        #expect(replay.gdb.contains("The program being debugged was signaled while in a function called from GDB."), "\(replay.gdb)")
        #expect(replay.gdb.contains("SIGSEGV"), "\(replay.gdb)")
        // The replay goes on as recorded from the state before the call.
        #expect(replay.gdb.contains("stopped with a signal"), "\(replay.gdb)")
        #expect(ReverseExecutionTests.values(replay.gdb).last == "2", "\(replay.gdb)\n\(replay.stderr)")
        #expect(replay.gdb.contains("exited normally"), "\(replay.gdb)")
    }

    @Test func rawWritesReadBackAndAreDiscardedWithAMessage() throws {
        let f = try Fixture.shared.get()
        let counter = try #require(f.symbols["counter"])
        let stub = try StubProcess(f)
        do {
            let c = try RawClient(port: stub.port)
            #expect(c.ask("QStartNoAckMode") == "OK")
            #expect(c.ask("X\(hex(counter)),0:") == "OK")          // gdb's probe: no write
            #expect(c.ask("M\(hex(counter)),4:2a000000") == "OK")
            #expect(c.ask("m\(hex(counter)),4") == "2a000000")
            #expect(c.ask("P0=0700000000000000") == "OK")
            #expect(c.ask("p0") == "0700000000000000")
            #expect(c.ask("P99=00") == "E01")                        // no such register
            #expect(c.ask("P12=3400000000000000") == "E01")          // cs is 0x33 here
            // The next resume is the recording's: a console message, then
            // the stop, with the recorded state back (the replay runs on).
            c.send("s")
            let message = try #require(c.packet())
            #expect(message.hasPrefix("O"), "\(message)")
            let text = String(decoding: hexBytes(String(message.dropFirst())), as: UTF8.self)
            #expect(text.contains("registers; memory at 0x\(hex(counter))") && text.contains("discarded"), "\(text)")
            #expect((c.packet() ?? "").hasPrefix("T05"))
            #expect(c.ask("m\(hex(counter)),4") == "00000000")
            #expect(c.ask("c") == "W00")
            c.send("k")
        }
        #expect(stub.wait() == 0)
    }
}
