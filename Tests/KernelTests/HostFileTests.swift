import Glibc
import Testing
@testable import Kernel

/// HostFile.readAll reads to the end whatever st_size says: /proc files
/// report 0, and a file's size is only where to start.
@Suite struct HostFileTests {
    @Test func readsProcFilesWhoseSizeIsZero() throws {
        let fd = open("/proc/self/status", O_RDONLY)
        #expect(fd >= 0)
        defer { close(fd) }
        var st = stat()
        #expect(fstat(fd, &st) == 0 && st.st_size == 0)
        let bytes = try HostFile.readAll(fd)
        #expect(String(decoding: bytes, as: UTF8.self).hasPrefix("Name:"))
        #expect(lseek(fd, 0, SEEK_CUR) == 0)
    }

    @Test func readsARegularFileExactly() throws {
        var name = Array("/tmp/hostfile-XXXXXX".utf8CString)
        let fd = mkstemp(&name)
        #expect(fd >= 0)
        defer { close(fd); unlink(name) }
        let content = (0..<10000).map { UInt8($0 % 251) }
        #expect(content.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } == content.count)
        #expect(try HostFile.readAll(fd) == content)
    }
}
