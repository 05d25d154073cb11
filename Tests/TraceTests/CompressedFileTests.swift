import Foundation
import Testing
@testable import Trace

/// Whole stored files (format 6): compressed, named by the SHA-256 of the
/// file's own bytes, read back decompressed and verified. Bytes that are
/// not one (untrusted: a trace is a file anyone can edit) are a typed
/// error, never a trap or a huge allocation.
@Suite struct CompressedFileTests {
    static let program: [UInt8] = [0x7f, 0x45, 0x4c, 0x46] + (0..<200_000).map { UInt8(truncatingIfNeeded: ($0 / 64) &* 7) }

    @Test func filesReadBackAsWritten() throws {
        let random = (0..<5000).map { _ in UInt8.random(in: 0...255) }
        for contents in [Self.program, [], [1], random, Array("DRSF not a header".utf8)] {
            #expect(try CompressedFile.decode(try CompressedFile.encode(contents)) == contents)
        }
        #expect(try CompressedFile.encode(Self.program).count < Self.program.count / 20)
        #expect(try CompressedFile.encode([]).count == CompressedFile.headerSize)
    }

    @Test func damagedObjectsAreErrors() throws {
        let good = try CompressedFile.encode(Self.program)
        func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
        var bigger = good
        bigger.replaceSubrange(4..<12, with: le(UInt64(Self.program.count + 1)))
        var smaller = good
        smaller.replaceSubrange(4..<12, with: le(UInt64(Self.program.count - 1)))
        let bomb = Array(good.prefix(4)) + le(CompressedFile.maxSize) + [0x28, 0xb5, 0x2f, 0xfd]
        let tooBig = Array(good.prefix(4)) + le(UInt64.max) + Array(good.dropFirst(12))
        let cases: [[UInt8]] = [[], Array(good.prefix(3)), Array(good.prefix(12)), Array(good.dropLast()), good + [0],
                                bigger, smaller, bomb, tooBig, Array(good.prefix(12)) + [0] + good.dropFirst(12),
                                Array(try CompressedFile.encode([]) + [0])]
        for bytes in cases {
            #expect(throws: TraceError.self) { try CompressedFile.decode(bytes) }
        }
        // Seeded mutations: an error, or bytes of the declared size.
        var rng = SplitMix64(state: 6)
        for _ in 0..<500 {
            var b = good
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                let i = Int.random(in: 0..<b.count, using: &rng)
                b[i] = UInt8.random(in: 0...255, using: &rng)
            }
            if Bool.random(using: &rng) { b = Array(b.prefix(Int.random(in: 0...b.count, using: &rng))) }
            if let out = try? CompressedFile.decode(b) {
                #expect(UInt64(out.count) == b.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: 4, as: UInt64.self)) })
            }
        }
    }

    /// In the trace: stored compressed, named by the file's hash; a
    /// damaged object is `corruptStoredFile` or `storedFileMismatch`.
    @Test func aTraceStoresFilesCompressed() throws {
        let tmp = TempDir(); defer { tmp.cleanup() }
        let dir = tmp.sub("t")
        let w = try TraceWriter(directory: dir, header: sampleHeader())
        let sha = try w.storeFile(Self.program)
        #expect(sha == SHA256.hex(Self.program))
        try w.finish()
        let object = try readBytes(dir + "/files/" + sha)
        #expect(CompressedFile.hasMagic(object))
        #expect(object.count < Self.program.count / 20)
        #expect(w.totalBytes < UInt64(Self.program.count / 10))
        #expect(try TraceReader(directory: dir).storedFile(sha256: sha) == Self.program)

        var flipped = object
        flipped[flipped.count / 2] ^= 0x40
        try writeBytes(dir + "/files/" + sha, flipped)
        #expect(throws: TraceError.self) { try TraceReader(directory: dir).storedFile(sha256: sha) }
        var cut = object
        cut.removeLast(5)
        try writeBytes(dir + "/files/" + sha, cut)
        #expect {
            try TraceReader(directory: dir).storedFile(sha256: sha)
        } throws: { error in
            guard case .corruptStoredFile(let name, _)? = error as? TraceError else { return false }
            return name == sha
        }
        // Another file's object under this name: it decodes, and does not hash to the name.
        try writeBytes(dir + "/files/" + sha, try CompressedFile.encode(Array(Self.program.dropLast())))
        #expect(throws: TraceError.storedFileMismatch(sha256: sha)) { try TraceReader(directory: dir).storedFile(sha256: sha) }
        // The file's own bytes (as older traces store it) read too: verified by the same hash.
        try writeBytes(dir + "/files/" + sha, Self.program)
        #expect(try TraceReader(directory: dir).storedFile(sha256: sha) == Self.program)
    }

    /// Before format 6 a stored file is its bytes, whatever they start with.
    @Test func olderTracesStoreFilesRaw() throws {
        let tmp = TempDir(); defer { tmp.cleanup() }
        let dir = tmp.sub("t")
        let w = try TraceWriter(directory: dir, header: sampleHeader())
        try w.finish()
        let raw = try CompressedFile.encode(Self.program)   // a file that happens to look like an object
        let sha = SHA256.hex(raw)
        try writeBytes(dir + "/files/" + sha, raw)
        var v5 = sampleHeader()
        v5.formatVersion = 5
        try writeBytes(dir + "/header.json", try HeaderJSON.encode(v5, pretty: false))
        let r = try TraceReader(directory: dir)
        #expect(r.header.formatVersion == 5)
        #expect(try r.storedFile(sha256: sha) == raw)
    }
}
