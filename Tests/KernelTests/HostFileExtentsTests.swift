import Glibc
import Testing
@testable import Kernel

/// `HostFile.dataExtents`: the data of a sparse host file's range, holes
/// left out, the file offset kept.
@Suite struct HostFileExtentsTests {
    @Test func aSparseFileHasItsWrittenBytesAsExtents() throws {
        let path = "/tmp/detrec-extents-\(getpid())"
        let fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0o600)
        try #require(fd >= 0)
        defer { close(fd); unlink(path) }
        let size: Int64 = 64 << 20
        try #require(ftruncate(fd, off_t(size)) == 0)
        let a = Array("first".utf8), b = Array("second".utf8)
        _ = a.withUnsafeBytes { pwrite(fd, $0.baseAddress, a.count, 0) }
        _ = b.withUnsafeBytes { pwrite(fd, $0.baseAddress, b.count, off_t(40 << 20)) }
        _ = lseek(fd, 1234, SEEK_SET)

        let whole = try HostFile.dataExtents(fd, from: 0, count: UInt64(size))
        #expect(whole.size == UInt64(size))
        #expect(lseek(fd, 0, SEEK_CUR) == 1234)
        // File systems report data in blocks: each extent holds what was written, and zeros.
        #expect(whole.extents.count == 2)
        #expect(whole.data.count < 1 << 20)
        #expect(Array(whole.data.prefix(5)) == a)
        if let second = whole.extents.last {
            #expect(second.start <= 40 << 20 && 40 << 20 < second.start + second.length)
            let at = Int(whole.extents[0].length) + Int((40 << 20) - second.start)
            #expect(Array(whole.data[at..<(at + b.count)]) == b)
        }

        // A range inside a hole has no extents; one ending in the file's tail hole stops at the count.
        let hole = try HostFile.dataExtents(fd, from: 8 << 20, count: 1 << 20)
        #expect(hole.size == 1 << 20 && hole.extents.isEmpty && hole.data.isEmpty)
        let window = try HostFile.dataExtents(fd, from: (40 << 20) - 4096, count: 16384)
        #expect(window.size == 16384 && window.extents.count == 1)
        #expect(window.extents.allSatisfy { $0.start + $0.length <= 16384 })
        // Past the end: nothing there any more.
        let past = try HostFile.dataExtents(fd, from: UInt64(size) - 10, count: 100)
        #expect(past.extents.isEmpty)
    }
}
