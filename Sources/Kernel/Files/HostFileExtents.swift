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
    /// still had: less than `count` when it shrank meanwhile. More than
    /// `maxData` bytes of data is ENOMEM, before anything is allocated.
    public static func dataExtents(_ fd: Int32, from: UInt64, count: UInt64, maxData: UInt64 = UInt64(Int.max)) throws(Errno) -> (size: UInt64, extents: [FileRange.Extent], data: [UInt8]) {
        let limit = UInt64(Int64.max)
        guard from <= limit, count <= limit - from else { throw .inval }
        let end = from + count
        // First where the data is, then one buffer for all of it.
        var extents: [FileRange.Extent] = []
        do {
            let saved = lseek(fd, 0, SEEK_CUR)
            defer { if saved >= 0 { _ = lseek(fd, saved, SEEK_SET) } }
            var pos = from
            while pos < end {
                let d = lseek(fd, off_t(pos), HostFile.seekData)
                if d < 0 {
                    let e = errno
                    if e == ENXIO { break }     // only a hole up to the end of the file
                    guard e == EINVAL else { throw Errno(e) }
                    extents.append(FileRange.Extent(start: pos - from, length: end - pos))
                    break
                }
                let start = UInt64(d)
                guard start < end else { break }
                let h = lseek(fd, d, HostFile.seekHole)
                let stop = h > d ? min(end, UInt64(h)) : end
                extents.append(FileRange.Extent(start: start - from, length: stop - start))
                pos = stop
            }
        }
        let sum = extents.reduce(UInt64(0)) { $0 + $1.length }
        guard sum <= maxData, sum <= UInt64(Int.max) else { throw .nomem }
        let total = Int(sum)
        var failure: Errno?
        var size = count
        let data = [UInt8](unsafeUninitializedCapacity: total) { buffer, initialized in
            initialized = 0
            guard let base = buffer.baseAddress else { return }
            for (i, e) in extents.enumerated() {
                let wanted = Int(e.length)
                var got = 0
                while got < wanted {
                    let n = pread(fd, base + initialized + got, wanted - got, off_t(from + e.start) + off_t(got))
                    if n < 0, errno == EINTR { continue }
                    if n < 0 { failure = Errno(errno); return }
                    if n == 0 { break }
                    got += n
                }
                initialized += got
                if got < wanted {
                    // The file ends here now.
                    extents.removeSubrange((got > 0 ? i + 1 : i)...)
                    if got > 0 { extents[i].length = UInt64(got) }
                    size = e.start + UInt64(got)
                    return
                }
            }
        }
        if let failure { throw failure }
        return (size, extents, data)
    }
}
