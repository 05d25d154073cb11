import Glibc

/// POSIX message queues (mq_overview(7)): host mqueues while recording.
/// The descriptor is the host's, so poll, select and epoll see it as
/// Linux's mqueue fds (POLLIN with a message, POLLOUT with room), and the
/// priorities, O_NONBLOCK's EAGAIN, the limits and the names are the host
/// kernel's. A send or receive that would wait parks the thread until the
/// host descriptor is ready (or its timeout), so other recorded threads
/// and processes run meanwhile; replay takes every result and message from
/// the trace. The queues are host objects: processes outside the recording
/// may open them, and they outlast the recording unless unlinked (as files do).
enum PosixMessageQueues {
    static let SIGEV_NONE: Int32 = 1

    static func register(_ t: inout SyscallTable) {
        t.add(SYS.mq_open, .host, note: "host mqueues: pollable descriptors", mqOpen)
        t.add(SYS.mq_unlink, passthrough(.string))
        t.addOutcome(SYS.mq_timedsend, .host, note: "a send that would wait parks the thread") { c in try transfer(c, send: true) }
        t.addOutcome(SYS.mq_timedreceive, .host, note: "a receive that would wait parks the thread") { c in try transfer(c, send: false) }
        t.add(SYS.mq_notify, .host, note: "unregistering and SIGEV_NONE; SIGEV_SIGNAL and SIGEV_THREAD refused (ENOSYS)", mqNotify)
        t.add(SYS.mq_getsetattr, passthrough(.fd, .inputOrNull(64), .outOrNull(64)))
    }

    static func mqOpen(_ c: SyscallCall) throws -> Int64 {
        let name = try c.cString(0, limit: SyscallCall.pathMax)
        let flags = c.int(1), mode = c.int(2)
        var attributes: [UInt8]?
        if flags & O_CREAT != 0, c.arg(3) != 0 { attributes = try c.read(c.arg(3), count: 64) }   // struct mq_attr with its reserved longs
        return try c.newDescriptor(name: "/" + String(decoding: name, as: UTF8.self), closeOnExec: flags & O_CLOEXEC != 0) { _ in
            (name + [0]).withUnsafeBufferPointer { n in
                if var a = attributes {
                    return a.withUnsafeMutableBytes { hostSyscall(SYS.mq_open, Int(bitPattern: n.baseAddress), Int(flags | O_CLOEXEC), Int(mode),
                                                                  Int(bitPattern: $0.baseAddress)) }
                }
                return hostSyscall(SYS.mq_open, Int(bitPattern: n.baseAddress), Int(flags | O_CLOEXEC), Int(mode), 0)
            }
        }
    }

    /// mq_timedsend and mq_timedreceive: the timeout is absolute on CLOCK_REALTIME.
    static func transfer(_ c: SyscallCall, send: Bool) throws -> SyscallOutcome {
        let file = try c.file(0)
        var timeout: [UInt8]?
        var deadline: MonotonicInstant?
        if c.arg(4) != 0 {
            let raw = try c.read(c.arg(4), count: 16)
            timeout = raw
            let (sec, nsec) = try TimerSyscalls.timespecFields(raw, at: 0)
            // An invalid timeout is the host's EINVAL, without waiting.
            guard sec >= 0, nsec >= 0, nsec < 1_000_000_000 else { return .result(try host(c, file, send: send, timeout: raw)) }
            var now = timespec()
            clock_gettime(CLOCK_REALTIME, &now)
            deadline = MonotonicInstant.now() + (Nanoseconds(seconds: sec, nanoseconds: nsec)
                                                 - Nanoseconds(seconds: Int64(now.tv_sec), nanoseconds: Int64(now.tv_nsec)))
        }
        let wait = HostReadiness(fd: file.hostFD ?? -1, events: Int16(send ? POLLOUT : POLLIN), deadline: deadline)
        // A non-blocking descriptor never waits: its call fails with EAGAIN.
        let ready = { file.hostFD.map { fcntl($0, F_GETFL) & O_NONBLOCK != 0 } ?? true || wait.isReady() }
        if let parked = c.park(.host(wait), unless: ready) { return parked }
        return .result(try host(c, file, send: send, timeout: timeout))
    }

    /// The host call, which now will not wait (or nothing else could run):
    /// a past timeout fails at once with ETIMEDOUT, as on Linux.
    static func host(_ c: SyscallCall, _ file: OpenFile, send: Bool, timeout: [UInt8]?) throws -> Int64 {
        let buffer = c.arg(1), size = min(try c.size(2), maxTransfer)
        let message = send ? try c.read(buffer, count: size) : []
        if !send { try c.checkWritable(buffer, count: size) }
        let priorityArgument = c.arg(3)
        return try c.host { effects throws(Errno) -> Int64 in
            guard let fd = file.hostFD else { throw .badf }
            var ts = timeout ?? []
            var received = [UInt8](repeating: 0, count: send ? 0 : size)
            var priority: UInt32 = 0
            let n = ts.withUnsafeMutableBytes { t -> Int64 in
                let tsAddress = timeout == nil ? 0 : Int(bitPattern: t.baseAddress)
                if send {
                    return message.withUnsafeBufferPointer { m in
                        hostSyscall(SYS.mq_timedsend, Int(fd), Int(bitPattern: m.baseAddress), m.count,
                                    Int(truncatingIfNeeded: priorityArgument), tsAddress)
                    }
                }
                return received.withUnsafeMutableBufferPointer { m in
                    withUnsafeMutablePointer(to: &priority) { p in
                        hostSyscall(SYS.mq_timedreceive, Int(fd), Int(bitPattern: m.baseAddress), m.count, Int(bitPattern: p), tsAddress)
                    }
                }
            }
            guard !send, n >= 0 else { return n }
            try effects.write(buffer, received[0..<Int(n)])
            if priorityArgument != 0 { try effects.write(priorityArgument, Bytes.u32(priority)) }
            return n
        }
    }

    static func mqNotify(_ c: SyscallCall) throws -> Int64 {
        if c.arg(1) != 0 {
            let event = try c.read(c.arg(1), count: 64)
            let notify = Int32(bitPattern: Bytes.u32(event, at: 12))
            guard notify == SIGEV_NONE else {
                // The host would notify detrec, not the guest.
                c.process.report("mq_notify with SIGEV_SIGNAL or SIGEV_THREAD is not supported; returning ENOSYS",
                                 key: 0x1_5000_0010, rip: c.rip)
                throw Errno.nosys
            }
        }
        return try passthrough(.fd, .inputOrNull(64)).handler(c)
    }
}
