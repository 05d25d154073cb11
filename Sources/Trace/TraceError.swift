/// Everything that can go wrong reading or writing a trace. Every case renders as a
/// one-line message for users (`description`); the associated values let callers and
/// tests tell the cases apart without parsing text.
public enum TraceError: Error, Equatable, CustomStringConvertible, Sendable {
    /// `path` does not exist or is not a directory.
    case notATrace(path: String, reason: String)
    /// The directory exists but has no header.json.
    case missingHeader(path: String)
    /// header.json exists but cannot be read or decoded.
    case corruptHeader(path: String, reason: String)
    /// header.json decodes but its contents do not match its checksum: it was
    /// edited or damaged after the recording.
    case headerChecksumMismatch(path: String)
    /// The trace was written by a newer detrec (format version `found` > `supported`).
    case newerVersion(found: UInt32, supported: UInt32)
    /// The trace has a header.json but no events file.
    case missingEvents(path: String)
    /// Block number `index` (0-based) starting at byte `offset` of the events file is damaged.
    case corruptBlock(index: Int, offset: UInt64, reason: String)
    /// A block decoded fine but holds an event kind this version does not know.
    case unknownEventKind(kind: UInt8, blockIndex: Int, offset: UInt64)
    /// files/<sha256> is not in the trace.
    case missingStoredFile(sha256: String)
    /// files/<sha256> exists but its contents do not hash to its name.
    case storedFileMismatch(sha256: String)
    /// files/<sha256> is a compressed file (format 6) that does not decode.
    case corruptStoredFile(sha256: String, reason: String)
    /// A system call on `path` failed; `message` is strerror(errno).
    case io(path: String, message: String)
    /// TraceWriter refuses to write into a directory that already has files in it.
    case directoryNotEmpty(path: String)
    /// append/flush after finish().
    case writerFinished(path: String)
    /// The caller handed the writer something the format cannot represent
    /// (e.g. not exactly 6 syscall args, a malformed sha256, an oversized event).
    case invalidInput(reason: String)

    public var description: String {
        switch self {
        case let .notATrace(path, reason):
            return "\(path) is not a detrec trace: \(reason)"
        case let .missingHeader(path):
            return "\(path) has no header.json: not a detrec trace, or the recording never started"
        case let .corruptHeader(path, reason):
            return "\(path)/header.json is unreadable: \(reason)"
        case let .headerChecksumMismatch(path):
            return "\(path)/header.json does not match its checksum: it was edited or damaged after the recording, and replaying it would not reproduce the recording"
        case let .newerVersion(found, supported):
            return "trace format version \(found) was written by a newer detrec; this detrec reads versions up to \(supported)"
        case let .missingEvents(path):
            return "\(path) has a header.json but no events file"
        case let .corruptBlock(index, offset, reason):
            return "corrupt trace: block \(index) at byte offset \(offset) of the events file: \(reason)"
        case let .unknownEventKind(kind, blockIndex, offset):
            return "unknown event kind 0x\(String(kind, radix: 16)) in block \(blockIndex) at byte offset \(offset): written by a newer detrec?"
        case let .missingStoredFile(sha256):
            return "stored file \(sha256) is missing from the trace's files/ directory"
        case let .storedFileMismatch(sha256):
            return "stored file \(sha256) is corrupt: its contents do not match its SHA-256"
        case let .corruptStoredFile(sha256, reason):
            return "stored file \(sha256) is corrupt: \(reason)"
        case let .io(path, message):
            return "\(path): \(message)"
        case let .directoryNotEmpty(path):
            return "refusing to record into \(path): the directory exists and is not empty"
        case let .writerFinished(path):
            return "trace \(path) is already finished; no more events can be written"
        case let .invalidInput(reason):
            return reason
        }
    }
}
