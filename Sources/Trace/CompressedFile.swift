/// A whole file as a trace stores it (format 6): what an exec loads (the
/// program, a `#!` interpreter, the ELF interpreter), compressed. The
/// SHA-256 naming it (`files/<sha256>`) is that of the file's own bytes,
/// not of this encoding, so what replay verifies is unchanged.
///
/// Encoding (all little-endian, layout in docs/trace-format.md):
///
///     magic "DRSF" (u32 0x46535244)
///     size  u64     bytes of the file, at most 2^36
///     one zstd frame decompressing to exactly `size` bytes (absent when 0)
///
/// The bytes are untrusted: `decode` checks `size` against what the
/// frame can expand to before it allocates, and never traps.
public enum CompressedFile {
    static let magic: UInt32 = 0x4653_5244    // "DRSF"
    static let headerSize = 4 + 8
    /// Most bytes one stored file may hold (64 GiB), as for a stored range.
    public static let maxSize: UInt64 = StoredRange.maxData

    /// Whether `bytes` start with the magic: in a format-6 trace, a stored
    /// object that does is a compressed file, and one that does not (a
    /// stored range, "DRSR") is its own content.
    public static func hasMagic(_ bytes: [UInt8]) -> Bool {
        bytes.count >= 4 && bytes.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(as: UInt32.self)) } == magic
    }

    /// The encoded object.
    public static func encode(_ contents: [UInt8]) throws(TraceError) -> [UInt8] {
        guard UInt64(contents.count) <= maxSize else {
            throw .invalidInput(reason: "a file of \(contents.count) bytes exceeds the \(maxSize) a trace may store")
        }
        var head: [UInt8] = []
        head.reserveCapacity(headerSize)
        withUnsafeBytes(of: magic.littleEndian) { head.append(contentsOf: $0) }
        withUnsafeBytes(of: UInt64(contents.count).littleEndian) { head.append(contentsOf: $0) }
        return try Zstd.storedObject(head: head, data: contents, what: "file")
    }

    /// The file's bytes from an object `encode` wrote; anything else is an
    /// error (`invalidInput`, "compressed file: …") naming what is wrong.
    public static func decode(_ bytes: [UInt8]) throws(TraceError) -> [UInt8] {
        func bad(_ reason: String) -> TraceError { .invalidInput(reason: "compressed file: \(reason)") }
        guard bytes.count >= headerSize else { throw bad("\(bytes.count) bytes are too few") }
        guard hasMagic(bytes) else { throw bad("bad magic") }
        let size = bytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: 4, as: UInt64.self)) }
        guard size <= maxSize else { throw bad("\(size) bytes exceed \(maxSize)") }
        return try Zstd.storedFrame(bytes[headerSize...], size: size, what: "file", bad)
    }
}
