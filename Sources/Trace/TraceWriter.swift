#if canImport(Glibc)
import Glibc
#endif

/// Writes a trace directory. Events are encoded into an in-memory buffer and written as one
/// complete block per write(2), so a recorder killed at any instant leaves only whole blocks
/// plus at most one partial block at the end, which the reader reports as truncation.
/// Not thread-safe: one recorder thread owns it.
public final class TraceWriter {
    public let directory: String
    private let eventsPath: String
    private let fd: Int32
    private let blockLimit: Int
    private let compressor = Zstd.Compressor()

    private var buffer: [UInt8] = []
    private var bufferedEvents = 0
    private var finished = false
    /// Names of the objects in files/ (only this writer writes there).
    private var stored: Set<String> = []
    /// Bytes of the events file known to hold complete blocks; a failed write is cut back to it.
    private var eventsBytes: UInt64 = 0

    public private(set) var eventCount = 0
    /// Bytes in the trace directory written so far (header, complete blocks, stored files).
    public private(set) var totalBytes: UInt64 = 0

    /// Creates `directory` (and parents); refuses if it exists and is not empty. Writes
    /// header.json, creates files/ and an empty events file.
    /// `blockLimit` (clamped to 1...32 MiB) is the buffered size that triggers writing a block.
    public init(directory: String, header: TraceHeader, blockLimit: Int = 256 * 1024) throws(TraceError) {
        guard header.formatVersion == traceFormatVersion else {
            throw .invalidInput(reason: "header says format version \(header.formatVersion), this writer writes \(traceFormatVersion)")
        }
        switch FileIO.kind(of: directory) {
        case .other:
            throw .io(path: directory, message: "exists and is not a directory")
        case .directory:
            guard try FileIO.isEmptyDirectory(directory) else { throw .directoryNotEmpty(path: directory) }
        case .missing:
            try FileIO.makeDirectories(directory)
        }
        self.directory = directory
        self.eventsPath = directory + "/events"
        self.blockLimit = min(max(blockLimit, 1), BlockHeader.maxBlockLimit)

        let json: [UInt8]
        do {
            json = try HeaderJSON.encode(header, pretty: true) + [0x0A]
        } catch {
            throw .invalidInput(reason: "cannot encode the header as JSON: \(error)")
        }
        try FileIO.writeFileAtomically(directory + "/header.json", json)
        totalBytes = UInt64(json.count)
        try FileIO.makeDirectories(directory + "/files")
        fd = try FileIO.open(eventsPath, O_WRONLY | O_CREAT | O_EXCL | O_APPEND)
        buffer.reserveCapacity(self.blockLimit + self.blockLimit / 4)
    }

    deinit {
        // A writer dropped without finish() is an interrupted recording: keep what was
        // buffered (best effort) but write no end marker.
        if !finished {
            try? flush()
            close(fd)
        }
    }

    /// Stores the whole file `contents` as files/<sha256>, compressed
    /// (`CompressedFile`, format 6), unless already there; returns the
    /// sha256 hex of `contents`.
    @discardableResult
    public func storeFile(_ contents: [UInt8]) throws(TraceError) -> String {
        let hex = SHA256.hex(contents)
        try storeFile(contents, sha256: hex)
        return hex
    }

    /// Stores a whole file whose SHA-256 (`hex`) the caller has just
    /// computed, without hashing it a second time (a 30 MB compiler exec'd
    /// once); compressed, the name still that of `contents`.
    public func storeFile(_ contents: [UInt8], sha256 hex: String) throws(TraceError) {
        guard !stored.contains(hex) else { return }
        try storeObject(try CompressedFile.encode(contents), named: hex)
    }

    /// Stores a stored range's encoding (`StoredRange.encode`, compressed
    /// already) as it is, named by `hex`, the SHA-256 of `encoded`.
    public func storeRange(_ encoded: [UInt8], sha256 hex: String) throws(TraceError) {
        guard !stored.contains(hex) else { return }
        guard !CompressedFile.hasMagic(encoded) else {
            throw .invalidInput(reason: "a stored range cannot start as a compressed file does")
        }
        try storeObject(encoded, named: hex)
    }

    private func storeObject(_ bytes: [UInt8], named hex: String) throws(TraceError) {
        guard SHA256.isValidHex(hex) else { throw .invalidInput(reason: "\"\(hex)\" is not a lowercase hex SHA-256") }
        try FileIO.writeFileAtomically(directory + "/files/" + hex, bytes)
        stored.insert(hex)
        totalBytes += UInt64(bytes.count)
    }

    /// Reads the file at `path` and stores it; returns its description for the header or
    /// for `.stored` memory writes.
    public func storeFile(atPath path: String) throws(TraceError) -> StoredFile {
        let contents = try FileIO.readFile(path)
        let hex = try storeFile(contents)
        return StoredFile(path: path, sha256: hex, size: UInt64(contents.count))
    }

    /// Buffers the event; writes a block by itself when the buffered encoding reaches blockLimit.
    public func append(_ event: Event) throws(TraceError) {
        guard !finished else { throw .writerFinished(path: directory) }
        let start = buffer.count
        try EventEncoding.encode(event, into: &buffer)
        let size = buffer.count - start
        guard size <= BlockHeader.maxSingleEventPayload else {
            buffer.removeSubrange(start...)
            throw .invalidInput(reason: "event of \(size) encoded bytes exceeds the \(BlockHeader.maxSingleEventPayload)-byte limit")
        }
        eventCount += 1
        bufferedEvents += 1
        if size >= blockLimit && bufferedEvents > 1 {
            // A big event gets a block of its own, which keeps multi-event blocks under
            // 2 × blockLimit and so under the reader's cap.
            try writeBlock(0..<start, events: bufferedEvents - 1)
            try flush()
        } else if buffer.count >= blockLimit {
            try flush()
        }
    }

    /// Writes the buffered events as one complete block (no-op when empty).
    public func flush() throws(TraceError) {
        guard bufferedEvents > 0 else { return }
        try writeBlock(0..<buffer.count, events: bufferedEvents)
    }

    /// Flushes and writes the end marker; later appends throw. Calling it again does nothing.
    public func finish() throws(TraceError) {
        guard !finished else { return }
        try flush()
        let end = BlockFraming.endBlock(eventCount: UInt64(eventCount))
        try writeToEvents(end)
        // The end marker claims the recording is whole: make that true on disk too.
        _ = fsync(fd)
        close(fd)
        finished = true
    }

    /// Frames buffer[range] (the first `events` buffered events) as a block, writes it, and
    /// drops those bytes from the buffer.
    private func writeBlock(_ range: Range<Int>, events: Int) throws(TraceError) {
        let first = UInt64(eventCount - bufferedEvents)
        let block = try buffer.withUnsafeBytes { all in
            Result { () throws(TraceError) in
                try BlockFraming.eventsBlock(payload: UnsafeRawBufferPointer(rebasing: all[range]),
                                             firstEvent: first, eventCount: events, compressor: compressor)
            }
        }.get()
        try writeToEvents(block)
        bufferedEvents -= events
        if range.upperBound == buffer.count && range.lowerBound == 0 {
            if buffer.capacity > 4 * blockLimit {
                // Don't keep a huge event's capacity around for the rest of the recording.
                buffer = []
                buffer.reserveCapacity(blockLimit + blockLimit / 4)
            } else {
                buffer.removeAll(keepingCapacity: true)
            }
        } else {
            buffer.removeSubrange(range)
        }
    }

    private func writeToEvents(_ bytes: [UInt8]) throws(TraceError) {
        do {
            try bytes.withUnsafeBytes { buf in
                Result { () throws(TraceError) in try FileIO.writeAll(fd, buf, path: eventsPath) }
            }.get()
        } catch {
            // A short write (e.g. disk full) would leave a partial block that later blocks
            // would land behind; cut it off so the file stays a sequence of whole blocks.
            _ = ftruncate(fd, off_t(eventsBytes))
            throw error
        }
        eventsBytes += UInt64(bytes.count)
        totalBytes += UInt64(bytes.count)
    }
}
