import Glibc
import Kernel
import Trace

/// The ranges of host files that file-backed mappings are filled with, as
/// the trace stores them (`StoredRange`: the data extents, compressed):
/// read, compressed and hashed once per host identity (as
/// `FileContentCache`) and range. A mapping's range is the part of the file
/// it shows, clipped to the file's end, except for an ELF file, which is
/// kept whole (from offset 0 to its end) so that its sections say where its
/// code lies, and its segments, each a mapping, share one stored copy.
///
/// Bounded, least recently used first out (the trace holds them already).
struct FileRangeCache {
    static let entryLimit = 64
    static let byteLimit = 512 << 20

    private struct Key: Equatable {
        var identity: HostFile.Identity
        var base: UInt64, size: UInt64
    }
    private var entries: [(key: Key, range: FileRange)] = []
    private var bytes = 0

    /// The range of the regular file open on `fd` that covers its bytes
    /// [offset, offset + length) it has, or nil when it ends at or before
    /// `offset`.
    mutating func range(of fd: Int32, offset: UInt64, length: UInt64) throws(Errno) -> FileRange? {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw Errno(errno) }
        guard st.st_mode & S_IFMT == S_IFREG else { throw .nodev }
        let fileSize = UInt64(max(st.st_size, 0))
        guard offset < fileSize, length > 0 else { return nil }
        let (base, size) = Self.isELF(fd) ? (0, fileSize) : (offset, min(length, fileSize - offset))
        let identity = HostFile.Identity(st)
        let key = Key(identity: identity, base: base, size: size)
        if let i = entries.firstIndex(where: { $0.key == key }) {
            let entry = entries.remove(at: i)
            entries.append(entry)
            return entry.range
        }
        // More data than a stored range may hold is ENOMEM (it would not fit in detrec's memory either).
        let read = try HostFile.dataExtents(fd, from: base, count: size, maxData: StoredRange.maxData)
        // The file may have shrunk meanwhile.
        guard base + read.size > offset else { return nil }
        var range = FileRange(sha256: "", base: base, size: read.size, extents: read.extents, data: read.data)
        do { range.stored = try Self.encode(range) } catch { throw .nomem }
        range.sha256 = SHA256.hex(range.stored)
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        if !identity.isRecent(now: now), read.size == size, read.data.count <= Self.byteLimit {
            // The trace has it once this mapping is logged: the cache keeps only what fills memory.
            var kept = range
            kept.stored = []
            entries.append((key, kept))
            bytes += kept.data.count
            while entries.count > Self.entryLimit || bytes > Self.byteLimit, !entries.isEmpty {
                bytes -= entries.removeFirst().range.data.count
            }
        }
        return range
    }

    /// The range as the trace stores it (`StoredRange`).
    static func encode(_ range: FileRange) throws(TraceError) -> [UInt8] {
        try StoredRange(base: range.base, size: range.size,
                        extents: range.extents.map { StoredRange.Extent(start: $0.start, length: $0.length) },
                        data: range.data).encode()
    }

    /// Whether the file starts as an ELF file does.
    static func isELF(_ fd: Int32) -> Bool {
        var magic = [UInt8](repeating: 0, count: 4)
        let n = magic.withUnsafeMutableBytes { b in b.baseAddress.map { pread(fd, $0, 4, 0) } ?? 0 }
        return n == 4 && magic == [0x7f, 0x45, 0x4c, 0x46]
    }
}
