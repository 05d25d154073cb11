import Glibc

/// sendfile, splice, tee and copy_file_range move bytes between two host
/// descriptors without them passing through guest memory. When the output
/// is an inherited stdout/stderr (`OpenFile.echo`), replay must print them
/// again: the recording captures exactly what moved and carries it in the
/// trace (`HostEffects.carry`), and the data check covers it as a write's.
/// A seekable input is read back at the range that moved; a pipe's bytes
/// are duplicated (tee) into a private pipe just before the move, which is
/// then limited to what was duplicated (a short count, as Linux allows); a
/// stream socket's head is peeked (MSG_PEEK) and the move limited the same
/// way.
struct MovedBytes {
    /// Where the moved bytes start in a seekable input.
    private var start: Int64?
    /// The private pipe holding a copy of a pipe input's head.
    private var copy: (read: Int32, write: Int32)?
    /// How many bytes may move so that the copy covers them.
    private(set) var limit: Int
    /// A socket input's head, peeked before the move.
    private var peeked: [UInt8]? = nil

    /// Before the host call. `offset`: the explicit input offset (nil: the
    /// file's own). Returns nil when the input is neither seekable nor (if
    /// `pipes`) a pipe or a stream socket: nothing it moves could be read back.
    static func prepare(input fd: Int32, offset: Int64?, count: Int, nonblocking: Bool,
                        pipes: Bool) -> Result<MovedBytes, Errno>? {
        var st = stat()
        guard fstat(fd, &st) == 0 else { return .failure(Errno(errno)) }
        if st.st_mode & S_IFMT == S_IFIFO {
            guard pipes else { return nil }
            var ends: [Int32] = [0, 0]
            let made = ends.withUnsafeMutableBufferPointer { hostSyscall(SYS.pipe2, Int(bitPattern: $0.baseAddress), Int(O_CLOEXEC)) }
            guard made == 0 else { return .failure(Errno(Int32(clamping: -made))) }
            // Room for everything asked, up to what the kernel grants.
            _ = fcntl(ends[1], FcntlCommands.F_SETPIPE_SZ, Int32(clamping: min(count, 1 << 20)))
            // Waits for data as the move itself would (unless nonblocking).
            let n = hostSyscall(SYS.tee, Int(fd), Int(ends[1]), count, nonblocking ? 2 : 0)
            guard n >= 0 else {
                Glibc.close(ends[0]); Glibc.close(ends[1])
                return .failure(Errno(Int32(clamping: -n)))
            }
            return .success(MovedBytes(start: nil, copy: (read: ends[0], write: ends[1]), limit: Int(n)))
        }
        if st.st_mode & S_IFMT == S_IFSOCK {
            guard pipes, socketType(fd) == Int32(SOCK_STREAM.rawValue) else { return nil }
            return peek(fd, count: count, nonblocking: nonblocking).map { head in
                MovedBytes(start: nil, copy: nil, limit: head.count, peeked: head)
            }
        }
        let position = offset ?? Int64(lseek(fd, 0, SEEK_CUR))
        guard position >= 0 else { return nil }
        return .success(MovedBytes(start: position, copy: nil, limit: count))
    }

    /// SO_TYPE of the socket open on `fd`, nil when it does not answer.
    static func socketType(_ fd: Int32) -> Int32? {
        var type: Int32 = 0
        var len = socklen_t(MemoryLayout<Int32>.size)
        return getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 ? type : nil
    }

    /// The head of the socket's input (up to `count` bytes, at most 1 MiB),
    /// peeked: it waits for data as the move itself would (unless
    /// `nonblocking`), and a datagram socket gives its next record.
    static func peek(_ fd: Int32, count: Int, nonblocking: Bool) -> Result<[UInt8], Errno> {
        var head = [UInt8](repeating: 0, count: max(0, min(count, 1 << 20)))
        let n = head.withUnsafeMutableBytes { b -> Int in
            while true {
                let r = recv(fd, b.baseAddress, b.count, Int32(MSG_PEEK) | (nonblocking ? Int32(MSG_DONTWAIT) : 0))
                if r < 0, errno == EINTR { continue }
                return r < 0 ? -Int(errno) : r
            }
        }
        guard n >= 0 else { return .failure(Errno(Int32(clamping: -n))) }
        return .success(Array(head.prefix(n)))
    }

    /// After the host call moved `moved` bytes: exactly those bytes.
    func bytes(input fd: Int32, moved: Int64) -> [UInt8] {
        guard moved > 0 else { return [] }
        if let peeked { return Array(peeked.prefix(Int(moved))) }
        var out = [UInt8](repeating: 0, count: Int(moved))
        var got = 0
        out.withUnsafeMutableBytes { b in
            guard let base = b.baseAddress else { return }
            while got < b.count {
                let n: Int
                if let copy { n = Glibc.read(copy.read, base + got, b.count - got) }
                else if let start { n = pread(fd, base + got, b.count - got, off_t(start) + off_t(got)) }
                else { n = 0 }
                if n < 0, errno == EINTR { continue }
                guard n > 0 else { break }
                got += n
            }
        }
        return Array(out.prefix(got))
    }

    func close() {
        if let copy { Glibc.close(copy.read); Glibc.close(copy.write) }
    }
}
