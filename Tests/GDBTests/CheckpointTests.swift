import Foundation
import Glibc
import Testing

/// Programs with thousands of events, recorded once for the replay
/// checkpoint tests: one process, and one that forks a child which makes
/// syscalls while the parent does.
struct CheckpointFixture: @unchecked Sendable {
    let detrec: String
    let single: Program
    var forked: Program { get throws { try CheckpointFixture.forkedProgram.get() } }

    struct Program {
        let executable: String
        let trace: String
        let symbols: [String: UInt64]
    }

    static let events = 600

    static let singleSource = """
        #include <unistd.h>
        #include <sys/syscall.h>
        __attribute__((noinline)) void mark(long i) { __asm__ volatile("" :: "r"(i)); }
        __attribute__((noinline)) void after(long i) { __asm__ volatile("" :: "r"(i)); }
        int main(void) {
          for (long i = 0; i < EVENTS; i++) {
            syscall(SYS_getppid);
            if (i == 100 || i == EVENTS / 2 || i == EVENTS - 200 || i == EVENTS - 1) { mark(i); after(i); }
          }
          write(1, "ok\\n", 3);
          return 0;
        }
        """

    static let forkedSource = """
        #include <unistd.h>
        #include <sys/syscall.h>
        #include <sys/wait.h>
        __attribute__((noinline)) void mark(long i) { __asm__ volatile("" :: "r"(i)); }
        int main(void) {
          int p[2];
          if (pipe(p) != 0) return 2;
          pid_t c = fork();
          if (c == 0) {
            // Alive (blocked) through the parent's loop, then busy.
            char b;
            if (read(p[0], &b, 1) != 1) _exit(3);
            for (long i = 0; i < EVENTS; i++) syscall(SYS_getpid);
            _exit(7);
          }
          for (long i = 0; i < EVENTS; i++) {
            syscall(SYS_getppid);
            if (i == 50 || i == EVENTS - 1) mark(i);
          }
          if (write(p[1], "x", 1) != 1) return 4;
          int status = 0;
          waitpid(c, &status, 0);
          write(1, "ok\\n", 3);
          return WEXITSTATUS(status) == 7 ? 0 : 1;
        }
        """

    static let shared: Result<CheckpointFixture, Fixture.FixtureError> = Result { try CheckpointFixture() }
        .mapError { Fixture.FixtureError("\($0)") }

    /// The forked program, built when a test first wants it.
    static let forkedProgram: Result<Program, Fixture.FixtureError> = Result { try build("checkpoints-fork", forkedSource) }
        .mapError { Fixture.FixtureError("\($0)") }

    private init() throws {
        detrec = try Fixture.shared.get().detrec
        single = try CheckpointFixture.build("checkpoints", CheckpointFixture.singleSource)
    }

    private static func build(_ name: String, _ source: String) throws -> Program {
            let base = try Fixture.shared.get()
            let c = base.directory + "/\(name).c"
            try source.replacingOccurrences(of: "EVENTS", with: "\(CheckpointFixture.events)").write(toFile: c, atomically: true, encoding: .utf8)
            let exe = base.directory + "/\(name)"
            let trace = base.directory + "/\(name)-trace"
            let cc = try run("/usr/bin/env", ["gcc", "-static", "-O1", "-g", "-o", exe, c])
            guard cc.status == 0 else { throw Fixture.FixtureError("gcc failed: \(cc.output)") }
            let rec = try run(base.detrec, ["record", "-q", "-o", trace, "--", exe])
            guard rec.status == 0, rec.output.contains("ok") else { throw Fixture.FixtureError("recording failed: \(rec.output)") }
            var symbols: [String: UInt64] = [:]
            for line in try run("/usr/bin/env", ["nm", exe]).output.split(separator: "\n") {
                let f = line.split(separator: " ")
                if f.count == 3, let a = UInt64(f[0], radix: 16) { symbols[String(f[2])] = a }
            }
            return Program(executable: exe, trace: trace, symbols: symbols)
    }
}

/// One raw-protocol session against a stub, with or without replay
/// checkpoints (a checkpoint every 50 events, so that a short recording
/// has many).
final class CheckpointSession {
    let stub: StubProcess
    let client: RawClient
    let trace: String

    init(_ fixture: CheckpointFixture, _ program: CheckpointFixture.Program, checkpoints: Bool) throws {
        trace = program.trace
        stub = try StubProcess(detrec: fixture.detrec, trace: program.trace, environment:
            checkpoints ? ["DETREC_CHECKPOINT_INTERVAL": "50"] : ["DETREC_REPLAY_CHECKPOINTS": "off"])
        client = try RawClient(port: stub.port)
        _ = client.ask("qSupported:swbreak+")
    }

    func monitor(_ command: String) -> String {
        String(decoding: hexBytes(client.ask("qRcmd," + Array(command.utf8).map { String(format: "%02x", $0) }.joined()) ?? ""), as: UTF8.self)
    }

    /// Where the replay stands: the position, RIP and the first argument register.
    func here() -> String {
        "\(monitor("position").trimmingCharacters(in: .whitespacesAndNewlines)) rip=\(hex(rip(client) ?? 0)) rdi=\(client.ask("p5") ?? "")"
    }

    /// How many replay checkpoints going back restored (`monitor stats`).
    func restores() -> Int? {
        let s = monitor("stats")
        guard let r = s.range(of: "replay checkpoints restored: ") else { return nil }
        return Int(s[r.upperBound...].prefix { $0.isNumber })
    }

    /// Ends the session; the stub's exit status.
    func end() -> Int32? {
        client.send("k")
        return stub.wait(seconds: 60)
    }

    /// Processes (not zombies) whose command line names this trace: the
    /// stub and its checkpoints.
    func processes() -> Int {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.filter { $0.allSatisfy(\.isNumber) }.filter { pid in
            guard let cmd = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline"), !cmd.isEmpty,
                  let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")"), stat[stat.index(close, offsetBy: 2)] != "Z" else { return false }
            return String(decoding: cmd.map { $0 == 0 ? 32 : $0 }, as: UTF8.self).contains(trace)
        }.count
    }
}

@Suite(.serialized) struct ReplayCheckpointTests {
    func fixture() throws -> CheckpointFixture { try CheckpointFixture.shared.get() }

    /// Continues to the last mark, then reverse-continues three times and
    /// reverse-steps over a syscall; the positions reached.
    /// With `late`, the breakpoint going back stops at is that one, inserted
    /// only at the last mark (the forward run never had it: the
    /// checkpoints are asked, not gdb's own history).
    func goBack(_ s: CheckpointSession, mark: UInt64, marks: Int, late: UInt64? = nil) -> [String] {
        #expect(s.client.ask("Z0,\(hex(mark)),1") == "OK")
        for _ in 0..<marks { #expect(s.client.ask("c")?.contains("swbreak") == true) }
        var seen = [s.here()]
        if let late {
            #expect(s.client.ask("z0,\(hex(mark)),1") == "OK")
            #expect(s.client.ask("Z0,\(hex(late)),1") == "OK")
            for _ in 0..<(marks - 1) {
                #expect(s.client.ask("bc")?.contains("swbreak") == true)
                seen.append(s.here())
            }
            #expect(s.client.ask("z0,\(hex(late)),1") == "OK")
            return seen
        }
        for _ in 0..<(marks - 1) {
            #expect(s.client.ask("bc")?.contains("swbreak") == true)
            seen.append(s.here())
        }
        // Past the next syscall, then one instruction back over it.
        #expect(s.client.ask("z0,\(hex(mark)),1") == "OK")
        while true {
            let at = rip(s.client) ?? 0
            let code = hexBytes(s.client.ask("m\(hex(at)),2") ?? "")
            _ = s.client.ask("s")
            if code == [0x0f, 0x05] { break }
        }
        seen.append(s.here())
        _ = s.client.ask("bs")
        seen.append(s.here())
        return seen
    }

    @Test func reverseContinueAcrossEventsLandsWhereAReplayFromTheStartDoes() throws {
        let f = try fixture()
        let mark = try #require(f.single.symbols["mark"])
        let with = try CheckpointSession(f, f.single, checkpoints: true)
        let withPositions = goBack(with, mark: mark, marks: 4)
        let restored = with.restores() ?? 0
        #expect(with.processes() > 1)
        #expect(with.end() == 0)
        #expect(with.processes() == 0)

        let without = try CheckpointSession(f, f.single, checkpoints: false)
        let withoutPositions = goBack(without, mark: mark, marks: 4)
        #expect(without.restores() == 0)
        #expect(without.end() == 0)

        #expect(withPositions == withoutPositions)
        #expect(restored >= 4)
        // The marks are at i = 100, 300, 400, 599 (rdi), in that order backwards.
        #expect(withPositions.count == 6)
        #expect(withPositions[0].contains("rdi=5702000000000000"))
        #expect(withPositions[3].contains("rdi=6400000000000000"))
    }

    @Test func reverseContinueToABreakpointTheForwardRunNeverHad() throws {
        let f = try fixture()
        let mark = try #require(f.single.symbols["mark"]), after = try #require(f.single.symbols["after"])
        let with = try CheckpointSession(f, f.single, checkpoints: true)
        let withPositions = goBack(with, mark: mark, marks: 4, late: after)
        let restored = with.restores() ?? 0
        #expect(with.end() == 0)
        #expect(with.processes() == 0)
        let without = try CheckpointSession(f, f.single, checkpoints: false)
        let withoutPositions = goBack(without, mark: mark, marks: 4, late: after)
        #expect(without.end() == 0)
        #expect(withPositions == withoutPositions)
        #expect(restored >= 3)
        // after(400), after(300), after(100).
        #expect(withPositions.count == 4)
        #expect(withPositions.allSatisfy { $0.contains("rip=\(hex(after))") } == false)
        #expect(withPositions.dropFirst().allSatisfy { $0.contains("rip=\(hex(after))") })
        #expect(withPositions[3].contains("rdi=6400000000000000"))
    }

    @Test func restartGoesBackToANumberedCheckpoint() throws {
        let f = try fixture()
        let mark = try #require(f.single.symbols["mark"])
        let s = try CheckpointSession(f, f.single, checkpoints: true)
        #expect(s.client.ask("Z0,\(hex(mark)),1") == "OK")
        #expect(s.client.ask("c")?.contains("swbreak") == true)
        #expect(s.client.ask("c")?.contains("swbreak") == true)
        let atSecond = s.here()
        let taken = s.monitor("checkpoint")
        let number = try #require(taken.split(separator: " ").dropFirst().first.flatMap { Int($0) }, "\(taken)")
        #expect(s.monitor("checkpoints").contains("\(number): event"))
        #expect(s.client.ask("c")?.contains("swbreak") == true)
        #expect(s.client.ask("c")?.contains("swbreak") == true)
        #expect(s.here() != atSecond)
        #expect(s.monitor("restart \(number)").contains("Restarted at checkpoint \(number)"))
        #expect(s.here() == atSecond)
        // And forward again from there, as recorded.
        #expect(s.client.ask("c")?.contains("swbreak") == true)
        #expect(s.here().contains("rdi=9001000000000000"))
        #expect(s.monitor("delete-checkpoint \(number)").contains("Deleted checkpoint \(number)"))
        #expect(!s.monitor("restart \(number)").contains("Restarted"))
        #expect(s.client.ask("z0,\(hex(mark)),1") == "OK")
        #expect(s.client.ask("c")?.hasPrefix("W00") == true)
        #expect(s.end() == 0)
        #expect(s.processes() == 0)
    }

    @Test func aForkedChildIsRestoredWithItsParent() throws {
        let f = try fixture()
        let forked = try f.forked
        let mark = try #require(forked.symbols["mark"])
        func session(_ checkpoints: Bool) throws -> [String] {
            let s = try CheckpointSession(f, forked, checkpoints: checkpoints)
            var seen = goBack(s, mark: mark, marks: 2)
            if checkpoints { #expect((s.restores() ?? 0) >= 1) }
            // The rest of the replay, both processes, as recorded.
            seen.append(s.client.ask("c") ?? "")
            #expect(s.end() == 0)
            #expect(s.processes() == 0)
            return seen
        }
        let with = try session(true)
        let without = try session(false)
        #expect(with == without)
        #expect(with.last?.hasPrefix("W00") == true)
    }
}
