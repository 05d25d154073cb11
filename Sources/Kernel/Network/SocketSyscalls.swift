import Glibc

/// Sockets: performed on the host while recording (loopback TCP, Unix
/// sockets, UDP), with new descriptors numbered by the guest's table and
/// calls that would wait parking their thread so the others can run.
enum SocketSyscalls {
    // Linux's values; Glibc imports some as enums or Int.
    static let SOCK_CLOEXEC: Int32 = 0o2000000, SOCK_NONBLOCK: Int32 = 0o4000
    static let MSG_NOSIGNAL: Int32 = 0x4000, MSG_DONTWAIT: Int32 = 0x40, MSG_TRUNC: Int32 = 0x20

    static func register(_ t: inout SyscallTable) {
        t.add(SYS.socket, socket)
        t.add(SYS.socketpair, socketpair)
        t.add(SYS.bind, .host, note: "a relative Unix socket path is bound in the process's working directory, one through /proc in the guest's", bind)
        t.addOutcome(SYS.connect, .host, note: "a blocking connect becomes a non-blocking one the thread parks on", connect)
        t.add(SYS.listen, passthrough(.fd, .value))
        t.add(SYS.shutdown, passthrough(.fd, .value))
        t.addOutcome(SYS.accept, .host) { c in try accept(c, flags: 0) }
        t.addOutcome(SYS.accept4, .host) { c in try accept(c, flags: c.int(3)) }
        t.add(SYS.getsockname) { c in try addressOut(c, number: SYS.getsockname) }
        t.add(SYS.getpeername) { c in try addressOut(c, number: SYS.getpeername) }
        t.add(SYS.setsockopt, passthrough(.fd, .value, .value, .inputSized(sizeArg: 4), .value))
        t.add(SYS.getsockopt, getsockopt)
        t.addOutcome(SYS.sendto, .host, note: "a blocking stream socket is written in parts while other threads run", sendto)
        t.addOutcome(SYS.recvfrom, .host, note: "MSG_WAITALL parks for the rest while other threads run; MSG_TRUNC on TCP discards", recvfrom)
    }

    /// bind(2), with the process's umask and, for a relative Unix socket
    /// path, its working directory (`UnixSocketPath`).
    static func bind(_ c: SyscallCall) throws -> Int64 {
        let file = try c.file(0)
        let address = try c.read(c.arg(1), count: min(try c.size(2), 4096))
        let target = UnixSocketPath.target(address, c, binding: true)
        let umask = c.process.umask
        return try c.host { _ throws(Errno) -> Int64 in
            guard let h = file.hostFD else { throw .badf }
            let r = try UnixSocketPath.resolving(target) { address throws(Errno) -> Int64 in
                FileCreationMask.applying(umask) {
                    address.withUnsafeBytes { hostSyscall(SYS.bind, Int(h), Int(bitPattern: $0.baseAddress), address.count) }
                }
            }
            if r == 0 { UnixSocketPath.bound(h, target) }
            return r
        }
    }

    /// connect(2). While other threads could run, a blocking socket
    /// connects without waiting (O_NONBLOCK for the one call) and the
    /// thread parks until the socket is writable; then SO_ERROR says how it
    /// ended, as the blocking call would have returned it.
    static func connect(_ c: SyscallCall) throws -> SyscallOutcome {
        let file = try c.file(0)
        let length = min(try c.size(2), 4096)
        let address = try c.read(c.arg(1), count: length)
        let fd = file.hostFD ?? -1   // none on replay, which never calls the host
        let thread = c.process.current
        let target = UnixSocketPath.target(address, c, binding: false)
        let call = { () -> Int64 in
            UnixSocketPath.resolving(target) { address in
                address.withUnsafeBytes { hostSyscall(SYS.connect, Int(fd), Int(bitPattern: $0.baseAddress), $0.count) }
            }
        }
        return try HostTransfer.withoutWaiting(c, on: { .host(HostReadiness(fd: fd, events: Int16(POLLOUT))) }, attempt: {
            if thread.connecting {
                var error: Int32 = 0
                var size = socklen_t(4)
                guard Glibc.getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &size) == 0 else { return -Int64(errno) }
                return -Int64(error)
            }
            guard HostTransfer.mayWait(file) else { return call() }
            let flags = fcntl(fd, F_GETFL)
            _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
            let r = call()
            _ = fcntl(fd, F_SETFL, flags)
            guard r == -Int64(EINPROGRESS) else { return r }
            thread.connecting = true
            return nil
        }, plain: call)
    }

    static func socket(_ c: SyscallCall) throws -> Int64 {
        let type = c.int(1)
        return try c.newDescriptor(name: "socket:", closeOnExec: type & SOCK_CLOEXEC != 0) { _ in
            hostSyscall(SYS.socket, Int(c.int(0)), Int(type | SOCK_CLOEXEC), Int(c.int(2)))
        }
    }

    static func socketpair(_ c: SyscallCall) throws -> Int64 {
        let type = c.int(1)
        return try c.newDescriptorPair(name: "socket:", closeOnExec: type & SOCK_CLOEXEC != 0, at: 3,
                                       fedByRecordingOnly: c.int(0) == AF_UNIX) { pair in
            let rc = hostSyscall(SYS.socketpair, Int(c.int(0)), Int(type | SOCK_CLOEXEC), Int(c.int(2)), Int(bitPattern: pair))
            return rc < 0 ? rc : 0
        }
    }

    /// An address the kernel writes back, with its in/out length word.
    static func addressSlot(_ c: SyscallCall, address: Int, length: Int) throws(Errno) -> Int? {
        guard c.arg(address) != 0 else { return nil }
        let n: UInt32 = try c.readValue(c.arg(length))
        guard Int32(bitPattern: n) >= 0 else { throw .inval }
        try c.checkWritable(c.arg(length), count: 4)
        try c.checkWritable(c.arg(address), count: Int(min(n, 4096)))
        return Int(min(n, 4096))
    }

    /// Runs a host call that fills a sockaddr and its length, copying both
    /// back; `adjust`, when given, replaces the whole address the host
    /// reported before it is copied.
    static func withAddress(_ c: SyscallCall, _ effects: inout HostEffects, address: Int, length: Int, capacity: Int?,
                            adjust: (([UInt8]) -> [UInt8])? = nil,
                            _ call: (Int, Int) -> Int64) throws(Errno) -> Int64 {
        // Room for any sockaddr the host reports, so `adjust` sees it whole.
        let room = adjust == nil ? capacity ?? 0 : max(capacity ?? 0, 128)
        var buffer = [UInt8](repeating: 0, count: room)
        var len = UInt32(room)
        let r = buffer.withUnsafeMutableBytes { b in
            withUnsafeMutablePointer(to: &len) { l in
                capacity == nil ? call(0, 0) : call(Int(bitPattern: b.baseAddress), Int(bitPattern: l))
            }
        }
        if r >= 0, let capacity {
            if let adjust, len <= UInt32(room) {
                // As the kernel: the address cut to the caller's room, the length its own.
                let whole = adjust(Array(buffer.prefix(Int(len))))
                try effects.write(c.arg(address), Array(whole.prefix(capacity)))
                try effects.write(c.arg(length), Bytes.u32(UInt32(whole.count)))
                return r
            }
            try effects.write(c.arg(address), Array(buffer.prefix(min(Int(len), capacity))))
            try effects.write(c.arg(length), Bytes.u32(len))
        }
        return r
    }

    static func accept(_ c: SyscallCall, flags: Int32) throws -> SyscallOutcome {
        let file = try c.file(0)
        guard flags & ~(SOCK_CLOEXEC | SOCK_NONBLOCK) == 0 else { throw Errno.inval }
        let capacity = try addressSlot(c, address: 1, length: 2)
        if let parked = c.waitUntilReady(file, events: Int16(POLLIN)) { return parked }
        return .result(try c.newDescriptor(name: "socket:", closeOnExec: flags & SOCK_CLOEXEC != 0) { effects throws(Errno) -> Int64 in
            guard let h = file.hostFD else { throw .badf }
            return try withAddress(c, &effects, address: 1, length: 2, capacity: capacity) { a, l in
                hostSyscall(SYS.accept4, Int(h), a, l, Int(flags | SOCK_CLOEXEC))
            }
        })
    }

    static func addressOut(_ c: SyscallCall, number: UInt64) throws -> Int64 {
        let file = try c.file(0)
        guard let capacity = try addressSlot(c, address: 1, length: 2) else { throw Errno.fault }
        return try c.host { effects throws(Errno) -> Int64 in
            guard let h = file.hostFD else { throw .badf }
            // A socket bound through the guest's /proc keeps the name it was given.
            let adjust: (([UInt8]) -> [UInt8])? = number == SYS.getsockname ? { UnixSocketPath.ownName(h, $0) } : nil
            return try withAddress(c, &effects, address: 1, length: 2, capacity: capacity, adjust: adjust) { a, l in
                hostSyscall(number, Int(h), a, l)
            }
        }
    }

    static func getsockopt(_ c: SyscallCall) throws -> Int64 {
        let file = try c.file(0)
        guard let capacity = try addressSlot(c, address: 3, length: 4) else { throw Errno.fault }
        return try c.host { effects throws(Errno) -> Int64 in
            guard let h = file.hostFD else { throw .badf }
            return try withAddress(c, &effects, address: 3, length: 4, capacity: capacity) { a, l in
                hostSyscall(SYS.getsockopt, Int(h), Int(c.int(1)), Int(c.int(2)), a, l)
            }
        }
    }

    static func sendto(_ c: SyscallCall) throws -> SyscallOutcome {
        let file = try c.file(0)
        let count = min(try c.size(2), maxTransfer)
        let bytes = try c.read(c.arg(1), count: count)
        var address: [UInt8] = []
        if c.arg(4) != 0 { address = try c.read(c.arg(4), count: Int(min(c.arg(5), 128))) }
        let flags = c.int(3)
        let target = UnixSocketPath.target(address, c, binding: false)
        // Datagrams go whole or not at all: only a stream is written in parts.
        let send: (Int32, UnsafeRawBufferPointer) -> Int64 = { h, b in
            UnixSocketPath.resolving(target) { address in
                address.withUnsafeBytes { a in
                    hostSyscall(SYS.sendto, Int(h), Int(bitPattern: b.baseAddress), b.count, Int(flags | MSG_NOSIGNAL),
                                Int(bitPattern: address.isEmpty ? nil : a.baseAddress), address.count)
                }
            }
        }
        if flags & MSG_DONTWAIT != 0 || !address.isEmpty {
            let r = try c.host { _ throws(Errno) -> Int64 in
                guard let h = file.hostFD else { throw .badf }
                return bytes.withUnsafeBytes { send(h, $0) }
            }
            try FileSyscalls.echo(c, file, bytes, r)
            if r == Errno.pipe.result && flags & MSG_NOSIGNAL == 0 { HostTransfer.brokenPipe(c) }
            return .result(r)
        }
        return try HostTransfer.write(c, file, bytes, flags: flags, plain: send)
    }

    static func recvfrom(_ c: SyscallCall) throws -> SyscallOutcome {
        let file = try c.file(0)
        let count = min(try c.size(2), maxTransfer)
        try c.checkWritable(c.arg(1), count: count)
        let capacity = try addressSlot(c, address: 4, length: 5)
        let flags = c.int(3)
        if ReceiveAll.applies(flags), capacity == nil {
            return try ReceiveAll.receive(c, file, buffer: c.arg(1), count: count, flags: flags)
        }
        if flags & MSG_DONTWAIT == 0, let parked = c.waitUntilReady(file, events: Int16(POLLIN)) { return parked }
        let buffer = c.arg(1)
        return .result(try c.host { effects throws(Errno) -> Int64 in
            guard let h = file.hostFD else { throw .badf }
            // MSG_TRUNC on TCP discards what it counts: nothing reaches the buffer.
            let discards = flags & MSG_TRUNC != 0 && ReceiveAll.isTCP(h)
            var data = [UInt8](unsafeUninitializedCapacity: count) { _, n in n = count }
            let outcome: Result<Int64, Errno> = data.withUnsafeMutableBytes { d in
                Result { () throws(Errno) -> Int64 in
                    try withAddress(c, &effects, address: 4, length: 5, capacity: capacity) { a, l in
                        hostSyscall(SYS.recvfrom, Int(h), Int(bitPattern: d.baseAddress), count, Int(flags), a, l)
                    }
                }
            }
            let n = try outcome.get()
            // MSG_TRUNC returns a datagram's real length, which may exceed the buffer.
            if n > 0 && !discards { try effects.write(buffer, data[0..<min(Int(n), count)]) }
            return n
        })
    }
}
