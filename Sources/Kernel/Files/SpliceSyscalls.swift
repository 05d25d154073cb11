import Glibc

/// sendfile, splice and tee: the kernel moves data between two descriptors
/// on the host. While other threads could run, a call that would wait
/// parks until its input has data and its output has room, and the host
/// call then moves only what cannot block: splice and tee with
/// SPLICE_F_NONBLOCK, sendfile into a pipe or socket at most PIPE_BUF
/// bytes (a short count, which callers loop over as Linux allows).
/// copy_file_range moves between regular files, which never wait;
/// vmsplice moves between guest memory and a pipe.
enum SpliceSyscalls {
    static let SPLICE_F_NONBLOCK: Int32 = 2

    static func register(_ t: inout SyscallTable) {
        t.addOutcome(SYS.sendfile, .host, note: "parks while other threads run; short counts into pipes then", sendfile)
        t.addOutcome(SYS.splice, .host, note: "parks while other threads run (SPLICE_F_NONBLOCK on the host)") { c in
            try splice(c, input: 0, inputOffset: 1, output: 2, outputOffset: 3, length: 4, flags: 5)
        }
        t.addOutcome(SYS.tee, .host, note: "parks while other threads run (SPLICE_F_NONBLOCK on the host)") { c in
            try splice(c, input: 0, inputOffset: nil, output: 1, outputOffset: nil, length: 2, flags: 3)
        }
        t.add(SYS.copy_file_range, .host, note: "between regular files on the host; offsets written back; what it moves into an inherited stdout/stderr is kept for replay", copyFileRange)
        t.addOutcome(SYS.vmsplice, .host, note: "copies (the pages are not shared with the pipe); parks while other threads run", vmsplice)
    }

    /// copy_file_range(fd_in, off_in*, fd_out, off_out*, len, flags):
    /// flags must be 0; the host checks the files (EINVAL for a pipe,
    /// EXDEV across filesystems where it cannot, EBADF for modes).
    static func copyFileRange(_ c: SyscallCall) throws -> Int64 {
        let inFile = try c.file(0), outFile = try c.file(2)
        let inOff = try offset(c, 1), outOff = try offset(c, 3)
        let count = min(try c.size(4), maxTransfer)
        let flags = c.int(5)
        guard flags == 0 else { throw Errno.inval }
        let outcome = try c.hostOutcome { effects throws(Errno) -> Int64 in
            guard let i = inFile.hostFD, let o = outFile.hostFD else { throw .badf }
            var inValue = inOff?.value ?? 0, outValue = outOff?.value ?? 0
            let capture = try captureIfEchoed(outFile, input: i, offset: inOff?.value, count: count, nonblocking: true, pipes: false)
            defer { capture?.close() }
            let r = withUnsafeMutablePointer(to: &inValue) { ip in
                withUnsafeMutablePointer(to: &outValue) { op in
                    hostSyscall(SYS.copy_file_range, Int(i), inOff == nil ? 0 : Int(bitPattern: ip), Int(o),
                                outOff == nil ? 0 : Int(bitPattern: op), min(count, capture?.limit ?? count), 0)
                }
            }
            if r >= 0, let inOff { try effects.write(inOff.address, Bytes.u64(UInt64(bitPattern: inValue))) }
            if r >= 0, let outOff { try effects.write(outOff.address, Bytes.u64(UInt64(bitPattern: outValue))) }
            if let capture { effects.carry(capture.bytes(input: i, moved: r)) }
            return r
        }
        try echoMoved(c, outFile, outcome)
        return outcome.result
    }

    /// Before a move into an inherited stdout/stderr, recording only: how
    /// to capture what moves (`MovedBytes`; a datagram socket's head
    /// datagram, `Capture.record`), nil for any other output. An input whose
    /// bytes cannot be read back (for copy_file_range, which takes regular
    /// files only, any pipe or socket) is refused with EINVAL, Linux's answer
    /// for the inputs it cannot move from, rather than printing nothing on
    /// replay.
    static func captureIfEchoed(_ output: OpenFile, input: Int32, offset: Int64?, count: Int,
                                nonblocking: Bool, pipes: Bool = true) throws(Errno) -> Capture? {
        guard output.echo != nil else { return nil }
        if pipes, let record = try Capture.record(input, count: count, nonblocking: nonblocking) { return record }
        switch MovedBytes.prepare(input: input, offset: offset, count: count, nonblocking: nonblocking, pipes: pipes) {
        case .success(let capture)?: return .moved(capture)
        case .failure(let e)?: throw e
        case nil: throw .inval
        }
    }

    /// What a move into an inherited stdout/stderr will carry.
    enum Capture {
        case moved(MovedBytes)
        /// A datagram or seqpacket socket's next record, peeked: a splice
        /// from it reads that one record (the rest of a longer one is
        /// dropped, as recvmsg drops it), so what moves is the peek's bytes.
        case peeked([UInt8], limit: Int)

        /// A datagram or seqpacket socket's capture; nil for any other input.
        static func record(_ fd: Int32, count: Int, nonblocking: Bool) throws(Errno) -> Capture? {
            var st = stat()
            guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFSOCK else { return nil }
            guard let type = MovedBytes.socketType(fd),
                  type == Int32(SOCK_DGRAM.rawValue) || type == Int32(SOCK_SEQPACKET.rawValue) else { return nil }
            let head = try MovedBytes.peek(fd, count: count, nonblocking: nonblocking).get()
            // An empty record moves nothing whatever the length asked.
            return .peeked(head, limit: head.isEmpty ? count : head.count)
        }

        var limit: Int {
            switch self {
            case .moved(let m): return m.limit
            case .peeked(_, let limit): return limit
            }
        }

        func bytes(input fd: Int32, moved: Int64) -> [UInt8] {
            switch self {
            case .moved(let m): return m.bytes(input: fd, moved: moved)
            case .peeked(let head, _): return moved > 0 ? Array(head.prefix(Int(moved))) : []
            }
        }

        func close() {
            if case .moved(let m) = self { m.close() }
        }
    }

    /// After a move: what went to an inherited stdout/stderr is checked and
    /// printed again on replay, as a write's bytes are.
    static func echoMoved(_ c: SyscallCall, _ output: OpenFile, _ outcome: HostOutcome) throws {
        guard output.echo != nil, outcome.result > 0 else { return }
        let bytes = outcome.carried.reduce(into: [UInt8]()) { $0 += $1 }
        try FileSyscalls.echo(c, output, bytes, Int64(bytes.count))
    }

    /// vmsplice(fd, iov, nr_segs, flags): into a pipe's write end (the
    /// guest's bytes, which the host writes as writev would: Linux would
    /// hand the pipe the pages themselves, which detrec's copy cannot
    /// share) or out of its read end (a copy on Linux too). The direction
    /// is the host pipe's; as Linux's, it waits for room or data (parking
    /// while other threads run; not with SPLICE_F_NONBLOCK) and then moves
    /// what fits. Not a pipe: EBADF.
    static func vmsplice(_ c: SyscallCall) throws -> SyscallOutcome {
        let file = try c.file(0)
        let flags = c.int(3)
        // SPLICE_F_MOVE, NONBLOCK, MORE, GIFT.
        guard flags & ~0xf == 0 else { throw Errno.inval }
        let listed = try FileSyscalls.iovecs(c, 1, count: Int(c.int(2)))
        // Either direction may be the one: both are checked as they would be
        // read (the write end) and written (the read end) only on the host.
        let nonblocking = flags & SPLICE_F_NONBLOCK != 0
        let wait = HostReadiness(fd: file.hostFD ?? -1, events: Int16(POLLIN | POLLOUT))
        if !nonblocking, let parked = c.park(.host(wait), unless: { !HostTransfer.mayWait(file) || wait.isReady() }) { return parked }
        let readable = try FileSyscalls.reachable(c, listed, write: false)
        let writable = (try? FileSyscalls.reachable(c, listed, write: true)) ?? []
        var gathered: [UInt8] = []
        for (base, len) in readable { gathered += (try? c.read(base, count: len)) ?? [] }
        let data = gathered
        let r = try c.host { effects throws(Errno) -> Int64 in
            guard let fd = file.hostFD else { throw .badf }
            var st = stat()
            guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFIFO else { return Errno.badf.result }
            let status = fcntl(fd, F_GETFL)
            let writing = status & O_ACCMODE != O_RDONLY
            // An O_NONBLOCK pipe never waits either (do_vmsplice).
            if !nonblocking, status & O_NONBLOCK == 0, !listed.isEmpty {
                // Nothing else can run (or it is ready): wait here as Linux would.
                var p = pollfd(fd: fd, events: Int16(writing ? POLLOUT : POLLIN), revents: 0)
                if Glibc.poll(&p, 1, -1) < 0 { return -Int64(errno) }
            }
            if writing {
                // What fits now, as the kernel's iter_to_pipe adds what fits.
                return data.withUnsafeBytes { HostTransfer.writeWithoutWaiting(file, $0) }
            }
            let total = writable.reduce(0) { $0 + $1.1 }
            guard total > 0 || listed.isEmpty else { return Errno.fault.result }
            var buffer = [UInt8](repeating: 0, count: total)
            let n = buffer.withUnsafeMutableBytes { b in
                var vector = iovec(iov_base: b.baseAddress, iov_len: total)
                return withUnsafeMutablePointer(to: &vector) { v in
                    hostSyscall(SYS.vmsplice, Int(fd), Int(bitPattern: v), 1, Int(SPLICE_F_NONBLOCK))
                }
            }
            if n > 0 { try VectorTransfers.scatter(buffer, count: Int(n), over: writable, &effects) }
            return n
        }
        if file.echo != nil { try FileSyscalls.echo(c, file, data, r) }
        return .result(r)
    }

    /// Parks until `input` is readable and `output` writable, whichever is not.
    static func waitForBoth(_ c: SyscallCall, _ input: OpenFile, _ output: OpenFile) -> SyscallOutcome? {
        for (file, events) in [(input, Int16(POLLIN)), (output, Int16(POLLOUT))] {
            let wait = HostReadiness(fd: file.hostFD ?? -1, events: events)
            if let parked = c.park(.host(wait), unless: { !HostTransfer.mayWait(file) || HostTransfer.ready(file, events) }) {
                return parked
            }
        }
        return nil
    }

    /// An off_t argument the call reads and advances (NULL: the file's own offset).
    static func offset(_ c: SyscallCall, _ i: Int?) throws(Errno) -> (address: UInt64, value: Int64)? {
        guard let i, c.arg(i) != 0 else { return nil }
        try c.checkWritable(c.arg(i), count: 8)
        return (c.arg(i), try c.readValue(c.arg(i)))
    }

    static func sendfile(_ c: SyscallCall) throws -> SyscallOutcome {
        let output = try c.file(0), input = try c.file(1)
        let off = try offset(c, 2)
        let count = min(try c.size(3), maxTransfer)
        if let parked = waitForBoth(c, input, output) { return parked }
        let others = c.othersCouldRun
        let outcome = try c.hostOutcome { effects throws(Errno) -> Int64 in
            guard let o = output.hostFD, let i = input.hostFD else { throw .badf }
            var n = others && HostTransfer.mayWait(output) ? min(count, 4096) : count
            let capture = try captureIfEchoed(output, input: i, offset: off?.value, count: n, nonblocking: others)
            defer { capture?.close() }
            if let capture { n = min(n, capture.limit) }
            var value = off?.value ?? 0
            let r = withUnsafeMutablePointer(to: &value) { p in
                hostSyscall(SYS.sendfile, Int(o), Int(i), off == nil ? 0 : Int(bitPattern: p), n)
            }
            if r >= 0, let off { try effects.write(off.address, Bytes.u64(UInt64(bitPattern: value))) }
            if let capture { effects.carry(capture.bytes(input: i, moved: r)) }
            return r
        }
        try echoMoved(c, output, outcome)
        return .result(outcome.result)
    }

    static func splice(_ c: SyscallCall, input: Int, inputOffset: Int?, output: Int, outputOffset: Int?,
                       length: Int, flags: Int) throws -> SyscallOutcome {
        let inFile = try c.file(input), outFile = try c.file(output)
        let inOff = try offset(c, inputOffset), outOff = try offset(c, outputOffset)
        let count = min(try c.size(length), maxTransfer)
        let guestFlags = c.int(flags)
        let tee = inputOffset == nil
        if guestFlags & SPLICE_F_NONBLOCK == 0, let parked = waitForBoth(c, inFile, outFile) { return parked }
        let others = c.othersCouldRun
        let outcome = try c.hostOutcome { effects throws(Errno) -> Int64 in
            guard let i = inFile.hostFD, let o = outFile.hostFD else { throw .badf }
            let hostFlags = guestFlags | (others ? SPLICE_F_NONBLOCK : 0)
            let capture = try captureIfEchoed(outFile, input: i, offset: inOff?.value, count: count,
                                              nonblocking: hostFlags & SPLICE_F_NONBLOCK != 0)
            defer { capture?.close() }
            let n = min(count, capture?.limit ?? count)
            var inValue = inOff?.value ?? 0, outValue = outOff?.value ?? 0
            let r = withUnsafeMutablePointer(to: &inValue) { ip in
                withUnsafeMutablePointer(to: &outValue) { op in
                    tee ? hostSyscall(SYS.tee, Int(i), Int(o), n, Int(hostFlags))
                        : hostSyscall(SYS.splice, Int(i), inOff == nil ? 0 : Int(bitPattern: ip), Int(o),
                                      outOff == nil ? 0 : Int(bitPattern: op), n, Int(hostFlags))
                }
            }
            if r >= 0, let inOff { try effects.write(inOff.address, Bytes.u64(UInt64(bitPattern: inValue))) }
            if r >= 0, let outOff { try effects.write(outOff.address, Bytes.u64(UInt64(bitPattern: outValue))) }
            if let capture { effects.carry(capture.bytes(input: i, moved: r)) }
            return r
        }
        try echoMoved(c, outFile, outcome)
        return .result(outcome.result)
    }
}
