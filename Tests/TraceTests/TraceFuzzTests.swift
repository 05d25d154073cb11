import Foundation
import Testing
@testable import Trace

/// A seeded mutator over real traces (deterministic, bounded, a few seconds):
/// bit flips, overwrites, truncation, trailing bytes, edited header fields and
/// re-framed blocks holding invalid event fields. Each outcome is a typed
/// error, or (truncation only) the intact prefix: never a crash, and never
/// events that differ from the recorded ones without an error.
@Suite(.serialized) struct TraceFuzzTests {
    static func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
    static func i32(_ v: Int32) -> [UInt8] { le(v) }
    static func u32(_ v: UInt32) -> [UInt8] { le(v) }
    static func u64(_ v: UInt64) -> [UInt8] { le(v) }
    static func i64(_ v: Int64) -> [UInt8] { le(v) }
    /// The concatenation of byte runs (long `+` chains defeat the type checker).
    static func cat(_ parts: [[UInt8]]) -> [UInt8] { Array(parts.joined()) }

    /// A trace of several blocks with every event kind.
    static func events() -> [Event] {
        [Event.processStart(tid: 100, atRandom: Array(0..<16))] + (0..<40).map { readSyscall($0 % 7 * 30) }
            + everyKindEvents().dropFirst() + [.exit(tid: 100, status: 3)]
    }

    enum Outcome: Equatable { case same, prefix(Int), error }

    /// Reads `dir`; checks the property; returns what happened.
    static func check(_ dir: String, against original: [Event], truncated: Bool,
                      _ comment: String, sourceLocation: SourceLocation = #_sourceLocation) -> Outcome {
        let reader: TraceReader
        do { reader = try TraceReader(directory: dir) } catch { return .error }
        var got: [Event] = []
        do {
            while let e = try reader.next() { got.append(e) }
        } catch {
            #expect(original.starts(with: got), "events before the error differ: \(comment)", sourceLocation: sourceLocation)
            return .error
        }
        #expect(original.starts(with: got), "read different events without an error: \(comment)", sourceLocation: sourceLocation)
        if got == original && reader.ending == .complete { return .same }
        // Anything short of the whole trace must say so: only a cut file may.
        #expect(truncated, "a damaged trace read as \(String(describing: reader.ending)) with \(got.count) events: \(comment)",
                sourceLocation: sourceLocation)
        if case .truncated? = reader.ending {} else {
            Issue.record("short read without a truncation: \(comment)", sourceLocation: sourceLocation)
        }
        return .prefix(got.count)
    }

    @Test func mutatedEventsFiles() throws {
        let tmp = TempDir(); defer { tmp.cleanup() }
        let dir = tmp.sub("t")
        let original = Self.events()
        try writeTrace(dir, original, blockLimit: 300)
        let pristine = try readBytes(dir + "/events")
        #expect(BlockMap(pristine).starts.count > 5)
        var rng = SplitMix64(state: 17)
        var outcomes: [String: Int] = [:]
        for round in 0..<600 {
            var bytes = pristine
            var truncated = false
            let kind = round % 5
            switch kind {
            case 0:   // one bit
                let at = Int.random(in: 0..<bytes.count, using: &rng)
                bytes[at] ^= 1 << UInt8.random(in: 0...7, using: &rng)
            case 1:   // a few random bytes
                for _ in 0..<Int.random(in: 1...8, using: &rng) {
                    bytes[Int.random(in: 0..<bytes.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                }
            case 2:   // cut anywhere
                bytes.removeLast(Int.random(in: 1...bytes.count, using: &rng))
                truncated = true
            case 3:   // trailing bytes after the end marker
                bytes += (0..<Int.random(in: 1...64, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            default:  // a run of bytes moved: blocks swapped or duplicated
                let a = Int.random(in: 0..<bytes.count, using: &rng)
                let n = Int.random(in: 1...min(200, bytes.count - a), using: &rng)
                let piece = Array(bytes[a..<(a + n)])
                bytes.insert(contentsOf: piece, at: Int.random(in: 0...bytes.count, using: &rng))
            }
            try writeBytes(dir + "/events", bytes)
            let outcome = Self.check(dir, against: original, truncated: truncated, "round \(round) kind \(kind)")
            if kind != 2 { #expect(outcome == .error, "round \(round) kind \(kind): damage went unnoticed") }
            outcomes["\(kind) \(outcome)", default: 0] += 1
        }
        #expect(outcomes.keys.contains("2 prefix(0)") || outcomes.keys.contains { $0.hasPrefix("2 prefix") })
    }

    /// header.json: random bytes changed or fields edited; the header must be
    /// refused (checksum, JSON, or a field of the wrong type), never loaded changed.
    @Test func mutatedHeaders() throws {
        let tmp = TempDir(); defer { tmp.cleanup() }
        let dir = tmp.sub("t")
        try writeTrace(dir, Self.events())
        let pristine = try readBytes(dir + "/header.json")
        let header = try TraceReader(directory: dir).header
        var rng = SplitMix64(state: 99)
        for round in 0..<300 {
            var bytes = pristine
            if round % 2 == 0 {
                for _ in 0..<Int.random(in: 1...3, using: &rng) {
                    let at = Int.random(in: 0..<bytes.count, using: &rng)
                    bytes[at] ^= UInt8.random(in: 1...255, using: &rng)
                }
            } else {
                var object = try #require(try JSONSerialization.jsonObject(with: Data(pristine)) as? [String: Any])
                let keys = ["argv", "envp", "cwd", "xcr0", "host", "extra", "executable", "cpuid", "detrecVersion", "recordedAt"]
                let key = keys[Int.random(in: 0..<keys.count, using: &rng)]
                switch Int.random(in: 0..<3, using: &rng) {
                case 0: object[key] = nil
                case 1: object[key] = "edited"
                default:
                    if let a = object[key] as? [String] { object[key] = a + ["x"] }
                    else if let n = object[key] as? Int { object[key] = n + 1 }
                    else if let d = object[key] as? [String: Any] { var e = d; e["k\(round)"] = "v"; object[key] = e }
                    else if let a = object[key] as? [Any] { object[key] = Array(a.dropLast()) }
                    else { object[key] = "\(object[key] ?? "")x" }
                }
                bytes = Array(try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]))
            }
            try writeBytes(dir + "/header.json", bytes)
            do {
                let reader = try TraceReader(directory: dir)
                // Only a change JSON does not see (whitespace, key order, an escape) may load.
                #expect(reader.header == header, "round \(round): an edited header loaded")
            } catch {
                switch error {
                case .corruptHeader, .headerChecksumMismatch, .newerVersion: break
                default: Issue.record("round \(round): unexpected \(error)")
                }
            }
        }
    }

    /// Blocks with valid framing and checksums whose events hold values no
    /// recording produces: the reader names the field, as corruption.
    @Test func invalidEventFieldsInValidBlocks() throws {
        let tmp = TempDir(); defer { tmp.cleanup() }
        let dir = tmp.sub("t")
        try writeTrace(dir, [])
        let (i32, u32, u64, cat) = (Self.i32, Self.u32, Self.u64, Self.cat)
        let syscall = cat([[2], i32(1), u64(0), u64(0), u64(1), Array(repeating: 0, count: 48), Self.i64(0)])
        let zeros32 = [UInt8](repeating: 0, count: 32)
        let cases: [(String, [UInt8])] = [
            ("fatal signal 0", cat([[4], i32(1), i32(0), i32(1), u64(0), u64(0)])),
            ("fatal signal 65", cat([[4], i32(1), i32(65), i32(1), u64(0), u64(0)])),
            ("fatal signal -9", cat([[4], i32(1), i32(-9), i32(1), u64(0), u64(0)])),
            ("thread 0", cat([[3], i32(0), i32(0)])),
            ("thread -5", cat([[3], i32(-5), i32(0)])),
            ("exit status 256", cat([[3], i32(1), i32(256)])),
            ("exit status -1", cat([[3], i32(1), i32(-1)])),
            ("AT_RANDOM of 3", cat([[1], i32(1), u32(3), [1, 2, 3]])),
            ("signal 0", cat([[6], i32(1), i32(0), i32(0)])),
            ("signal Int32.min", cat([[6], i32(1), i32(Int32.min), i32(0)])),
            ("timer signal 0", cat([[6], i32(1), i32(0x100), i32(-2)])),
            ("preempt hit 0", cat([[8], i32(1), u64(0x1000), u64(0), u64(0)])),
            ("write into kernel space", cat([syscall, u32(1), [1], u64(0xffff_8000_0000_0000), u32(1), [0]])),
            ("write across 2^47", cat([syscall, u32(1), [1], u64(0x7fff_ffff_ffff), u32(2), [0, 0]])),
            ("file write wrapping", cat([syscall, u32(1), [2], u64(0x1000), u64(.max), u64(1), zeros32])),
            ("empty file write", cat([syscall, u32(1), [2], u64(0x1000), u64(0), u64(0), zeros32])),
        ]
        for (what, payload) in cases {
            let block = try payload.withUnsafeBytes { try BlockFraming.eventsBlock(payload: $0, firstEvent: 0, eventCount: 1) }
            try writeBytes(dir + "/events", block + BlockFraming.endBlock(eventCount: 1))
            let (got, _, error) = try readEverything(dir)
            #expect(got.isEmpty, "\(what)")
            guard case .corruptBlock(index: 0, offset: 0, let reason)? = error else {
                Issue.record("\(what): expected corruptBlock, got \(String(describing: error))")
                continue
            }
            #expect(reason.contains("event 0"), "\(what): \(reason)")
        }
        // The writer refuses them too: what it writes always reads back.
        let w = try TraceWriter(directory: tmp.sub("w"), header: sampleHeader())
        for bad: Event in [.fatalSignal(tid: 1, signal: 0, code: 0, rip: 0, address: 0), .exit(tid: 0, status: 0),
                           .processStart(tid: 1, atRandom: [])] {
            #expect(throws: TraceError.self) { try w.append(bad) }
        }
        #expect(w.eventCount == 0)
    }

    /// Mutated payloads straight into the decoder: whatever it returns passes
    /// validation and re-encodes; everything else is a DecodingError.
    @Test func decodedEventsAreAlwaysValid() throws {
        var payload: [UInt8] = []
        let events = Self.events()
        for e in events { try EventEncoding.encode(e, into: &payload) }
        var rng = SplitMix64(state: 7)
        var decoded = 0
        for _ in 0..<2000 {
            var p = payload
            for _ in 0..<Int.random(in: 1...3, using: &rng) {
                let at = Int.random(in: 0..<p.count, using: &rng)
                p[at] = [0, 0xff, 0x80, 0x40, UInt8.random(in: 0...255, using: &rng)][Int.random(in: 0..<5, using: &rng)]
            }
            guard let got = try? p.withUnsafeBytes({ try EventEncoding.decode($0, count: events.count) }) else { continue }
            decoded += 1
            for e in got {
                #expect(EventValidation.problem(e) == nil)
                var out: [UInt8] = []
                #expect(throws: Never.self) { try EventEncoding.encode(e, into: &out) }
            }
        }
        #expect(decoded > 0)
    }

    /// An older trace (format 3: 32-bit syscall numbers, no header checksum)
    /// still reads, with its numbers widened.
    @Test func formatThreeTraceReads() throws {
        let tmp = TempDir(); defer { tmp.cleanup() }
        let dir = tmp.sub("t")
        try writeTrace(dir, [])
        var object = try #require(try JSONSerialization.jsonObject(with: Data(readBytes(dir + "/header.json"))) as? [String: Any])
        object["formatVersion"] = 3
        object["headerChecksum"] = nil
        try writeBytes(dir + "/header.json", Array(try JSONSerialization.data(withJSONObject: object)))
        let (i32, u32, u64, cat) = (Self.i32, Self.u32, Self.u64, Self.cat)
        let payload = cat([
            [1], i32(7), u32(16), Array(0..<16),
            [2], i32(7), u64(5), u64(0x401000), u32(0xffff_ffff), cat((0..<6).map { u64(UInt64($0)) }), Self.i64(-38), u32(0),
            [5], i32(7), u32(202), u64(0x401002),
            [3], i32(7), i32(0),
        ])
        let block = try payload.withUnsafeBytes { try BlockFraming.eventsBlock(payload: $0, firstEvent: 0, eventCount: 4, version: 3) }
        try writeBytes(dir + "/events", block + BlockFraming.endBlock(eventCount: 4, version: 3))
        let (got, ending, error) = try readEverything(dir)
        #expect(error == nil)
        #expect(ending == .complete)
        #expect(got == [.processStart(tid: 7, atRandom: Array(0..<16)),
                        .syscall(SyscallRecord(tid: 7, ticks: 5, rip: 0x401000, number: 0xffff_ffff, args: [0, 1, 2, 3, 4, 5],
                                               result: -38, writes: [])),
                        .blocked(tid: 7, number: 202, rip: 0x401002),
                        .exit(tid: 7, status: 0)])
    }

    /// The fixture trace kept in the repository (an older format) reads
    /// whole, every event valid.
    @Test func committedFixtureReads() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let (got, ending, error) = try readEverything(root.path + "/traces/hello-random")
        #expect(error == nil)
        #expect(ending == .complete)
        #expect(got.count > 5)
        #expect(got.allSatisfy { EventValidation.problem($0) == nil })
        #expect(try TraceReader(directory: root.path + "/traces/hello-random").header.formatVersion < traceFormatVersion)
    }
}
