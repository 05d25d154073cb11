#if canImport(Glibc)
import Glibc
#endif

/// The few POSIX file operations the trace needs, with errors turned into TraceError.io.
/// Plain syscalls rather than Foundation so that block writes are exactly one write(2).
enum FileIO {
    static func errnoMessage(_ code: Int32 = errno) -> String {
        String(cString: strerror(code))
    }

    enum Kind { case missing, directory, other }

    static func kind(of path: String) -> Kind {
        var st = stat()
        guard stat(path, &st) == 0 else { return .missing }
        return (st.st_mode & S_IFMT) == S_IFDIR ? .directory : .other
    }

    /// mkdir -p.
    static func makeDirectories(_ path: String) throws(TraceError) {
        if kind(of: path) == .directory { return }
        var prefix = path.hasPrefix("/") ? "/" : ""
        for component in path.split(separator: "/", omittingEmptySubsequences: true) {
            prefix += component
            if mkdir(prefix, 0o755) != 0 {
                let e = errno
                guard e == EEXIST, kind(of: prefix) == .directory else {
                    throw .io(path: prefix, message: errnoMessage(e))
                }
            }
            prefix += "/"
        }
    }

    static func isEmptyDirectory(_ path: String) throws(TraceError) -> Bool {
        guard let dir = opendir(path) else { throw .io(path: path, message: errnoMessage()) }
        defer { closedir(dir) }
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { return false }
        }
        return true
    }

    static func open(_ path: String, _ flags: Int32, _ mode: mode_t = 0o644) throws(TraceError) -> Int32 {
        while true {
            let fd = Glibc.open(path, flags | O_CLOEXEC, mode)
            if fd >= 0 { return fd }
            if errno != EINTR { throw .io(path: path, message: errnoMessage()) }
        }
    }

    /// write(2) until everything is written (one call in the normal case).
    static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, path: String) throws(TraceError) {
        guard var p = bytes.baseAddress else { return }
        var left = bytes.count
        while left > 0 {
            let n = Glibc.write(fd, p, left)
            if n < 0 {
                if errno == EINTR { continue }
                throw .io(path: path, message: errnoMessage())
            }
            if n == 0 { throw .io(path: path, message: "write returned 0") }
            p += n
            left -= n
        }
    }

    /// pread(2) until `buffer` is full or end of file; returns the bytes read.
    static func readFully(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64,
                          path: String) throws(TraceError) -> Int {
        guard let base = buffer.baseAddress else { return 0 }
        var done = 0
        while done < buffer.count {
            let n = pread(fd, base + done, buffer.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw .io(path: path, message: errnoMessage())
            }
            if n == 0 { break }
            done += n
        }
        return done
    }

    static func size(of fd: Int32, path: String) throws(TraceError) -> UInt64 {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw .io(path: path, message: errnoMessage()) }
        return UInt64(max(st.st_size, 0))
    }

    /// Reads a whole file, refusing files larger than `maxSize` before allocating.
    static func readFile(_ path: String, maxSize: Int = Int.max) throws(TraceError) -> [UInt8] {
        let fd = try open(path, O_RDONLY)
        defer { close(fd) }
        let size = try size(of: fd, path: path)
        guard size <= UInt64(maxSize) else {
            throw .io(path: path, message: "file is \(size) bytes, more than the \(maxSize) allowed")
        }
        let count = Int(size)
        var result: Result<Int, TraceError> = .success(0)
        let bytes = [UInt8](unsafeUninitializedCapacity: count) { buf, initialized in
            result = Result { () throws(TraceError) in
                try readFully(fd, into: UnsafeMutableRawBufferPointer(buf), at: 0, path: path)
            }
            initialized = (try? result.get()) ?? 0
        }
        let got = try result.get()
        guard got == count else { throw .io(path: path, message: "file shrank while being read") }
        return bytes
    }

    /// Writes `bytes` to `path` via a temporary file and rename(2), so readers (and a recorder
    /// killed mid-write) never leave a half-written file under the final name.
    static func writeFileAtomically(_ path: String, _ bytes: [UInt8]) throws(TraceError) {
        let temp = path + ".tmp"
        let fd = try open(temp, O_WRONLY | O_CREAT | O_TRUNC)
        do {
            try bytes.withUnsafeBytes { buf in
                Result { () throws(TraceError) in try writeAll(fd, buf, path: temp) }
            }.get()
        } catch {
            close(fd)
            unlink(temp)
            throw error
        }
        close(fd)
        guard rename(temp, path) == 0 else {
            let message = errnoMessage()
            unlink(temp)
            throw .io(path: path, message: message)
        }
    }
}
