import Glibc
import Synchronization

/// recv/recvfrom and recvmsg with MSG_WAITALL on a blocking socket:
/// Linux waits until the whole buffer is filled (or the peer shuts down, an
/// error, or a signal). A host call like that would block detrec while
/// other threads could run, so the recorder takes what has arrived without
/// waiting (MSG_DONTWAIT), keeps it, and parks the thread until more can
/// come; the attempt that completes the call writes everything to the
/// guest in its host part (logged; replay parks where the recording did and
/// writes what it logged). A signal that ends a wait returns what had
/// arrived, or EINTR. With no other thread to run, detrec waits for the
/// rest itself, but no longer than until a timer of the process would
/// interrupt the wait (`TimerSyscalls.waitReady`), so an alarm ends it as
/// Linux's signal does.
///
/// recvmsg's address and ancillary data: a Unix stream socket's receive
/// stops after the message that carried descriptors (unix_stream_read_generic
/// breaks once it holds scm.fp), so an attempt that brings SCM_RIGHTS (or a
/// cut control buffer) ends the call with that attempt's control data; else
/// the call gets the first piece's address and control data (credentials),
/// kept between attempts in `pending`.
enum ReceiveAll {
    static let MSG_WAITALL: Int32 = 0x100, MSG_PEEK: Int32 = 0x2

    /// Whether the call takes this path: MSG_WAITALL without MSG_PEEK or
    /// MSG_DONTWAIT (which never wait).
    static func applies(_ flags: Int32) -> Bool {
        flags & MSG_WAITALL != 0 && flags & (MSG_PEEK | SocketSyscalls.MSG_DONTWAIT) == 0
    }

    typealias Piece = MessageSyscalls.Incoming.Received

    /// The address and control data of the first piece of a recvmsg that
    /// parked, per thread (recording only; the thread's received bytes are
    /// in `GuestThread.received`).
    static let pending = Mutex<[ObjectIdentifier: Piece]>([:])

    /// recvfrom(fd, buffer, count, flags, NULL, NULL) with MSG_WAITALL.
    static func receive(_ c: SyscallCall, _ file: OpenFile, buffer: UInt64, count: Int, flags: Int32) throws -> SyscallOutcome {
        try receive(c, file, count: count, flags: flags, take: { fd, room, f in
            var data = [UInt8](repeating: 0, count: room)
            let n = data.withUnsafeMutableBytes { b in
                hostSyscall(SYS.recvfrom, Int(fd), Int(bitPattern: b.baseAddress), b.count, Int(f), 0, 0)
            }
            return Piece(result: n, data: n > 0 ? Array(data[0..<min(Int(n), room)]) : [], name: [], nameLength: 0,
                         control: [], flags: 0)
        }, deliver: { effects, got throws(Errno) in
            if !got.data.isEmpty { try effects.write(buffer, got.data) }
        })
    }

    /// recvmsg(fd, msg, flags) with MSG_WAITALL: the same, scattered into
    /// the message's iovecs, with the address, ancillary data (received
    /// descriptors numbered for the guest, then installed in both modes)
    /// and msg_flags (the host calls' flags, MSG_CMSG_CLOEXEC only as the
    /// guest asked) written as ____sys_recvmsg does.
    static func receiveMessage(_ c: SyscallCall, _ file: OpenFile, _ message: MessageSyscalls.Incoming,
                               flags: Int32) throws -> SyscallOutcome {
        var received: [Int32] = []
        let process = c.process
        let outcome = try receive(c, file, count: message.total, flags: flags, take: { fd, room, f in
            message.hostReceive(fd, flags: f, room: room)
        }, deliver: { effects, got throws(Errno) in
            var probe = process.files
            try message.deliver(got, guestFlags: flags, &effects, numbering: &probe, &received)
        })
        if case .result(let r) = outcome, r >= 0 {
            try message.install(c, received: received, closeOnExec: flags & MessageSyscalls.MSG_CMSG_CLOEXEC != 0)
        }
        return outcome
    }

    /// The shared shape: `take` is one host receive of at most `room`
    /// bytes with the given flags, `deliver` writes what was received (the
    /// data of every piece, the first piece's address and control data or
    /// the one that carried descriptors, every piece's flags) to the guest
    /// in the host part (not on an error with nothing received).
    static func receive(_ c: SyscallCall, _ file: OpenFile, count: Int, flags: Int32,
                        take: @escaping (Int32, Int, Int32) -> Piece,
                        deliver: @escaping (inout HostEffects, Piece) throws(Errno) -> Void) throws -> SyscallOutcome {
        let thread = c.process.current
        let key = ObjectIdentifier(thread)
        // One attempt without waiting: nil while the call must wait on.
        var last: Piece?
        let attempt = { (fd: Int32) -> Int64? in
            let want = count - thread.received.count
            let got = take(fd, max(want, 0), flags & ~MSG_WAITALL | SocketSyscalls.MSG_DONTWAIT)
            let n = got.result
            if n == Errno.again.result { return nil }
            if n >= 0 {
                if thread.received.isEmpty, n > 0 || got.carriesRights { pending.withLock { $0[key] = got } }
                if got.carriesRights { last = got }
                thread.received += got.data
                thread.receivedFlags |= got.flags
            }
            // A datagram is one whole message whatever its size; a stream
            // stops after descriptors.
            if n > 0 && thread.received.count < count && !got.carriesRights && isStream(fd) { return nil }
            return n < 0 && thread.received.isEmpty ? n : Int64(thread.received.count)
        }
        var finished: Int64?
        if c.interrupted {
            finished = thread.received.isEmpty ? Errno.intr.result : Int64(thread.received.count)
        } else {
            let readiness = HostReadiness(fd: file.hostFD ?? -1, events: Int16(POLLIN))
            let parked = c.park(.host(readiness)) {
                guard let fd = file.hostFD, HostTransfer.mayWait(file) else { return true }
                finished = attempt(fd)
                return finished != nil
            }
            if let parked { return parked }
        }
        let process = c.process
        let outcome = Result { () throws -> SyscallOutcome in
            .result(try c.host { effects throws(Errno) -> Int64 in
                var result = finished
                if result == nil {
                    guard let h = file.hostFD else { throw .badf }
                    if HostTransfer.mayWait(file) {
                        // Nothing else could run: detrec waits for the rest,
                        // until a timer of the process would end the wait.
                        while result == nil {
                            result = attempt(h)
                            if result == nil, !TimerSyscalls.waitReady(process, fd: h, events: Int16(POLLIN)) {
                                result = thread.received.isEmpty ? Errno.intr.result : Int64(thread.received.count)
                            }
                        }
                    } else {
                        // A descriptor that never waits: the call as it is.
                        let got = take(h, count, flags)
                        if got.result >= 0 {
                            pending.withLock { $0[key] = got }
                            thread.received += got.data
                            thread.receivedFlags |= got.flags
                        }
                        result = got.result
                    }
                }
                guard let result, result >= 0 else { return result ?? 0 }
                var whole = last ?? pending.withLock { $0[key] }
                    ?? Piece(result: 0, data: [], name: [], nameLength: 0, control: [], flags: 0)
                whole.data = thread.received
                whole.flags = thread.receivedFlags
                try deliver(&effects, whole)
                return result
            })
        }
        pending.withLock { _ = $0.removeValue(forKey: key) }
        return try outcome.get()
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
