import Glibc

/// preadv2 and pwritev2: readv/writev with an offset (-1: the file's own,
/// as readv/writev) and per-call flags (RWF_HIPRI, RWF_DSYNC, RWF_SYNC,
/// RWF_NOWAIT, RWF_APPEND, RWF_NOAPPEND, ...), which the host checks
/// (EOPNOTSUPP for one it does not know) and acts on. A call that may wait
/// (offset -1 on a pipe, FIFO, socket or tty, without RWF_NOWAIT) parks
/// while other threads run, as read and write do.
enum VectorTransfers {
    static let RWF_NOWAIT: Int32 = 0x8

    static func register(_ t: inout SyscallTable) {
        t.addOutcome(SYS.preadv2, .host, note: "flags checked and applied by the host; offset -1 waits as readv", preadv2)
        t.addOutcome(SYS.pwritev2, .host, note: "flags checked and applied by the host; offset -1 waits as writev", pwritev2)
    }

    /// x86-64 passes the offset whole in pos_l (pos_h shifts out).
    static func offset(_ c: SyscallCall) -> Int64 { c.long(3) }

    static func preadv2(_ c: SyscallCall) throws -> SyscallOutcome {
        let file = try c.file(0)
        let flags = c.int(5)
        let vectors = try FileSyscalls.reachable(c, try FileSyscalls.iovecs(c, 1, count: Int(c.int(2))), write: true)
        let total = vectors.reduce(0) { $0 + $1.1 }
        let offset = offset(c)
        if offset == -1, flags & RWF_NOWAIT == 0, let parked = c.waitUntilReady(file, events: Int16(POLLIN)) { return parked }
        return .result(try c.host { effects throws(Errno) -> Int64 in
            guard let fd = file.hostFD else { throw .badf }
            var buffer = [UInt8](unsafeUninitializedCapacity: total) { _, n in n = total }
            let n = buffer.withUnsafeMutableBytes { b in
                var vector = iovec(iov_base: b.baseAddress, iov_len: total)
                return withUnsafeMutablePointer(to: &vector) { v in
                    hostSyscall(SYS.preadv2, Int(fd), Int(bitPattern: v), 1, Int(offset), 0, Int(flags))
                }
            }
            if n > 0 { try scatter(buffer, count: Int(n), over: vectors, &effects) }
            return n
        })
    }

    /// The first `count` bytes of `buffer` into the guest's vectors, in order.
    static func scatter(_ buffer: [UInt8], count: Int, over vectors: [(UInt64, Int)], _ effects: inout HostEffects) throws(Errno) {
        var at = 0
        let end = min(count, buffer.count)
        for (base, len) in vectors where at < end {
            let take = min(len, end - at)
            try effects.write(base, buffer[at..<at + take])
            at += take
        }
    }

    static func pwritev2(_ c: SyscallCall) throws -> SyscallOutcome {
        let file = try c.file(0)
        let flags = c.int(5)
        let bytes = try FileSyscalls.gather(c)
        let offset = offset(c)
        let plain = { (fd: Int32, b: UnsafeRawBufferPointer) -> Int64 in
            var vector = iovec(iov_base: UnsafeMutableRawPointer(mutating: b.baseAddress), iov_len: b.count)
            return withUnsafeMutablePointer(to: &vector) { v in
                hostSyscall(SYS.pwritev2, Int(fd), Int(bitPattern: v), 1, Int(offset), 0, Int(flags))
            }
        }
        // Unknown flags are the host's EOPNOTSUPP before anything waits.
        if offset == -1, flags & RWF_NOWAIT == 0, flags & ~0xff == 0 {
            return try HostTransfer.write(c, file, bytes, plain: plain)
        }
        let r = try c.host { _ throws(Errno) -> Int64 in
            guard let fd = file.hostFD else { throw .badf }
            return bytes.withUnsafeBytes { plain(fd, $0) }
        }
        try FileSyscalls.echo(c, file, bytes, r)
        return .result(r)
    }
}
