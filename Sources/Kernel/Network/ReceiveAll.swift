import Glibc

/// recv/recvfrom, and recvmsg without an address or ancillary data, with
/// MSG_WAITALL on a blocking socket: Linux waits until
/// the whole buffer is filled (or the peer shuts down, an error, or a
/// signal). A host call like that would block detrec while other threads
/// could run, so the recorder takes what has arrived without waiting
/// (MSG_DONTWAIT), keeps it, and parks the thread until more can come;
/// the attempt that completes the call writes everything to the guest in
/// its host part (logged; replay parks where the recording did and writes
/// what it logged). A signal that ends a wait returns what had arrived,
/// or EINTR.
enum ReceiveAll {
    static let MSG_WAITALL: Int32 = 0x100, MSG_PEEK: Int32 = 0x2

    /// Whether the call takes this path: MSG_WAITALL without MSG_PEEK or
    /// MSG_DONTWAIT (which never wait).
    static func applies(_ flags: Int32) -> Bool {
        flags & MSG_WAITALL != 0 && flags & (MSG_PEEK | SocketSyscalls.MSG_DONTWAIT) == 0
    }

    /// recvfrom(fd, buffer, count, flags, NULL, NULL) with MSG_WAITALL.
    static func receive(_ c: SyscallCall, _ file: OpenFile, buffer: UInt64, count: Int, flags: Int32) throws -> SyscallOutcome {
        try receive(c, file, count: count, flags: flags, take: { fd, b, f in
            (hostSyscall(SYS.recvfrom, Int(fd), Int(bitPattern: b.baseAddress), b.count, Int(f), 0, 0), 0)
        }, deliver: { effects, total, _ throws(Errno) in
            if !total.isEmpty { try effects.write(buffer, total) }
        })
    }

    /// recvmsg(fd, msg, flags) with MSG_WAITALL and neither an address nor
    /// a control buffer (the only form taken here): the same, scattered
    /// into the message's iovecs, then msg_controllen 0 and msg_flags (the
    /// host calls' flags, with MSG_CMSG_CLOEXEC only as the guest asked)
    /// written as ____sys_recvmsg does; msg_namelen is left alone with no
    /// msg_name, as Linux leaves it.
    static func receiveMessage(_ c: SyscallCall, _ file: OpenFile, header: UInt64, vectors: [(UInt64, Int)],
                               flags: Int32) throws -> SyscallOutcome {
        let count = vectors.reduce(0) { $0 + $1.1 }
        return try receive(c, file, count: count, flags: flags, take: { fd, b, f in
            var vector = iovec(iov_base: b.baseAddress, iov_len: b.count)
            return withUnsafeMutablePointer(to: &vector) { v in
                var m = msghdr()
                m.msg_iov = v
                m.msg_iovlen = 1
                let n = withUnsafeMutablePointer(to: &m) { hostSyscall(SYS.recvmsg, Int(fd), Int(bitPattern: $0), Int(f)) }
                return (n, m.msg_flags)
            }
        }, deliver: { effects, total, seen throws(Errno) in
            var at = 0
            for (base, length) in vectors where at < total.count {
                let take = min(length, total.count - at)
                try effects.write(base, total[at..<at + take])
                at += take
            }
            try effects.write(header + 40, Bytes.u64(0))
            try effects.write(header + 48, Bytes.i32(seen & ~MessageSyscalls.MSG_CMSG_CLOEXEC | flags & MessageSyscalls.MSG_CMSG_CLOEXEC))
        })
    }

    /// The shared shape: `take` is one host receive into a buffer with the
    /// given flags (its result and the msg_flags it reported), `deliver`
    /// writes what was received to the guest (in the host part; not on an
    /// error with nothing received).
    static func receive(_ c: SyscallCall, _ file: OpenFile, count: Int, flags: Int32,
                        take: @escaping (Int32, UnsafeMutableRawBufferPointer, Int32) -> (Int64, Int32),
                        deliver: @escaping (inout HostEffects, [UInt8], Int32) throws(Errno) -> Void) throws -> SyscallOutcome {
        let thread = c.process.current
        var finished: Int64?
        if c.interrupted {
            finished = thread.received.isEmpty ? Errno.intr.result : Int64(thread.received.count)
        } else {
            let readiness = HostReadiness(fd: file.hostFD ?? -1, events: Int16(POLLIN))
            let parked = c.park(.host(readiness)) {
                guard let fd = file.hostFD, HostTransfer.mayWait(file) else { return true }
                let want = count - thread.received.count
                var chunk = [UInt8](repeating: 0, count: max(want, 0))
                let (n, seen) = chunk.withUnsafeMutableBytes { b in
                    take(fd, b, flags & ~MSG_WAITALL | SocketSyscalls.MSG_DONTWAIT)
                }
                if n == Errno.again.result { return false }
                if n > 0 { thread.received += chunk[0..<Int(n)] }
                if n >= 0 { thread.receivedFlags |= seen }
                // A datagram is one whole message whatever its size.
                if n > 0 && thread.received.count < count && isStream(fd) { return false }
                finished = n < 0 && thread.received.isEmpty ? n : Int64(thread.received.count)
                return true
            }
            if let parked { return parked }
        }
        let received = thread.received
        var seen = thread.receivedFlags
        return .result(try c.host { effects throws(Errno) -> Int64 in
            var total = received
            var result = finished
            if result == nil {
                // Nothing else could run: the rest with the blocking call itself.
                guard let h = file.hostFD else { throw .badf }
                let want = count - total.count
                var rest = [UInt8](repeating: 0, count: max(want, 0))
                let (n, more) = rest.withUnsafeMutableBytes { b in take(h, b, flags) }
                if n > 0 { total += rest[0..<min(Int(n), want)] }
                if n >= 0 { seen |= more }
                result = n < 0 && total.isEmpty ? n : Int64(total.count)
            }
            if let result, result >= 0 { try deliver(&effects, total, seen) }
            return result ?? 0
        })
    }

    /// SOCK_STREAM or SOCK_SEQPACKET? (recording only)
    static func isStream(_ fd: Int32) -> Bool {
        var type: Int32 = 0
        var size = socklen_t(4)
        return getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &size) == 0 && type == Int32(SOCK_STREAM.rawValue)
    }

    /// A TCP socket? (recording only) Its MSG_TRUNC discards the data.
    static func isTCP(_ fd: Int32) -> Bool {
        var proto: Int32 = 0
        var size = socklen_t(4)
        return isStream(fd) && getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &size) == 0 && proto == Int32(IPPROTO_TCP)
    }
}
