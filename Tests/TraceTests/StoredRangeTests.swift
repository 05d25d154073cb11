import Foundation
import Testing
@testable import Trace

/// Stored ranges (format 5): a file mapping's data extents, compressed.
/// They read back as written, cost what the extents hold, and bytes that
/// are not one (untrusted: a trace is a file anyone can edit) are a typed
/// error, never a trap or a huge allocation.
@Suite struct StoredRangeTests {
    static let sparse = StoredRange(base: 0, size: 4 << 30, extents: [
        .init(start: 0, length: 13), .init(start: 2 << 30, length: 7), .init(start: (4 << 30) - 9, length: 9),
    ], data: Array("head-of-file\0middle\0tail-end\0".utf8))

    @Test func rangesReadBackAsWritten() throws {
        let dense = StoredRange(base: 4096, size: 300_000, extents: [.init(start: 0, length: 300_000)],
                                data: (0..<300_000).map { UInt8(truncatingIfNeeded: $0 / 1000) })
        let hole = StoredRange(base: 1 << 24, size: 1 << 20, extents: [], data: [])
        for r in [Self.sparse, dense, hole] {
            #expect(r.problem == nil)
            #expect(try StoredRange.decode(try r.encode()) == r)
        }
        // A 4 GiB range with 29 bytes of data is a few dozen bytes; holes cost nothing.
        #expect(try Self.sparse.encode().count < 200)
        #expect(try hole.encode().count == StoredRange.fixedSize)
        // Compressed: a megabyte of repetitive data is a few kilobytes.
        #expect(try dense.encode().count < 300_000 / 20)
    }

    @Test func impossibleRangesAreNotWritten() {
        let bad: [StoredRange] = [
            StoredRange(base: 0, size: 10, extents: [.init(start: 5, length: 6)], data: Array(repeating: 1, count: 6)),
            StoredRange(base: 0, size: 10, extents: [.init(start: 0, length: 4), .init(start: 3, length: 2)], data: Array(repeating: 1, count: 6)),
            StoredRange(base: 0, size: 10, extents: [.init(start: 0, length: 0)], data: []),
            StoredRange(base: 0, size: 10, extents: [.init(start: 0, length: 4)], data: [1, 2]),
            StoredRange(base: UInt64.max, size: 2, extents: [], data: []),
        ]
        for r in bad {
            #expect(r.problem != nil, "\(r)")
            #expect(throws: TraceError.self) { try r.encode() }
        }
    }

    @Test func damagedRangesAreErrors() throws {
        let good = try Self.sparse.encode()
        func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
        var huge = good
        huge.replaceSubrange(20..<24, with: le(UInt32.max))           // extent count
        var bomb = Array(good.prefix(24)) + le(UInt64(0))         // no extents
        bomb.replaceSubrange(20..<24, with: le(UInt32(0)))
        bomb = Array(bomb.prefix(24)) + le(StoredRange.maxData) + [0x28, 0xb5, 0x2f, 0xfd]
        let cases: [[UInt8]] = [[], Array(good.prefix(10)), Array(good.dropLast()), good + [0], huge, bomb,
                                [0] + good.dropFirst()]
        for bytes in cases {
            #expect(throws: TraceError.self) { try StoredRange.decode(bytes) }
        }
        // Seeded mutations: an error, or a range that is valid.
        var rng = SplitMix64(state: 5)
        for _ in 0..<2000 {
            var b = good
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                let i = Int.random(in: 0..<b.count, using: &rng)
                b[i] = UInt8.random(in: 0...255, using: &rng)
            }
            if Bool.random(using: &rng) { b = Array(b.prefix(Int.random(in: 0...b.count, using: &rng))) }
            if let r = try? StoredRange.decode(b) { #expect(r.problem == nil) }
        }
    }

    @Test func aRangeIsAStoredFile() throws {
        let tmp = TempDir(); defer { tmp.cleanup() }
        let dir = tmp.sub("t")
        let w = try TraceWriter(directory: dir, header: sampleHeader())
        let encoded = try Self.sparse.encode()
        let sha = SHA256.hex(encoded)
        try w.storeRange(encoded, sha256: sha)
        // Compressed already: stored as it is.
        #expect(try readBytes(dir + "/files/" + sha) == encoded)
        try w.append(.syscall(SyscallRecord(tid: 1, ticks: 0, rip: 0x401000, number: 9, args: [0, 4 << 30, 1, 1, 3, 0],
                                            result: 0x7f00_0000_0000,
                                            writes: [.storedRange(address: 0x7f00_0000_0000, length: 4 << 30, sha256: sha, offset: 0)])))
        try w.finish()
        let r = try TraceReader(directory: dir)
        guard case .syscall(let s)? = try r.next(), case .storedRange(_, let length, let name, _)? = s.writes.first else {
            Issue.record("no stored range read back"); return
        }
        #expect(length == 4 << 30)
        #expect(try StoredRange.decode(try r.storedFile(sha256: name)) == Self.sparse)
    }

    /// Kind 3 is a format-5 write: in an older trace it is an unknown kind.
    @Test func olderTracesHaveNoRanges() throws {
        let sha = [UInt8](repeating: 0xab, count: 32)
        func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
        var event: [UInt8] = [2] + le(Int32(1)) + le(UInt64(0)) + le(UInt64(0x401000)) + le(UInt64(9))
        for _ in 0..<6 { event += le(UInt64(0)) }
        event += le(Int64(0x7f00_0000_0000)) + le(UInt32(1))
        event += [3] + le(UInt64(0x7f00_0000_0000)) + le(UInt64(100)) + le(UInt64(0)) + sha
        let v5 = try event.withUnsafeBytes { try EventEncoding.decode($0, count: 1, version: 5) }
        #expect(v5.count == 1)
        #expect(throws: EventEncoding.DecodingError.self) {
            try event.withUnsafeBytes { try EventEncoding.decode($0, count: 1, version: 4) }
        }
    }
}
