import Glibc

/// Whole host files that detrec reads for itself (the program it records,
/// an interpreter, the content of a file the guest maps).
public enum HostFile {
    /// Everything in `fd` from offset 0 to its end, without moving its
    /// file offset. st_size is only where to start: /proc files say 0 and
    /// a file may grow meanwhile, so it reads until pread finds the end.
    public static func readAll(_ fd: Int32) throws(Errno) -> [UInt8] {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw Errno(errno) }
        var bytes = [UInt8](repeating: 0, count: max(4096, Int(st.st_size) + 1))
        var done = 0
        while true {
            if done == bytes.count { bytes += [UInt8](repeating: 0, count: bytes.count) }
            let n = bytes.withUnsafeMutableBytes { b in pread(fd, b.baseAddress.map { $0 + done }, b.count - done, done) }
            if n < 0, errno == EINTR { continue }
            if n < 0 { throw Errno(errno) }
            if n == 0 { break }
            done += n
        }
        bytes.removeLast(bytes.count - done)
        return bytes
    }

    /// Which version of a host file some bytes are: its device, inode,
    /// size and modification and change times. A file written again gets
    /// a new one (its ctime moves on, whatever is done to its mtime).
    public struct Identity: Hashable, Sendable {
        var device: UInt64, inode: UInt64, size: Int64
        var modified: timespec, changed: timespec

        public init(_ st: stat) {
            device = UInt64(st.st_dev)
            inode = UInt64(st.st_ino)
            size = Int64(st.st_size)
            modified = st.st_mtim
            changed = st.st_ctim
        }

        /// Whether a file with this identity may still change without
        /// getting a new one: its ctime is within the coarse clock's
        /// granularity of `now` (a write in the same tick keeps it), as
        /// git's "racily clean" entries. Such a file is hashed every time.
        public func isRecent(now: timespec) -> Bool {
            Int64(now.tv_sec) - Int64(changed.tv_sec) < 2
        }

        public static func == (a: Identity, b: Identity) -> Bool {
            a.device == b.device && a.inode == b.inode && a.size == b.size
                && a.modified.tv_sec == b.modified.tv_sec && a.modified.tv_nsec == b.modified.tv_nsec
                && a.changed.tv_sec == b.changed.tv_sec && a.changed.tv_nsec == b.changed.tv_nsec
        }

        public func hash(into h: inout Hasher) {
            h.combine(device); h.combine(inode); h.combine(size)
            h.combine(modified.tv_sec); h.combine(modified.tv_nsec)
            h.combine(changed.tv_sec); h.combine(changed.tv_nsec)
        }
    }

    /// The identity of the file open on `fd`.
    public static func identity(_ fd: Int32) throws(Errno) -> Identity {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw Errno(errno) }
        return Identity(st)
    }
}
