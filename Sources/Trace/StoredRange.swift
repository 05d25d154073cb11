/// A range of a file as a trace stores it for a mapping (format 5): the
/// data extents of the file's bytes [base, base + size), compressed, with
/// the holes between them left out (they read as zeros). A 4 GiB sparse
/// file with a few bytes written costs those bytes, not 4 GiB.
///
/// Encoding (`files/<sha256>`, the SHA-256 naming these bytes; all
/// little-endian, layout in docs/trace-format.md):
///
///     magic "DRSR" (u32 0x52535244)
///     base   u64     file offset of the range's first byte
///     size   u64     bytes in the range, holes included
///     count  u32     number of extents
///     count × (start u64, length u64)   relative to base; sorted, disjoint,
///                                       each length ≥ 1, start + length ≤ size
///     data   u64     sum of the extents' lengths
///     one zstd frame decompressing to exactly `data` bytes (absent when 0)
///
/// The bytes are untrusted: `decode` checks every field before it
/// allocates for it, and never traps.
public struct StoredRange: Equatable, Sendable {
    public struct Extent: Equatable, Sendable {
        /// Offset of the extent's first byte from `base`.
        public var start: UInt64
        public var length: UInt64
        public init(start: UInt64, length: UInt64) { self.start = start; self.length = length }
    }

    public var base: UInt64
    public var size: UInt64
    public var extents: [Extent]
    /// The extents' bytes, one after the other.
    public var data: [UInt8]

    static let magic: UInt32 = 0x5253_5244    // "DRSR"
    static let fixedSize = 4 + 8 + 8 + 4 + 8
    /// Most data bytes one range may hold (64 GiB): what a decoder may be
    /// made to allocate (`Zstd.storedFrame` bounds it by the frame's length too).
    public static let maxData: UInt64 = 1 << 36

    public init(base: UInt64, size: UInt64, extents: [Extent], data: [UInt8]) {
        self.base = base; self.size = size; self.extents = extents; self.data = data
    }

    /// Why these fields cannot be a stored range, or nil when they can.
    public var problem: String? {
        guard base <= UInt64.max - size else { return "range \(base)+\(size) overflows" }
        var end: UInt64 = 0
        var total: UInt64 = 0
        for (i, e) in extents.enumerated() {
            guard e.length >= 1 else { return "extent \(i) is empty" }
            guard e.start >= end, e.start <= size, e.length <= size - e.start else {
                return "extent \(i) (\(e.start)+\(e.length)) is out of order or outside the \(size)-byte range"
            }
            end = e.start + e.length
            total += e.length
        }
        guard total == UInt64(data.count) else { return "extents hold \(total) bytes, data has \(data.count)" }
        guard total <= Self.maxData else { return "\(total) data bytes exceed \(Self.maxData)" }
        return nil
    }

    /// The encoded object; throws for fields `problem` refuses.
    public func encode() throws(TraceError) -> [UInt8] {
        if let problem { throw .invalidInput(reason: "stored range not written: \(problem)") }
        var head: [UInt8] = []
        head.reserveCapacity(Self.fixedSize + 16 * extents.count)
        func put<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { head.append(contentsOf: $0) } }
        put(Self.magic)
        put(base)
        put(size)
        put(UInt32(extents.count))
        for e in extents { put(e.start); put(e.length) }
        put(UInt64(data.count))
        return try Zstd.storedObject(head: head, data: data, what: "range")
    }

    /// Decodes an object `encode` wrote; anything else is an error naming
    /// what is wrong.
    public static func decode(_ bytes: [UInt8]) throws(TraceError) -> StoredRange {
        func bad(_ reason: String) -> TraceError { .invalidInput(reason: "stored range: \(reason)") }
        guard bytes.count >= fixedSize else { throw bad("\(bytes.count) bytes are too few") }
        var pos = 0
        func load<T: FixedWidthInteger>(_: T.Type) -> T {
            let v = bytes.withUnsafeBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: pos, as: T.self)) }
            pos += MemoryLayout<T>.size
            return v
        }
        guard load(UInt32.self) == magic else { throw bad("bad magic") }
        let base = load(UInt64.self)
        let size = load(UInt64.self)
        let count = Int(load(UInt32.self))
        // Each extent takes 16 bytes of the object: checked before allocating.
        guard count <= (bytes.count - fixedSize) / 16 else { throw bad("\(count) extents cannot fit in \(bytes.count) bytes") }
        var extents: [Extent] = []
        extents.reserveCapacity(count)
        for _ in 0..<count {
            let start = load(UInt64.self)
            extents.append(Extent(start: start, length: load(UInt64.self)))
        }
        let total = load(UInt64.self)
        let frame = bytes[pos...]
        guard total <= maxData else { throw bad("\(total) data bytes exceed \(maxData)") }
        let data = try Zstd.storedFrame(frame, size: total, what: "range", bad)
        let range = StoredRange(base: base, size: size, extents: extents, data: data)
        if let problem = range.problem { throw bad(problem) }
        return range
    }
}
