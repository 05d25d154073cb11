import Glibc

/// The bytes of the files exec loaded (programs, interpreters, scripts),
/// by host file identity, for a recording that execs the same ones again
/// (a shell, make, a process pool): exec then opens and checks the file
/// as before but does not read it again. A file whose identity may still
/// change (`Identity.isRecent`) is read each time. Recording only: replay
/// takes exec's files from the trace.
enum ExecutableCache {
    /// At most this many files are kept (the most recently loaded).
    static let limit = 8

    nonisolated(unsafe) private static var entries: [(identity: HostFile.Identity, bytes: [UInt8])] = []

    /// The whole content of `fd`, whose identity is `identity` and size `size` (its fstat).
    static func content(of fd: Int32, identity: HostFile.Identity, size: Int) throws(Errno) -> [UInt8] {
        if let i = entries.firstIndex(where: { $0.identity == identity }) {
            let entry = entries.remove(at: i)
            entries.append(entry)
            return entry.bytes
        }
        let bytes = try HostFile.readAll(fd)
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        // readAll reads to the end, past st_size if the file grew: keep only a content of the identity's size.
        if !identity.isRecent(now: now), bytes.count == size {
            entries.append((identity, bytes))
            if entries.count > limit { entries.removeFirst() }
        }
        return bytes
    }
}
