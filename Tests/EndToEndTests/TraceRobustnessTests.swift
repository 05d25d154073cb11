import Foundation
import Glibc
import Testing
@testable import Trace

/// Traces that do not match their program, damaged traces, interrupted
/// recordings and bad command lines: detrec says what is wrong, exits
/// non-zero (and below 128: it never crashes), and replays what it can.
@Suite struct TraceRobustnessTests {
    static let programA = #"""
    #include <stdio.h>
    #include <string.h>
    #include <unistd.h>
    int main(int argc, char **argv) {
        printf("program A\n");
        fflush(stdout);
        for (int i = 1; i < argc; i++) write(1, argv[i], strlen(argv[i]));
        write(1, "\n", 1);
        return 0;
    }
    """#

    static let programB = #"""
    #include <stdio.h>
    #include <stdlib.h>
    int main(void) {
        char *p = malloc(100000);
        printf("program B, something else entirely %p\n", (void *)p);
        return 2;
    }
    """#

    func expectCleanFailure(_ r: RunResult, mentioning words: [String], _ comment: String = "",
                            sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(!r.timedOut, "hung: \(comment)", sourceLocation: sourceLocation)
        #expect(r.status != 0, "succeeded: \(comment) \(r)", sourceLocation: sourceLocation)
        #expect(r.status < 128, "crashed (status \(r.status)): \(comment) \(r.stderr.prefix(600))", sourceLocation: sourceLocation)
        #expect(!r.stderr.contains("runtime failure") && !r.stderr.contains("Fatal error"), "crashed: \(comment) \(r.stderr.prefix(600))", sourceLocation: sourceLocation)
        let lower = r.stderr.lowercased()
        #expect(words.contains { lower.contains($0.lowercased()) }, "stderr mentions none of \(words): \(comment) \(r.stderr.prefix(600))", sourceLocation: sourceLocation)
    }

    // MARK: - Divergence

    @Test func replayingAnotherProgramsEventsDiverges() throws {
        let s = Scratch(); defer { s.remove() }
        let a = try recordAndReplay(try compile(Self.programA), ["x"], replays: 1, traceName: "a", in: s)
        let b = try recordAndReplay(try compile(Self.programB), replays: 1, traceName: "b", in: s)
        #expect(a.record.status == 0 && b.record.status == 2)
        try FileManager.default.removeItem(atPath: a.trace + "/events")
        try FileManager.default.copyItem(atPath: b.trace + "/events", toPath: a.trace + "/events")
        let r = try detrec(["replay", a.trace], in: s.path)
        expectCleanFailure(r, mentioning: ["diverged"], "A's program with B's events")
        #expect(r.stderr.range(of: #"event \d+"#, options: .regularExpression) != nil, "no event number: \(r.stderr)")
        #expect(r.stderr.contains("rip 0x"), "no RIP: \(r.stderr)")
    }

    @Test func replayingWithAnotherExecutableDiverges() throws {
        let s = Scratch(); defer { s.remove() }
        let a = try recordAndReplay(try compile(Self.programA), ["x"], replays: 1, traceName: "a", in: s)
        let programB = try compile(Self.programB)
        // Store B in A's trace and point the header at it.
        let bBytes = readBytes(programB)
        let sha = try sha256Hex(programB)
        try writeBytes(a.trace + "/files/" + sha, bBytes)
        try editHeader(a.trace) { h in
            var exe = h["executable"] as? [String: Any] ?? [:]
            exe["sha256"] = sha
            exe["size"] = bBytes.count
            h["executable"] = exe
        }
        let r = try detrec(["replay", a.trace], in: s.path)
        expectCleanFailure(r, mentioning: ["diverged"], "A's events with B's executable")
    }

    @Test func replayingWithOtherArgumentsDiverges() throws {
        let s = Scratch(); defer { s.remove() }
        let a = try recordAndReplay(try compile(Self.programA), ["recorded-argument"], replays: 1, in: s)
        try editHeader(a.trace) { h in
            var argv = h["argv"] as? [String] ?? []
            // The same length, so that the stack layout is unchanged up to the write.
            argv[argv.count - 1] = "RECORDED-ARGUMENT"
            h["argv"] = argv
        }
        let r = try detrec(["replay", a.trace], in: s.path)
        expectCleanFailure(r, mentioning: ["diverged"], "argv changed in header.json")
        #expect(r.stderr.contains("write"), "the divergence is at the write of argv[1]: \(r.stderr)")
        #expect(r.stdout == "program A\n", "replay printed past the divergence: \(r.stdout)")
    }

    /// An edited header.json (argv here; the environment, the CPU, the ids
    /// in `extra` alike) no longer matches its checksum: replay and dump
    /// refuse it before running anything.
    @Test func editedHeaderIsRefused() throws {
        let s = Scratch(); defer { s.remove() }
        let exe = try compile(Self.programA)
        let a = try recordAndReplay(exe, ["recorded-argument"], replays: 1, in: s)
        try editHeader(a.trace, reseal: false) { h in
            var argv = h["argv"] as? [String] ?? []
            argv[argv.count - 1] = "RECORDED-ARGUMENT"
            h["argv"] = argv
        }
        let r = try detrec(["replay", a.trace], in: s.path)
        expectCleanFailure(r, mentioning: ["checksum"], "argv changed in header.json")
        #expect(r.stderr.contains("header.json"), "the error names the file: \(r.stderr)")
        #expect(r.stdout.isEmpty, "replay ran the edited header: \(r.stdout)")
        let dump = try detrec(["dump", a.trace], in: s.path)
        expectCleanFailure(dump, mentioning: ["checksum"], "dump of an edited header")
        for edit in [{ (h: inout [String: Any]) in h["cwd"] = "/elsewhere" },
                     { (h: inout [String: Any]) in h["xcr0"] = ((h["xcr0"] as? Int) ?? 0) ^ 4 },
                     { (h: inout [String: Any]) in h["extra"] = ["uid": "0"] },
                     { (h: inout [String: Any]) in h["headerChecksum"] = nil }] {
            let fresh = try recordAndReplay(exe, ["x"], replays: 0, traceName: "t\(UUID().uuidString.prefix(6))", in: s)
            try editHeader(fresh.trace, reseal: false, edit)
            let r = try detrec(["replay", fresh.trace], in: s.path)
            expectCleanFailure(r, mentioning: ["checksum", "header"], "edited header field")
            #expect(r.stdout.isEmpty)
        }
    }

    @Test func tamperedSyscallResultDiverges() throws {
        // The same program recorded with another argument: its events do not
        // fit this trace's header (argv), and replay notices.
        let s = Scratch(); defer { s.remove() }
        let program = try compile(Self.programA)
        let one = try recordAndReplay(program, ["aaaa"], replays: 1, traceName: "one", in: s)
        let two = try recordAndReplay(program, ["bbbbbbbb"], replays: 1, traceName: "two", in: s)
        try FileManager.default.removeItem(atPath: one.trace + "/events")
        try FileManager.default.copyItem(atPath: two.trace + "/events", toPath: one.trace + "/events")
        let r = try detrec(["replay", one.trace], in: s.path)
        expectCleanFailure(r, mentioning: ["diverged"], "events of a run with another argument")
    }

    // MARK: - Damaged traces

    func recordedTrace(_ s: Scratch) throws -> Recording {
        try recordAndReplay(try compile(StaticProgramTests.nondeterminism), replays: 1, in: s)
    }

    @Test func flippedByteInEventsIsReportedAsDamage() throws {
        let s = Scratch(); defer { s.remove() }
        let r = try recordedTrace(s)
        let events = readBytes(r.trace + "/events")
        #expect(events.count > 100)
        // The middle of the file and the first block's header. (A flip in
        // the end marker is only seen by a reader that gets that far.)
        for offset in [events.count / 2, 20] {
            var damaged = events
            damaged[offset] ^= 0x5a
            try writeBytes(r.trace + "/events", damaged)
            let replay = try detrec(["replay", r.trace], in: s.path)
            expectCleanFailure(replay, mentioning: ["corrupt", "damaged", "checksum"], "replay, byte \(offset) of \(events.count) flipped")
            let dump = try detrec(["dump", r.trace], in: s.path)
            expectCleanFailure(dump, mentioning: ["corrupt", "damaged", "checksum"], "dump, byte \(offset) flipped")
        }
        // The end marker damaged, or bytes after it: replay reads to the end
        // marker too, so it says so as dump does.
        var endMarker = events
        endMarker[events.count - 3] ^= 0x5a
        for (what, bytes) in [("end marker damaged", endMarker), ("trailing bytes", events + [0, 1, 2, 3, 4])] {
            try writeBytes(r.trace + "/events", bytes)
            let dump = try detrec(["dump", r.trace], in: s.path)
            expectCleanFailure(dump, mentioning: ["corrupt", "damaged", "checksum"], "dump, \(what)")
            let replay = try detrec(["replay", r.trace], in: s.path)
            expectCleanFailure(replay, mentioning: ["corrupt", "damaged"], "replay, \(what)")
        }
    }

    /// Events no recording produces, in blocks whose checksums are right:
    /// a fatal signal 0 after the exit, an event after the end, a syscall
    /// of a thread that does not exist.
    @Test func forgedEventsAreRefused() throws {
        let s = Scratch(); defer { s.remove() }
        let r = try recordAndReplay(try compile(Self.programA), ["x"], replays: 1, in: s)
        let reader = try TraceReader(directory: r.trace)
        let events = try reader.readAll()
        let tid = events[0].tid
        func rewrite(_ events: [Event], extra: [UInt8] = [], extraCount: Int = 0) throws {
            var payload: [UInt8] = []
            for e in events { try EventEncoding.encode(e, into: &payload) }
            payload += extra
            let count = events.count + extraCount
            let block = try payload.withUnsafeBytes { try BlockFraming.eventsBlock(payload: $0, firstEvent: 0, eventCount: count) }
            try writeBytes(r.trace + "/events", block + BlockFraming.endBlock(eventCount: UInt64(count)))
        }
        func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
        let signalZero: [UInt8] = [4] + le(tid) + le(Int32(0)) + le(Int32(0x4000)) + le(UInt64(0)) + le(UInt64(0))
        // Before the exit (where a death from outside would be) and after it.
        for at in [events.count - 1, events.count] {
            let head: [Event] = Array(events[..<at])
            let tail: [Event] = Array(events[at...])
            var payloadTail: [UInt8] = signalZero
            for e in tail { try EventEncoding.encode(e, into: &payloadTail) }
            try rewrite(head, extra: payloadTail, extraCount: 1 + tail.count)
            let replay = try detrec(["replay", r.trace], in: s.path)
            expectCleanFailure(replay, mentioning: ["damaged", "corrupt"], "fatal signal 0 inserted at \(at)")
            #expect(replay.stderr.contains("fatal signal 0"), "\(replay.stderr)")
            #expect(replay.stdout.isEmpty, "the damaged block is refused before it runs")
        }
        // A valid event after the program's end.
        try rewrite(events + [.signal(tid: tid, signal: 10, code: 0x80)])
        let after = try detrec(["replay", r.trace], in: s.path)
        expectCleanFailure(after, mentioning: ["goes on"], "an event after the exit")
        #expect(after.stdout == r.record.stdout, "the replay itself ran as recorded")
        // A recorded write moved into the program's read-only text (a static
        // program's, at 0x401000) or into detrec's own pages: replay applies
        // writes with the program's rights, so neither lands.
        let writer = try #require(events.firstIndex {
            if case .syscall(let r) = $0, case .bytes? = r.writes.first { return true }
            return false
        })
        for target: UInt64 in [0x40_1000, 0x7fff_ffff_5000] {
            var moved = events
            guard case .syscall(var record) = moved[writer], case .bytes(_, let data)? = record.writes.first else { continue }
            record.writes[0] = .bytes(address: target, data: data)
            moved[writer] = .syscall(record)
            try rewrite(moved)
            let replay = try detrec(["replay", r.trace], in: s.path)
            expectCleanFailure(replay, mentioning: ["diverged"], "a write moved to 0x\(String(target, radix: 16))")
            #expect(replay.stderr.contains("0x" + String(target, radix: 16)), "\(replay.stderr)")
        }
        // The exit in another thread's name.
        var otherThread = events
        otherThread[otherThread.count - 1] = .exit(tid: tid + 1, status: 0)
        try rewrite(otherThread)
        let other = try detrec(["replay", r.trace], in: s.path)
        expectCleanFailure(other, mentioning: ["diverged"], "exit of another thread")
    }

    /// An execve event without the path of the file the exec opened (a
    /// trace recorded before events carried it, docs/trace-format.md)
    /// replays; a recording carries it now, after the random bytes.
    @Test func execEventWithoutTheOpenedPathReplays() throws {
        let s = Scratch(); defer { s.remove() }
        let program = try compile(#"""
            #include <stdio.h>
            #include <string.h>
            #include <unistd.h>
            int main(int argc, char **argv) {
              char buf[4096]; ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
              buf[n < 0 ? 0 : n] = 0;
              const char *base = strrchr(buf, '/');
              printf("%s: %s\n", argc > 1 ? "after exec" : "first", base ? base + 1 : "none");
              fflush(stdout);
              if (argc == 1) { execl("/proc/self/exe", argv[0], "again", (char *)0); return 1; }
              return 0;
            }
            """#)
        let r = try recordAndReplay(program, replays: 1, in: s)
        #expect(r.record.status == 0 && r.record.stdout.hasPrefix("first: ") && r.record.stdout.contains("after exec: "))
        var events = try TraceReader(directory: r.trace).readAll()
        var removed = 0
        for (i, e) in events.enumerated() {
            guard case .syscall(var record) = e, record.number == 59 else { continue }
            var kernelWrites = 0
            record.writes.removeAll { w in
                guard case .bytes(0, _) = w else { return false }
                kernelWrites += 1
                return kernelWrites == 2
            }
            removed += kernelWrites >= 2 ? 1 : 0
            events[i] = .syscall(record)
        }
        #expect(removed == 1, "the recorded execve carries the opened file's path")
        var payload: [UInt8] = []
        for e in events { try EventEncoding.encode(e, into: &payload) }
        let block = try payload.withUnsafeBytes { try BlockFraming.eventsBlock(payload: $0, firstEvent: 0, eventCount: events.count) }
        try writeBytes(r.trace + "/events", block + BlockFraming.endBlock(eventCount: UInt64(events.count)))
        let replay = try detrec(["replay", r.trace], in: s.path)
        #expect(replay.status == 0, "\(replay.stderr.prefix(600))")
        #expect(replay.stdout == r.record.stdout)
    }

    /// Replay applies a file mapping's recorded contents only at the mapping
    /// its mmap made: lengths that are not whole pages, offsets, a read-only
    /// mapping and one placed with MAP_FIXED all replay.
    @Test func fileMappingsOfAnyLengthReplay() throws {
        let s = Scratch(); defer { s.remove() }
        let program = try compile(#"""
            #include <fcntl.h>
            #include <stdio.h>
            #include <string.h>
            #include <sys/mman.h>
            #include <unistd.h>
            int main(void) {
                char path[] = "/tmp/detrec-map-XXXXXX";
                int fd = mkstemp(path);
                char buf[10000];
                for (int i = 0; i < (int)sizeof buf; i++) buf[i] = 'a' + i % 26;
                write(fd, buf, sizeof buf);
                unlink(path);
                const char *a = mmap(0, 100, PROT_READ, MAP_PRIVATE, fd, 0);
                const char *b = mmap(0, 5000, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 4096);
                char *fixed = mmap(0, 3 * 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                const char *c = mmap(fixed + 4096, 7, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, 8192);
                printf("%.5s %.5s %.5s %d\n", a + 95, b + 4995, c, c == fixed + 4096);
                return 0;
            }
            """#)
        let r = try recordAndReplay(program, replays: 2, in: s)
        #expect(r.record.status == 0, "\(r.record)")
        #expect(r.record.stdout == "rstuv rstuv cdefg 1\n", "\(r.record.stdout)")
    }

    /// Seeded mutations of a real trace, replayed: a clean error (what was
    /// printed before it is what the recording printed), a replay
    /// identical to the recording, or, for a cut trace, the recording's
    /// output up to the cut and a word about it. Never a crash, a hang, or
    /// output the recording did not have.
    @Test func mutatedTracesNeverReplayDifferently() throws {
        let s = Scratch(); defer { s.remove() }
        let r = try recordAndReplay(try compile(Self.programA), ["one", "two"], replays: 0, in: s)
        let events = readBytes(r.trace + "/events")
        let header = readBytes(r.trace + "/header.json")
        var state: UInt64 = 0x7ace   // a fixed seed: every run mutates alike
        func next(_ n: Int) -> Int {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Int((state >> 33) % UInt64(max(n, 1)))
        }
        for round in 0..<24 {
            var ev = events, hd = header
            switch round % 6 {
            case 0: ev[next(ev.count)] ^= UInt8(1 << next(8))
            case 1: for _ in 0...next(4) { ev[next(ev.count)] = UInt8(next(256)) }
            case 2: ev.removeLast(1 + next(ev.count - 1))
            case 3: ev += (0...next(40)).map { _ in UInt8(next(256)) }
            case 4: hd[next(hd.count)] ^= UInt8(1 + next(255))
            default: ev.replaceSubrange(BlockHeader.size..<(BlockHeader.size + 4), with: [0xff, 0xff, 0xff, 0xff])
            }
            try writeBytes(r.trace + "/events", ev)
            try writeBytes(r.trace + "/header.json", hd)
            let replay = try detrec(["replay", r.trace], in: s.path)
            let what = "round \(round) (kind \(round % 6))"
            #expect(!replay.timedOut, "hung: \(what)")
            #expect(replay.status < 128 && !replay.stderr.contains("Fatal error"), "crashed: \(what) \(replay)")
            #expect(r.record.stdout.hasPrefix(replay.stdout), "printed what the recording did not: \(what) \(replay)")
            if replay.status == r.record.status && replay.stderr.isEmpty {
                #expect(replay.stdout == r.record.stdout, "a silent replay with other output: \(what) \(replay)")
            } else {
                #expect(replay.status != 0, "\(what) \(replay)")
                #expect(!replay.stderr.isEmpty, "failed without a word: \(what)")
            }
        }
    }

    @Test func truncatedOrInvalidHeaderIsReported() throws {
        let s = Scratch(); defer { s.remove() }
        let r = try recordedTrace(s)
        let header = readBytes(r.trace + "/header.json")
        let cases: [(String, [UInt8])] = [
            ("truncated", Array(header.prefix(header.count / 2))),
            ("empty", []),
            ("not JSON", Array("\u{0}\u{1}garbage".utf8)),
            ("wrong shape", Array(#"{"formatVersion": 1, "argv": 7}"#.utf8)),
        ]
        for (what, bytes) in cases {
            try writeBytes(r.trace + "/header.json", bytes)
            let replay = try detrec(["replay", r.trace], in: s.path)
            expectCleanFailure(replay, mentioning: ["header", "corrupt", "version"], "header \(what)")
            let dump = try detrec(["dump", r.trace], in: s.path)
            expectCleanFailure(dump, mentioning: ["header", "corrupt", "version"], "dump, header \(what)")
        }
        // Version 0 does not exist.
        try writeBytes(r.trace + "/header.json", header)
        try editHeader(r.trace) { $0["formatVersion"] = 0 }
        let replay = try detrec(["replay", r.trace], in: s.path)
        expectCleanFailure(replay, mentioning: ["header", "corrupt", "version"], "header formatVersion 0")
    }

    @Test func newerFormatVersionIsRefused() throws {
        let s = Scratch(); defer { s.remove() }
        let r = try recordedTrace(s)
        try editHeader(r.trace) { $0["formatVersion"] = 999 }
        let replay = try detrec(["replay", r.trace], in: s.path)
        expectCleanFailure(replay, mentioning: ["newer", "version"], "formatVersion 999")
        #expect(replay.stderr.contains("999"), "\(replay.stderr)")
    }

    @Test func missingStoredExecutableIsReported() throws {
        let s = Scratch(); defer { s.remove() }
        let r = try recordedTrace(s)
        let files = try FileManager.default.contentsOfDirectory(atPath: r.trace + "/files")
        #expect(!files.isEmpty)
        for f in files { try FileManager.default.removeItem(atPath: r.trace + "/files/" + f) }
        let replay = try detrec(["replay", r.trace], in: s.path)
        expectCleanFailure(replay, mentioning: ["files", "stored", "missing", "no such"], "stored executable deleted")
    }

    @Test func damagedStoredExecutableIsReported() throws {
        let s = Scratch(); defer { s.remove() }
        let r = try recordedTrace(s)
        let files = try FileManager.default.contentsOfDirectory(atPath: r.trace + "/files")
        for f in files {
            var bytes = readBytes(r.trace + "/files/" + f)
            bytes[bytes.count / 2] ^= 1
            try writeBytes(r.trace + "/files/" + f, bytes)
        }
        let replay = try detrec(["replay", r.trace], in: s.path)
        expectCleanFailure(replay, mentioning: ["sha", "mismatch", "damaged", "corrupt"], "stored executable altered")
    }

    @Test func eventsCutShortReplayUpToTheCut() throws {
        let s = Scratch(); defer { s.remove() }
        let r = try recordAndReplay(try compile(StaticProgramTests.nondeterminism), replays: 1, in: s)
        let events = readBytes(r.trace + "/events")
        // Empty events file, then a file cut inside its first block.
        for keep in [0, 30, events.count / 2] {
            try writeBytes(r.trace + "/events", Array(events.prefix(keep)))
            let replay = try detrec(["replay", r.trace], in: s.path)
            expectCleanFailure(replay, mentioning: ["ends", "interrupted", "truncated", "end of the trace"], "events cut to \(keep) bytes")
            #expect(r.record.stdout.hasPrefix(replay.stdout), "replay printed what was not recorded: \(replay.stdout)")
            let dump = try detrec(["dump", r.trace], in: s.path)
            #expect(dump.status == 0, "dump of a cut trace: \(dump)")
        }
    }

    @Test func eventsFileMissing() throws {
        let s = Scratch(); defer { s.remove() }
        let r = try recordedTrace(s)
        try FileManager.default.removeItem(atPath: r.trace + "/events")
        let replay = try detrec(["replay", r.trace], in: s.path)
        expectCleanFailure(replay, mentioning: ["events", "trace"], "no events file")
    }

    // MARK: - Command lines

    @Test func recordingAMissingProgramFails() throws {
        let s = Scratch(); defer { s.remove() }
        let r = try detrec(["record", "-o", s.file("trace"), "--", "/nonexistent"], in: s.path)
        #expect(r.status == 127, "\(r)")
        #expect(r.stderr.contains("/nonexistent"), "\(r.stderr)")
        #expect(r.stderr.lowercased().contains("no such file") || r.stderr.lowercased().contains("not found"))
        #expect(access(s.file("trace/events"), F_OK) != 0, "a trace was written for a program that does not exist")
        let byName = try detrec(["record", "-o", s.file("trace2"), "--", "no-such-command-detrec-test"], in: s.path)
        #expect(byName.status == 127, "\(byName)")
        #expect(byName.stderr.contains("no-such-command-detrec-test"))
    }

    @Test func recordingSomethingThatIsNotAnELFProgram() throws {
        let s = Scratch(); defer { s.remove() }
        // A #! script runs its interpreter, as execve does.
        let script = s.file("script.sh")
        try "#!/bin/sh\necho hi\n".write(toFile: script, atomically: true, encoding: .utf8)
        chmod(script, 0o755)
        let r = try detrec(["record", "-q", "-o", s.file("t1"), "--", script], in: s.path)
        #expect(r.status == 0, "\(r)")
        #expect(r.stdout == "hi\n")
        let replayed = try detrec(["replay", s.file("t1")], in: s.path)
        #expect(replayed.stdout == "hi\n")
        let notExecutable = s.file("data")
        try "data".write(toFile: notExecutable, atomically: true, encoding: .utf8)
        let r2 = try detrec(["record", "-q", "-o", s.file("t2"), "--", notExecutable], in: s.path)
        #expect(r2.status == 126, "\(r2)")
        #expect(r2.stderr.contains("permission denied"), "\(r2.stderr)")
        let r3 = try detrec(["record", "-q", "-o", s.file("t3"), "--", s.path], in: s.path)
        expectCleanFailure(r3, mentioning: ["directory", "ELF", "permission", "read"], "a directory")
    }

    @Test func recordRefusesANonEmptyTraceDirectory() throws {
        let s = Scratch(); defer { s.remove() }
        let program = try compile(StaticProgramTests.hello)
        let first = try detrec(["record", "-q", "-o", s.file("trace"), "--", program], in: s.path)
        #expect(first.status == 0)
        let header = readBytes(s.file("trace/header.json"))
        let second = try detrec(["record", "-q", "-o", s.file("trace"), "--", program], in: s.path)
        expectCleanFailure(second, mentioning: ["exists", "not empty", "empty"], "recording over a trace")
        #expect(readBytes(s.file("trace/header.json")) == header, "the old trace was overwritten")
    }

    @Test func replayOfAMissingDirectoryFails() throws {
        let s = Scratch(); defer { s.remove() }
        let r = try detrec(["replay", "/nonexistent-dir"], in: s.path)
        expectCleanFailure(r, mentioning: ["/nonexistent-dir"], "replay of a missing directory")
        let d = try detrec(["dump", "/nonexistent-dir"], in: s.path)
        expectCleanFailure(d, mentioning: ["/nonexistent-dir"], "dump of a missing directory")
        // An empty directory is not a trace either.
        let empty = try detrec(["replay", s.path], in: s.path)
        expectCleanFailure(empty, mentioning: ["trace", "header"], "replay of an empty directory")
    }

    @Test func noProgramGiven() throws {
        let s = Scratch(); defer { s.remove() }
        let r = try detrec(["record", "-o", s.file("trace")], in: s.path)
        expectCleanFailure(r, mentioning: ["no program"], "record without a program")
    }

    // MARK: - Interrupted recordings

    static let waitsForInput = #"""
    #include <stdio.h>
    #include <unistd.h>
    int main(void) {
        printf("waiting for input\n");
        fflush(stdout);
        char b[64];
        ssize_t n = read(0, b, sizeof b);
        printf("got %zd\n", n);
        return 0;
    }
    """#

    /// Starts recording `waitsForInput` with a stdin pipe the test keeps
    /// open, and waits until the guest printed its line and blocks reading.
    func startBlockedRecording(_ s: Scratch, trace: String) throws -> (Child, Int32) {
        var fds: [Int32] = [0, 0]
        #expect(cloexecPipe(&fds))
        let child = try spawn([E2E.detrec, "record", "-q", "-o", trace, "--", try compile(Self.waitsForInput)],
                              stdin: .fd(fds[0]), environment: E2E.baseEnvironment, in: s.path)
        close(fds[0])
        let printed = child.waitUntil { child.stdoutSoFar == "waiting for input\n" }
        #expect(printed, "the guest never printed its line: \(child.stdoutSoFar)")
        // Blocked in the host read of the pipe: everything before it is flushed.
        child.waitUntil(timeout: 3) { child.wchan.contains("pipe") }
        return (child, fds[1])
    }

    @Test func recorderKilledWithSIGKILLLeavesAReplayableTrace() throws {
        let s = Scratch(); defer { s.remove() }
        let trace = s.file("trace")
        let (child, writeEnd) = try startBlockedRecording(s, trace: trace)
        defer { close(writeEnd) }
        child.signal(SIGKILL)
        let record = child.wait()
        #expect(record.status == 128 + SIGKILL)

        let replay = try detrec(["replay", trace], in: s.path)
        #expect(replay.stdout == "waiting for input\n", "\(replay)")
        #expect(replay.status == 1, "\(replay)")
        let lower = replay.stderr.lowercased()
        #expect(lower.contains("interrupted") || lower.contains("trace ends"), "\(replay.stderr)")
        #expect(replay.stderr.contains("read"), "the message names where replay stopped: \(replay.stderr)")

        let dump = try detrec(["dump", trace], in: s.path)
        #expect(dump.status == 0, "\(dump)")
        #expect(dump.stdout.contains("write"))
        #expect(dump.stderr.lowercased().contains("interrupted"), "\(dump.stderr)")
        let json = try dumpJSON(trace, in: s)
        #expect(json.syscalls(named: "write").contains { $0.args.first == "0x1" && $0.int("result") == 18 })
        let last = json.events.last?.string("kind")
        #expect(last != "exit" && last != "fatalSignal", "a killed recorder wrote a final event: \(last ?? "none")")
    }

    @Test func recorderInterruptedWithSIGINTEndsTheGuest() throws {
        let s = Scratch(); defer { s.remove() }
        let trace = s.file("trace")
        let (child, writeEnd) = try startBlockedRecording(s, trace: trace)
        defer { close(writeEnd) }
        child.signal(SIGINT)
        let record = child.wait(timeout: 15)
        #expect(!record.timedOut, "SIGINT did not end the recording")
        #expect(record.status == 130, "\(record)")
        #expect(record.stdout == "waiting for input\n")
        #expect(record.stderr.contains("SIGINT"), "\(record.stderr)")

        for _ in 0..<2 {
            let replay = try detrec(["replay", trace], in: s.path)
            #expect(replay.stdout == "waiting for input\n", "\(replay)")
            #expect(replay.status == 130, "\(replay)")
        }
        let d = try dumpJSON(trace, in: s)
        #expect(d.events.last?.string("kind") == "fatalSignal")
        #expect(d.events.last?.int("signal") == Int(SIGINT))
    }

    @Test func recorderInterruptedWithSIGTERMEndsTheGuest() throws {
        let s = Scratch(); defer { s.remove() }
        let trace = s.file("trace")
        let (child, writeEnd) = try startBlockedRecording(s, trace: trace)
        defer { close(writeEnd) }
        child.signal(SIGTERM)
        let record = child.wait(timeout: 15)
        #expect(record.status == 128 + SIGTERM, "\(record)")
        let replay = try detrec(["replay", trace], in: s.path)
        #expect(replay.stdout == "waiting for input\n")
        #expect(replay.status == 128 + SIGTERM, "\(replay)")
    }
}

// MARK: - Helpers

/// Rewrites a trace's header.json through `edit`. With `reseal` the header
/// gets the checksum of its new contents, as a deliberate forger would do,
/// so what is tested is replay's own check of the edited field; without,
/// the checksum no longer matches and the trace must be refused.
func editHeader(_ trace: String, reseal: Bool = true, _ edit: (inout [String: Any]) -> Void) throws {
    let path = trace + "/header.json"
    let data = try Data(contentsOf: URL(fileURLWithPath: path))
    guard var header = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
        throw SpawnError(description: "header.json is not an object")
    }
    edit(&header)
    if reseal {
        let edited = try JSONSerialization.data(withJSONObject: header)
        if let decoded = try? JSONDecoder().decode(TraceHeader.self, from: edited) {
            header[HeaderJSON.checksumKey] = try HeaderJSON.checksum(decoded)
        }
    }
    let out = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys, .prettyPrinted])
    try out.write(to: URL(fileURLWithPath: path))
}

/// The SHA-256 of a file, by sha256sum.
func sha256Hex(_ path: String) throws -> String {
    let s = Scratch("sha"); defer { s.remove() }
    let r = try run(["/usr/bin/sha256sum", path], in: s.path)
    return String(r.stdout.prefix(64))
}
