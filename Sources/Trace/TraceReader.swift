#if canImport(Glibc)
import Glibc
#endif

/// How the event stream ended.
public enum TraceEnding: Equatable, Sendable {
    /// The end marker was read: the recording finished cleanly.
    case complete
    /// No end marker: the recording was interrupted (e.g. the recorder was killed).
    /// `afterEvent` events were read, all intact; `byteOffset` is where the events file stops
    /// holding complete blocks (anything from there on is an incomplete block).
    case truncated(afterEvent: Int, byteOffset: UInt64)
}

/// Reads a trace directory. Blocks are read lazily, one at a time, so memory use is bounded by
/// the largest block, not the trace. Not thread-safe.
public final class TraceReader {
    public let directory: String
    public let header: TraceHeader
    private let eventsPath: String
    private let fd: Int32
    private let decompressor = Zstd.Decompressor()

    /// Set once next() has returned nil.
    public private(set) var ending: TraceEnding?

    private var pending: [Event] = []     // decoded events of the current block
    private var pendingPos = 0
    private var returned = 0              // events handed out by next()
    private var decoded = 0               // events in all blocks read so far
    private var offset: UInt64 = 0        // start of the next block in the events file
    private var blockIndex = 0            // index of the next block
    private var failure: TraceError?      // sticky: a corrupt trace stays corrupt
    private var verifiedFiles: Set<String> = []

    /// Index of the event the next call to next() returns.
    public var nextEventIndex: Int { returned }

    /// Validates header.json and the events file's existence; reads no events yet.
    public init(directory: String) throws(TraceError) {
        switch FileIO.kind(of: directory) {
        case .missing: throw .notATrace(path: directory, reason: "no such directory")
        case .other: throw .notATrace(path: directory, reason: "not a directory")
        case .directory: break
        }
        let headerPath = directory + "/header.json"
        guard FileIO.kind(of: headerPath) != .missing else { throw .missingHeader(path: directory) }
        let json: [UInt8]
        do {
            json = try FileIO.readFile(headerPath, maxSize: HeaderJSON.maxSize)
        } catch {
            if case let .io(_, message) = error { throw .corruptHeader(path: directory, reason: message) }
            throw error
        }
        header = try HeaderJSON.decode(json, path: directory)
        self.directory = directory
        eventsPath = directory + "/events"
        guard FileIO.kind(of: eventsPath) == .other else { throw .missingEvents(path: directory) }
        fd = try FileIO.open(eventsPath, O_RDONLY)
    }

    deinit { close(fd) }

    /// The next event, or nil at the end of the stream (then `ending` is set).
    /// Throws on a damaged block, and keeps throwing the same error afterwards.
    public func next() throws(TraceError) -> Event? {
        while true {
            if pendingPos < pending.count {
                let event = pending[pendingPos]
                pendingPos += 1
                returned += 1
                if pendingPos == pending.count { pending = []; pendingPos = 0 }
                return event
            }
            if ending != nil { return nil }
            if let failure { throw failure }
            do {
                try readBlock()
            } catch {
                failure = error
                throw error
            }
        }
    }

    /// All remaining events (convenient for tests and small traces; replay should use next()).
    public func readAll() throws(TraceError) -> [Event] {
        var events: [Event] = []
        while let e = try next() { events.append(e) }
        return events
    }

    /// Contents of files/<sha256>, verified against its hash: from format 6
    /// an object that starts with "DRSF" is a compressed file, decompressed
    /// here (`corruptStoredFile` when it does not decode); any other object
    /// (a stored range, any file of an older trace) is its own content.
    public func storedFile(sha256: String) throws(TraceError) -> [UInt8] {
        guard SHA256.isValidHex(sha256) else {
            throw .invalidInput(reason: "\"\(sha256)\" is not a lowercase hex SHA-256")
        }
        let path = directory + "/files/" + sha256
        guard FileIO.kind(of: path) == .other else { throw .missingStoredFile(sha256: sha256) }
        var contents = try FileIO.readFile(path)
        if header.formatVersion >= 6, CompressedFile.hasMagic(contents) {
            do {
                contents = try CompressedFile.decode(contents)
            } catch {
                guard case let .invalidInput(reason) = error else { throw error }
                throw .corruptStoredFile(sha256: sha256, reason: reason)
            }
        }
        if !verifiedFiles.contains(sha256) {
            guard SHA256.hex(contents) == sha256 else { throw .storedFileMismatch(sha256: sha256) }
            verifiedFiles.insert(sha256)
        }
        return contents
    }

    // MARK: Blocks

    private func corrupt(_ reason: String) -> TraceError {
        .corruptBlock(index: blockIndex, offset: offset, reason: reason)
    }

    /// Reads the block at `offset`: fills `pending`, or sets `ending`, or throws.
    private func readBlock() throws(TraceError) {
        let fileSize = try FileIO.size(of: fd, path: eventsPath)
        let available = fileSize > offset ? fileSize - offset : 0
        guard available >= UInt64(BlockHeader.size) else {
            // Nothing, or only part of a block header, after the last complete block.
            ending = .truncated(afterEvent: decoded, byteOffset: offset)
            return
        }
        var raw = [UInt8](repeating: 0, count: BlockHeader.size)
        let got = try raw.withUnsafeMutableBytes { buf in
            Result { () throws(TraceError) in try FileIO.readFully(fd, into: buf, at: offset, path: eventsPath) }
        }.get()
        guard got == BlockHeader.size else {
            ending = .truncated(afterEvent: decoded, byteOffset: offset)
            return
        }
        let h = raw.withUnsafeBytes { BlockHeader(parsing: $0) }

        // Header checks come before the "is the payload all there?" check, so a damaged
        // length field is reported as corruption rather than mistaken for truncation.
        guard h.magic == BlockHeader.magic else {
            throw corrupt("bad magic 0x\(String(h.magic, radix: 16)) (expected \"DRBK\")")
        }
        guard h.headerCRC == h.computeHeaderCRC() else { throw corrupt("block header checksum mismatch") }
        guard h.version == header.formatVersion else {
            throw corrupt("block format version \(h.version) differs from header.json's \(header.formatVersion)")
        }
        guard let kind = BlockHeader.Kind(rawValue: h.kind) else { throw corrupt("unknown block kind \(h.kind)") }
        guard h.firstEvent == UInt64(decoded) else {
            throw corrupt("block starts at event \(h.firstEvent), expected \(decoded)")
        }

        switch kind {
        case .end:
            guard h.eventCount == 0, h.uncompressedLength == 0, h.compressedLength == 0 else {
                throw corrupt("end marker with a payload")
            }
            guard h.crc == h.computeCRC(payload: UnsafeRawBufferPointer(start: nil, count: 0)) else {
                throw corrupt("checksum mismatch")
            }
            let extra = available - UInt64(BlockHeader.size)
            guard extra == 0 else { throw corrupt("\(extra) bytes follow the end marker") }
            offset += UInt64(BlockHeader.size)
            blockIndex += 1
            ending = .complete

        case .events:
            let count = Int(h.eventCount)
            let uncompressed = Int(h.uncompressedLength)
            let compressed = Int(h.compressedLength)
            let cap = count == 1 ? BlockHeader.maxSingleEventPayload : BlockHeader.maxMultiEventPayload
            guard count >= 1 else { throw corrupt("events block with no events") }
            guard uncompressed >= count else {
                throw corrupt("\(count) events cannot fit in \(uncompressed) bytes")
            }
            guard uncompressed <= cap else {
                throw corrupt("payload length \(uncompressed) exceeds the \(cap)-byte limit")
            }
            guard compressed >= 1, compressed <= Zstd.compressBound(uncompressed) else {
                throw corrupt("compressed length \(compressed) impossible for \(uncompressed) bytes")
            }
            guard available - UInt64(BlockHeader.size) >= UInt64(compressed) else {
                // The writer was stopped in the middle of this block.
                ending = .truncated(afterEvent: decoded, byteOffset: offset)
                return
            }
            // Only now allocate: `compressed` is capped and known to be present in the file.
            var body = [UInt8](repeating: 0, count: compressed)
            let bodyOffset = offset + UInt64(BlockHeader.size)
            let bodyGot = try body.withUnsafeMutableBytes { buf in
                Result { () throws(TraceError) in
                    try FileIO.readFully(fd, into: buf, at: bodyOffset, path: eventsPath)
                }
            }.get()
            guard bodyGot == compressed else {
                ending = .truncated(afterEvent: decoded, byteOffset: offset)
                return
            }
            let crcOK = body.withUnsafeBytes { h.crc == h.computeCRC(payload: $0) }
            guard crcOK else { throw corrupt("checksum mismatch") }
            let payload: [UInt8]
            do {
                payload = try body.withUnsafeBytes { buf in
                    Result { () throws(Zstd.Failure) in try decompressor.decompress(buf, expectedSize: uncompressed) }
                }.get()
            } catch {
                throw corrupt("zstd: \(error.message)")
            }
            body = []
            let events: [Event]
            do {
                events = try payload.withUnsafeBytes { buf in
                    Result { () throws(EventEncoding.DecodingError) in try EventEncoding.decode(buf, count: count, version: header.formatVersion) }
                }.get()
            } catch {
                switch error.problem {
                case let .unknownKind(k):
                    throw .unknownEventKind(kind: k, blockIndex: blockIndex, offset: offset)
                case let .malformed(reason):
                    throw corrupt("\(reason) (payload offset \(error.payloadOffset))")
                }
            }
            pending = events
            pendingPos = 0
            decoded += count
            offset += UInt64(BlockHeader.size + compressed)
            blockIndex += 1
        }
    }
}
