import CZstd

/// The fixed 40-byte little-endian header in front of every block of the events file.
///
///     off size field
///       0   4  magic "DRBK"
///       4   4  format version (== header.json formatVersion)
///       8   8  index of the first event in the block (== events in all earlier blocks)
///      16   4  event count
///      20   4  block kind (0 = events, 1 = end marker)
///      24   4  uncompressed payload length
///      28   4  compressed payload length (bytes that follow this header)
///      32   4  CRC-32C of bytes 0..<32 followed by the compressed payload
///      36   4  CRC-32C of bytes 0..<36 (lets a damaged length be told apart from a cut-off file)
struct BlockHeader: Equatable {
    static let size = 40
    /// "DRBK" in file order.
    static let magic: UInt32 = 0x4B42_5244

    enum Kind: UInt32 {
        case events = 0
        case end = 1
    }

    /// Largest payload of a block holding more than one event. The writer keeps multi-event
    /// blocks under 2 × blockLimit ≤ this.
    static let maxMultiEventPayload = 64 << 20
    /// Largest payload of a block holding a single event: one event may carry up to
    /// `EventEncoding.maxEventDataBytes` of memory contents plus its framing.
    static let maxSingleEventPayload = EventEncoding.maxEventDataBytes + (64 << 20)
    /// Largest blockLimit the writer accepts, so that multi-event blocks stay under the cap.
    static let maxBlockLimit = maxMultiEventPayload / 2

    var magic: UInt32 = BlockHeader.magic
    var version: UInt32
    var firstEvent: UInt64
    var eventCount: UInt32
    var kind: UInt32
    var uncompressedLength: UInt32
    var compressedLength: UInt32
    var crc: UInt32 = 0
    var headerCRC: UInt32 = 0

    /// The 40 bytes as written.
    var bytes: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(Self.size)
        func put<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        put(magic); put(version); put(firstEvent); put(eventCount); put(kind)
        put(uncompressedLength); put(compressedLength); put(crc); put(headerCRC)
        return out
    }

    /// Reads the fields of a 40-byte buffer; checks nothing.
    init(parsing raw: UnsafeRawBufferPointer) {
        func get<T: FixedWidthInteger>(_ off: Int, _: T.Type) -> T {
            T(littleEndian: raw.loadUnaligned(fromByteOffset: off, as: T.self))
        }
        magic = get(0, UInt32.self)
        version = get(4, UInt32.self)
        firstEvent = get(8, UInt64.self)
        eventCount = get(16, UInt32.self)
        kind = get(20, UInt32.self)
        uncompressedLength = get(24, UInt32.self)
        compressedLength = get(28, UInt32.self)
        crc = get(32, UInt32.self)
        headerCRC = get(36, UInt32.self)
    }

    init(version: UInt32, firstEvent: UInt64, eventCount: UInt32, kind: Kind,
         uncompressedLength: UInt32, compressedLength: UInt32) {
        self.version = version
        self.firstEvent = firstEvent
        self.eventCount = eventCount
        self.kind = kind.rawValue
        self.uncompressedLength = uncompressedLength
        self.compressedLength = compressedLength
    }

    /// CRC-32C of the first 32 header bytes followed by `payload`.
    func computeCRC(payload: UnsafeRawBufferPointer) -> UInt32 {
        let head = bytes
        let seed = head.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[0..<32])) }
        return CRC32C.checksum(payload, seed: seed)
    }

    func computeHeaderCRC() -> UInt32 {
        bytes.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[0..<36])) }
    }
}

/// Turns payloads into complete blocks (header + zstd frame) ready for a single write(2).
enum BlockFraming {
    /// Compresses `payload` and frames it as an events block holding `eventCount` events.
    static func eventsBlock(payload: UnsafeRawBufferPointer, firstEvent: UInt64, eventCount: Int,
                            version: UInt32 = traceFormatVersion,
                            compressor: Zstd.Compressor = Zstd.Compressor()) throws(TraceError) -> [UInt8] {
        guard eventCount > 0, eventCount <= Int(UInt32.max),
              payload.count <= BlockHeader.maxSingleEventPayload,
              eventCount == 1 || payload.count <= BlockHeader.maxMultiEventPayload
        else {
            throw .invalidInput(reason: "block of \(eventCount) events and \(payload.count) bytes exceeds the format's limits")
        }
        var out = [UInt8](repeating: 0, count: BlockHeader.size)
        out.reserveCapacity(BlockHeader.size + ZSTD_compressBound(payload.count))
        let compressed: Int
        do {
            compressed = try compressor.compress(payload, appendingTo: &out)
        } catch {
            throw .invalidInput(reason: "zstd compression failed: \(error.message)")
        }
        var header = BlockHeader(version: version, firstEvent: firstEvent, eventCount: UInt32(eventCount),
                                 kind: .events, uncompressedLength: UInt32(payload.count),
                                 compressedLength: UInt32(compressed))
        out.withUnsafeBytes { all in
            header.crc = header.computeCRC(payload: UnsafeRawBufferPointer(rebasing: all[BlockHeader.size...]))
        }
        header.headerCRC = header.computeHeaderCRC()
        out.replaceSubrange(0..<BlockHeader.size, with: header.bytes)
        return out
    }

    /// The end marker: a header-only block saying the recording finished after `eventCount` events.
    static func endBlock(eventCount: UInt64, version: UInt32 = traceFormatVersion) -> [UInt8] {
        var header = BlockHeader(version: version, firstEvent: eventCount, eventCount: 0, kind: .end,
                                 uncompressedLength: 0, compressedLength: 0)
        header.crc = header.computeCRC(payload: UnsafeRawBufferPointer(start: nil, count: 0))
        header.headerCRC = header.computeHeaderCRC()
        return header.bytes
    }
}
