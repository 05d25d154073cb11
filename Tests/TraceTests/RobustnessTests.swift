import Foundation
import Testing
@testable import Trace

/// What a killed recorder or a damaged disk can leave behind must never crash the reader.
@Suite struct TruncationTests {
    /// Cut the events file at every byte offset: the reader returns the events of every
    /// complete block, then reports truncation at the end of the last complete block.
    @Test func truncatedAtEveryOffset() throws {
        let tmp = TempDir(); defer { tmp.cleanup() }
        let dir = tmp.sub("t")
        let events = [Event.processStart(tid: 5, atRandom: Array(0..<16))] + (0..<24).map { readSyscall($0) }
            + [.exit(tid: 5, status: 0)]
        try writeTrace(dir, events, blockLimit: 120)
        let full = try readBytes(dir + "/events")
        let map = BlockMap(full)
        #expect(map.starts.count >= 5)

        // Shrink the file step by step (truncate(2), not rewrites: ext4 flushes rewritten files).
        for cut in (0...full.count).reversed() {
            #expect(truncate(dir + "/events", off_t(cut)) == 0)
            let (got, ending, error) = try readEverything(dir)
            #expect(error == nil, "cut at \(cut)")
            if cut == full.count {
                #expect(got == events)
                #expect(ending == .complete)
                continue
            }
            // Complete blocks are those ending at or before the cut.
            var boundary = 0
            var complete = 0
            for i in map.starts.indices {
                let end = i + 1 < map.starts.count ? map.starts[i + 1] : full.count
                guard end <= cut else { break }
                boundary = end
                complete = map.firstEvents[i] + map.eventCounts[i]
            }
            #expect(got == Array(events[..<complete]), "cut at \(cut)")
            #expect(ending == .truncated(afterEvent: complete, byteOffset: UInt64(boundary)), "cut at \(cut)")
        }
    }

    @Test func emptyEventsFile() throws {
        let tmp = TempDir(); defer { tmp.cleanup() }
        let dir = tmp.sub("t")
        _ = try TraceWriter(directory: dir, header: sampleHeader())
        let (got, ending, error) = try readEverything(dir)
        #expect(got.isEmpty && error == nil)
        #expect(ending == .truncated(afterEvent: 0, byteOffset: 0))
    }
}

@Suite struct CorruptionTests {
    /// Flip each byte of the events file in turn: the reader hands out the blocks before the
    /// damaged one, then throws corruptBlock naming the damaged block and its offset.
    @Test func flippedByteIsCorruptBlock() throws {
        let tmp = TempDir(); defer { tmp.cleanup() }
        let dir = tmp.sub("t")
        let events = (0..<12).map { readSyscall($0 * 3) } + [.exit(tid: 100, status: 0)]
        try writeTrace(dir, events, blockLimit: 100)
        let full = try readBytes(dir + "/events")
        let map = BlockMap(full)
        let fd = open(dir + "/events", O_WRONLY)
        #expect(fd >= 0)
        defer { close(fd) }
        for offset in 0..<full.count {
            // Damage in place and restore afterwards: cheaper than rewriting the file.
            var flipped = full[offset] ^ 0x5A
            #expect(pwrite(fd, &flipped, 1, off_t(offset)) == 1)
            let (got, _, error) = try readEverything(dir)
            var original = full[offset]
            #expect(pwrite(fd, &original, 1, off_t(offset)) == 1)
            let block = map.block(containing: offset)
            guard case let .corruptBlock(index, blockOffset, _)? = error else {
                Issue.record("byte \(offset): expected corruptBlock, got \(String(describing: error))")
                continue
            }
            #expect(index == block, "byte \(offset)")
            #expect(blockOffset == UInt64(map.starts[block]), "byte \(offset)")
            #expect(got == Array(events[..<map.firstEvents[block]]), "byte \(offset)")
        }
    }

    @Test func errorIsSticky() throws {
        let tmp = TempDir(); defer { tmp.cleanup() }
        let dir = tmp.sub("t")
        try writeTrace(dir, [.exit(tid: 1, status: 0)])
        var bytes = try readBytes(dir + "/events")
        bytes[BlockHeader.size + 2] ^= 1
        try writeBytes(dir + "/events", bytes)
        let r = try TraceReader(directory: dir)
        #expect(throws: TraceError.self) { try r.next() }
        #expect(throws: TraceError.self) { try r.next() }
    }

    @Test func trailingGarbageAfterEndMarker() throws {
        let tmp = TempDir(); defer { tmp.cleanup() }
        let dir = tmp.sub("t")
        try writeTrace(dir, [.exit(tid: 1, status: 0)])
        try writeBytes(dir + "/events", try readBytes(dir + "/events") + [0])
        let (_, _, error) = try readEverything(dir)
        guard case .corruptBlock(index: 1, _, _)? = error else { Issue.record("\(String(describing: error))"); return }
    }

    @Test func randomEventsFileNeverCrashes() throws {
        let tmp = TempDir(); defer { tmp.cleanup() }
        let dir = tmp.sub("t")
        try writeTrace(dir, [])
        var rng = SplitMix64(state: 7)
        for _ in 0..<200 {
            let n = Int.random(in: 0..<300, using: &rng)
            var bytes = (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
            if n >= 4, Bool.random(using: &rng) { bytes.replaceSubrange(0..<4, with: Array("DRBK".utf8)) }
            try writeBytes(dir + "/events", bytes)
            _ = try readEverything(dir)
        }
    }
}

/// Hand-built blocks with valid checksums but hostile lengths.
@Suite struct HostileInputTests {
    /// A trace directory whose events file is `blocks` (header.json from a real writer).
    private func trace(_ tmp: TempDir, _ blocks: [UInt8]) throws -> String {
        let dir = tmp.sub("t")
        if !FileManager.default.fileExists(atPath: dir) { try writeTrace(dir, []) }
        try writeBytes(dir + "/events", blocks)
        return dir
    }

    private func rawBlock(count: UInt32, uncompressed: UInt32, compressed: UInt32, body: [UInt8] = []) -> [UInt8] {
        var h = BlockHeader(version: traceFormatVersion, firstEvent: 0, eventCount: count, kind: .events,
                            uncompressedLength: uncompressed, compressedLength: compressed)
        h.crc = body.withUnsafeBytes { h.computeCRC(payload: $0) }
        h.headerCRC = h.computeHeaderCRC()
        return h.bytes + body
    }

    private func block(_ payload: [UInt8], count: Int) throws -> [UInt8] {
        try payload.withUnsafeBytes { try BlockFraming.eventsBlock(payload: $0, firstEvent: 0, eventCount: count) }
    }

    private func expectCorrupt(_ dir: String, _ comment: Comment) throws {
        let (got, _, error) = try readEverything(dir)
        #expect(got.isEmpty, comment)
        guard case .corruptBlock(index: 0, offset: 0, _)? = error else {
            Issue.record("\(comment): expected corruptBlock, got \(String(describing: error))")
            return
        }
    }

    @Test func hugeBlockLengthsRejectedBeforeAllocating() throws {
        let tmp = TempDir(); defer { tmp.cleanup() }
        try expectCorrupt(try trace(tmp, rawBlock(count: 1, uncompressed: .max, compressed: 100)), "4 GiB payload")
        try expectCorrupt(try trace(tmp, rawBlock(count: 2, uncompressed: 100 << 20, compressed: 100)), "100 MiB multi-event payload")
        try expectCorrupt(try trace(tmp, rawBlock(count: 1, uncompressed: 100, compressed: .max)), "compressed > bound")
        try expectCorrupt(try trace(tmp, rawBlock(count: 50, uncompressed: 10, compressed: 10)), "more events than bytes")
        try expectCorrupt(try trace(tmp, rawBlock(count: 0, uncompressed: 10, compressed: 10)), "no events")
        // Plausible lengths but the file stops short: truncation, with nothing allocated for it.
        let dir = try trace(tmp, rawBlock(count: 1, uncompressed: 1 << 20, compressed: 500_000))
        let (_, ending, error) = try readEverything(dir)
        #expect(error == nil)
        #expect(ending == .truncated(afterEvent: 0, byteOffset: 0))
    }

    @Test func hugeLengthsInsideThePayload() throws {
        let tmp = TempDir(); defer { tmp.cleanup() }
        func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
        let syscallHead: [UInt8] = [2] + le(Int32(1)) + le(UInt64(0)) + le(UInt64(0)) + le(UInt64(0))
            + Array(repeating: 0, count: 48) + le(Int64(0))
        // 4 billion memory writes in a few bytes.
        try expectCorrupt(try trace(tmp, block(syscallHead + le(UInt32.max) + [1, 2, 3], count: 1)), "write count")
        // One write claiming 4 GiB of data.
        try expectCorrupt(try trace(tmp, block(syscallHead + le(UInt32(1)) + [1] + le(UInt64(0)) + le(UInt32.max - 1),
                                               count: 1)), "write length")
        // atRandom claiming 4 GiB.
        try expectCorrupt(try trace(tmp, block([1] + le(Int32(1)) + le(UInt32.max), count: 1)), "atRandom length")
        // Unknown memory write kind.
        try expectCorrupt(try trace(tmp, block(syscallHead + le(UInt32(1)) + [9] + Array(repeating: 0, count: 20),
                                               count: 1)), "write kind")
        // Trailing bytes after the declared events.
        try expectCorrupt(try trace(tmp, block([3] + le(Int32(1)) + le(Int32(0)) + [0], count: 1)), "trailing bytes")
        // Fewer events than declared.
        try expectCorrupt(try trace(tmp, block([3] + le(Int32(1)) + le(Int32(0)), count: 2)), "missing event")
    }

    @Test func unknownEventKindSaysNewerDetrec() throws {
        let tmp = TempDir(); defer { tmp.cleanup() }
        let dir = try trace(tmp, block([0x7F, 0, 0, 0, 0], count: 1))
        let (_, _, error) = try readEverything(dir)
        #expect(error == .unknownEventKind(kind: 0x7F, blockIndex: 0, offset: 0))
        #expect(error?.description.contains("newer detrec") == true)
    }

    @Test func blockOutOfSequence() throws {
        let tmp = TempDir(); defer { tmp.cleanup() }
        let payload: [UInt8] = [3, 1, 0, 0, 0, 0, 0, 0, 0]
        let b = try payload.withUnsafeBytes { try BlockFraming.eventsBlock(payload: $0, firstEvent: 5, eventCount: 1) }
        try expectCorrupt(try trace(tmp, b), "firstEvent 5 in block 0")
    }

    /// Mutated payloads straight into the decoder: every outcome is events or a DecodingError.
    @Test func decoderFuzz() throws {
        var payload: [UInt8] = []
        for e in everyKindEvents() { try EventEncoding.encode(e, into: &payload) }
        let count = everyKindEvents().count
        var rng = SplitMix64(state: 42)
        for _ in 0..<3000 {
            var p = payload
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                switch Int.random(in: 0..<3, using: &rng) {
                case 0: p[Int.random(in: 0..<p.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                case 1: p.removeLast(min(p.count - 1, Int.random(in: 0..<20, using: &rng)))
                default: p[Int.random(in: 0..<p.count, using: &rng)] = 0xFF
                }
            }
            _ = try? p.withUnsafeBytes { try EventEncoding.decode($0, count: count) }
        }
    }
}

@Suite struct OpeningTests {
    @Test func missingDirectory() {
        #expect(throws: TraceError.notATrace(path: "/nonexistent/trace", reason: "no such directory")) {
            try TraceReader(directory: "/nonexistent/trace")
        }
    }

    @Test func fileInsteadOfDirectory() throws {
        let tmp = TempDir(); defer { tmp.cleanup() }
        try writeBytes(tmp.sub("f"), [1])
        #expect(throws: TraceError.notATrace(path: tmp.sub("f"), reason: "not a directory")) {
            try TraceReader(directory: tmp.sub("f"))
        }
    }

    @Test func missingHeader() throws {
        let tmp = TempDir(); defer { tmp.cleanup() }
        #expect(throws: TraceError.missingHeader(path: tmp.path)) { try TraceReader(directory: tmp.path) }
    }

    @Test func missingEvents() throws {
        let tmp = TempDir(); defer { tmp.cleanup() }
        let dir = tmp.sub("t")
        try writeTrace(dir, [])
        try FileManager.default.removeItem(atPath: dir + "/events")
        #expect(throws: TraceError.missingEvents(path: dir)) { try TraceReader(directory: dir) }
    }

    @Test func corruptHeader() throws {
        let tmp = TempDir(); defer { tmp.cleanup() }
        let dir = tmp.sub("t")
        try writeTrace(dir, [])
        for bad in ["", "{", "[1,2]", "{\"formatVersion\": 1}", "{\"formatVersion\": \"one\"}", "{\"formatVersion\": 0}"] {
            try writeBytes(dir + "/header.json", Array(bad.utf8))
            #expect {
                try TraceReader(directory: dir)
            } throws: { error in
                guard case .corruptHeader? = error as? TraceError else { return false }
                return true
            }
        }
    }

    @Test func newerVersion() throws {
        let tmp = TempDir(); defer { tmp.cleanup() }
        let dir = tmp.sub("t")
        try writeTrace(dir, [])
        var h = sampleHeader()
        h.formatVersion = 99
        try writeBytes(dir + "/header.json", Array(try JSONEncoder().encode(h)))
        let expected = TraceError.newerVersion(found: 99, supported: traceFormatVersion)
        #expect(throws: expected) { try TraceReader(directory: dir) }
        // Even when the rest of the header is in a shape this version does not know.
        try writeBytes(dir + "/header.json", Array("{\"formatVersion\": 99, \"argv\": 5}".utf8))
        #expect(throws: expected) { try TraceReader(directory: dir) }
        #expect(expected.description.contains("newer detrec"))
    }
}
