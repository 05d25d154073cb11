import Foundation
import Testing

/// A mapping of a sparse file costs what the file holds, not what it
/// claims (docs/trace-format.md, stored ranges): the trace stores the data
/// extents of the mapped range, compressed, and the holes read as zeros
/// in record and replay alike, as natively.
@Suite struct SparseMappingTests {
    /// Makes argv[1] a file of argv[2] bytes with a few bytes at its start,
    /// middle and end and holes between, maps it whole MAP_PRIVATE and
    /// MAP_SHARED read-only, a window around the middle, and a window in a
    /// hole; prints what it reads and whether the file is still sparse.
    static let program = #"""
    #include <fcntl.h>
    #include <stdio.h>
    #include <stdlib.h>
    #include <string.h>
    #include <sys/mman.h>
    #include <sys/stat.h>
    #include <unistd.h>

    static int sparse(int fd, long long size) {
        struct stat st;
        return fstat(fd, &st) == 0 && (long long)st.st_blocks * 512 < size / 16;
    }

    int main(int argc, char **argv) {
        long long size = atoll(argv[2]);
        int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
        if (fd < 0 || ftruncate(fd, size) != 0) { perror("create"); return 1; }
        const char head[] = "head-of-file", mid[] = "middle", tail[] = "tail-end";
        long long midAt = size / 2 + 17, tailAt = size - (long long)sizeof tail;
        if (pwrite(fd, head, sizeof head, 0) != sizeof head || pwrite(fd, mid, sizeof mid, midAt) != sizeof mid
            || pwrite(fd, tail, sizeof tail, tailAt) != sizeof tail) { perror("pwrite"); return 1; }
        printf("sparse at first: %d\n", sparse(fd, size));
        int kinds[2] = { MAP_PRIVATE, MAP_SHARED };
        for (int k = 0; k < 2; k++) {
            const char *name = k ? "shared" : "private";
            unsigned char *p = mmap(NULL, size, PROT_READ, kinds[k], fd, 0);
            if (p == MAP_FAILED) { perror("mmap"); return 1; }
            unsigned sum = 0;
            long long probes[] = { sizeof head, 4096, 1LL << 20, size / 4, midAt - 1, midAt + (long long)sizeof mid,
                                   size - 8192, tailAt - 1, size - 1 };
            for (unsigned i = 0; i < sizeof probes / sizeof probes[0]; i++) sum += p[probes[i]];
            printf("%s: head=%s mid=%s tail=%s zeros=%u\n", name, p, p + midAt, p + tailAt, sum);
            munmap(p, size);
            printf("%s: sparse after munmap: %d\n", name, sparse(fd, size));
            long long at = (midAt & ~4095LL) - 8192;
            unsigned char *w = mmap(NULL, 16384, PROT_READ, kinds[k], fd, at);
            if (w == MAP_FAILED) { perror("mmap window"); return 1; }
            printf("%s: window %s, zero %u\n", name, w + (midAt - at), w[100]);
            munmap(w, 16384);
            unsigned char *h = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 1 << 24);
            if (h == MAP_FAILED) { perror("mmap hole"); return 1; }
            unsigned hsum = 0;
            for (int i = 0; i < 1 << 20; i += 4096) hsum += h[i] + h[i + 4095];
            h[5] = 'x';
            printf("%s: hole %u, written %c\n", name, hsum, h[5]);
            munmap(h, 1 << 20);
        }
        printf("sparse at the end: %d\n", sparse(fd, size));
        close(fd);
        unlink(argv[1]);
        return 0;
    }
    """#

    /// Bytes of every file under `path`.
    static func bytesUnder(_ path: String) -> UInt64 {
        var total: UInt64 = 0
        let e = FileManager.default.enumerator(atPath: path)
        while let name = e?.nextObject() as? String {
            var st = stat()
            if stat(path + "/" + name, &st) == 0, st.st_mode & S_IFMT == S_IFREG { total += UInt64(st.st_size) }
        }
        return total
    }

    @Test func aGigabyteSparseFileCostsItsData() throws {
        let s = Scratch("sparse"); defer { s.remove() }
        let exe = try compile(Self.program)
        // 1 GiB and a bit, not a whole number of pages: the last page is partly past the end.
        let size = String((1 << 30) + 3 * 4096 + 123)
        let native = try run([exe, s.file("sparse.bin"), size], in: s.path)
        #expect(native.status == 0, "\(native)")
        #expect(native.stdout.contains("private: head=head-of-file mid=middle tail=tail-end zeros=0"), "\(native)")
        let r = try recordAndReplay(exe, [s.file("sparse.bin"), size], replays: 1, in: s)
        #expect(r.record.stdout == native.stdout, "native: \(native)\nrecorded: \(r.record)")
        #expect(r.record.status == native.status)
        let traceBytes = Self.bytesUnder(r.trace)
        // The program's own executable (about 1 MB) is most of it.
        #expect(traceBytes < 8 << 20, "the trace holds \(traceBytes) bytes for a 1 GiB sparse file")
    }
}
