import Glibc
import Kernel
import Trace

/// The whole contents of the host files a recording loads (exec's
/// programs, interpreters and scripts; mappings use `FileRangeCache`), read
/// and hashed once per host identity (device, inode, size, modification
/// and change times): a shell, make or a process pool loads the same
/// programs and libraries again and again. A file whose identity may
/// still change (`Identity.isRecent`) is read and hashed each time.
///
/// Bounded, least recently used first out: a link that maps thousands of
/// input files must not keep them all in detrec's memory (the trace holds
/// them already).
struct FileContentCache {
    static let entryLimit = 64
    static let byteLimit = 512 << 20

    private var entries: [(identity: HostFile.Identity, content: FileContent)] = []
    private var bytes = 0

    /// The content of the regular file open on `fd`, with its SHA-256.
    mutating func content(of fd: Int32) throws(Errno) -> FileContent {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw Errno(errno) }
        guard st.st_mode & S_IFMT == S_IFREG else { throw .nodev }
        let identity = HostFile.Identity(st)
        if let i = entries.firstIndex(where: { $0.identity == identity }) {
            let entry = entries.remove(at: i)
            entries.append(entry)
            return entry.content
        }
        let read = try HostFile.readAll(fd)
        let content = FileContent(sha256: SHA256.hex(read), bytes: read, identity: identity)
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        // readAll reads to the end, past st_size if the file grew: only a
        // content of the identity's size belongs to it.
        if !identity.isRecent(now: now), read.count == Int(st.st_size), read.count <= Self.byteLimit {
            entries.append((identity, content))
            bytes += read.count
            while entries.count > Self.entryLimit || bytes > Self.byteLimit, !entries.isEmpty {
                bytes -= entries.removeFirst().content.bytes.count
            }
        }
        return content
    }
}
