import Glibc

/// Whole host files that detrec reads for itself (the program it records,
/// an interpreter, the content of a file the guest maps).
public enum HostFile {
    /// Everything in `fd` from offset 0, without moving its file offset.
    public static func readAll(_ fd: Int32) throws(Errno) -> [UInt8] {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw Errno(errno) }
        var bytes = [UInt8](repeating: 0, count: max(0, Int(st.st_size)))
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeMutableBytes { b in pread(fd, b.baseAddress.map { $0 + done }, b.count - done, done) }
            if n < 0 { throw Errno(errno) }
            if n == 0 { break }
            done += n
        }
        bytes.removeLast(bytes.count - done)
        return bytes
    }
}
