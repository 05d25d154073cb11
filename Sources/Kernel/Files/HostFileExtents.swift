import Glibc

extension HostFile {
    /// lseek's whences for the next data and the next hole (Linux 3.1).
    static let seekData: Int32 = 3, seekHole: Int32 = 4

    /// The data of the regular file open on `fd` in [from, from + count):
    /// its data extents (lseek SEEK_DATA and SEEK_HOLE), relative to
    /// `from`, and their bytes one after the other, read with pread. The
    /// holes between them are not read: they are zeros. Where the file
    /// system cannot tell (EINVAL), all of it is data. The file offset is
    /// put back where it was. `size` is how much of the range the file
    /// still had: less than `count` when it shrank meanwhile.
    public static func dataExtents(_ fd: Int32, from: UInt64, count: UInt64) throws(Errno) -> (size: UInt64, extents: [FileRange.Extent], data: [UInt8]) {
        let limit = UInt64(Int64.max)
        guard from <= limit, count <= limit - from else { throw .inval }
        let saved = lseek(fd, 0, SEEK_CUR)
        defer { if saved >= 0 { _ = lseek(fd, saved, SEEK_SET) } }
        let end = from + count
        var extents: [FileRange.Extent] = []
        var data: [UInt8] = []
        var pos = from
        while pos < end {
            var start = UInt64(pos), stop = end
            let d = lseek(fd, off_t(pos), HostFile.seekData)
            if d < 0 {
                let e = errno
                if e == ENXIO { break }     // only a hole up to the end of the file
                guard e == EINVAL else { throw Errno(e) }
            } else {
                start = UInt64(d)
                guard start < end else { break }
                let h = lseek(fd, d, HostFile.seekHole)
                if h > d { stop = min(end, UInt64(h)) }
            }
            let wanted = Int(stop - start)
            let at = data.count
            data.append(contentsOf: repeatElement(0, count: wanted))
            var got = 0
            while got < wanted {
                let n = data.withUnsafeMutableBytes { b in
                    b.baseAddress.map { pread(fd, $0 + at + got, wanted - got, off_t(start) + off_t(got)) } ?? 0
                }
                if n < 0, errno == EINTR { continue }
                if n < 0 { throw Errno(errno) }
                if n == 0 { break }
                got += n
            }
            if got > 0 { extents.append(FileRange.Extent(start: start - from, length: UInt64(got))) }
            if got < wanted {
                // The file ends here now.
                data.removeLast(wanted - got)
                return (start + UInt64(got) - from, extents, data)
            }
            pos = stop
        }
        return (count, extents, data)
    }
}
