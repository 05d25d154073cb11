import Glibc

/// sendmsg, recvmsg, sendmmsg and recvmmsg: performed on the host while
/// recording, with the guest's struct msghdr carried across (address, iovec
/// data, ancillary data) and what the host wrote back logged.
///
/// SCM_RIGHTS carries descriptors: on the way out each guest descriptor
/// becomes detrec's host descriptor for it; on the way in each received
/// host descriptor gets the lowest free guest number, which the guest's
/// control message then holds. After the host part, both modes read those
/// numbers back from the guest's control buffer and install them, with a
/// host descriptor while recording and none on replay, so the table is the
/// same. Other ancillary data (SCM_CREDENTIALS, timestamps) passes as the
/// host has it: a credential's pid is the host's (detrec's) pid.
enum MessageSyscalls {
    /// A host msghdr over one vector, with the name and control buffers
    /// (an empty one passed as NULL, as the guest's own would be).
    static func header(name: UnsafeMutableRawBufferPointer, vector: UnsafeMutablePointer<iovec>,
                       control: UnsafeMutableRawBufferPointer) -> msghdr {
        var m = msghdr()
        m.msg_name = name.count == 0 ? nil : name.baseAddress
        m.msg_namelen = socklen_t(name.count)
        m.msg_iov = vector
        m.msg_iovlen = 1
        m.msg_control = control.count == 0 ? nil : control.baseAddress
        m.msg_controllen = control.count
        return m
    }

    static let SOL_SOCKET: Int32 = 1, SCM_RIGHTS: Int32 = 1
    static let MSG_CMSG_CLOEXEC: Int32 = 0x4000_0000, MSG_WAITFORONE: Int32 = 0x10000
    static let headerSize = 56, multiSize = 64
    /// Linux's UIO_MAXIOV, and a bound on ancillary data (optmem_max's order).
    static let maxVectors = 1024, maxControl = 64 << 10

    static func register(_ t: inout SyscallTable) {
        t.addOutcome(SYS.sendmsg, .host, note: "a blocking socket is written in parts while other threads run", sendmsg)
        t.addOutcome(SYS.recvmsg, .host, note: "MSG_WAITALL parks for the rest while other threads run; a message with descriptors ends it") { c in
            let file = try c.file(0)
            let message = try Incoming(c, at: c.arg(1))
            let flags = c.int(2)
            if ReceiveAll.applies(flags) { return try ReceiveAll.receiveMessage(c, file, message, flags: flags) }
            if flags & SocketSyscalls.MSG_DONTWAIT == 0, let parked = c.waitUntilReady(file, events: Int16(POLLIN)) { return parked }
            var received: [Int32] = []
            let r = try c.host { effects throws(Errno) -> Int64 in
                guard let h = file.hostFD else { throw .badf }
                var probe = c.process.files
                return try message.receive(h, flags: flags, &effects, numbering: &probe, &received)
            }
            if r >= 0 { try message.install(c, received: received, closeOnExec: flags & MSG_CMSG_CLOEXEC != 0) }
            return .result(r)
        }
        t.addOutcome(SYS.sendmmsg, .host, note: "a blocking socket is written message by message while other threads run", sendmmsg)
        t.addOutcome(SYS.recvmmsg, .host, recvmmsg)
    }

    /// sendmsg. A blocking socket is written as write(2) is
    /// (`HostTransfer.write`): without waiting, the thread parking until
    /// there is room for the rest; the address and ancillary data go with
    /// the first part (a datagram goes whole or not at all). EPIPE sends
    /// SIGPIPE unless MSG_NOSIGNAL.
    static func sendmsg(_ c: SyscallCall) throws -> SyscallOutcome {
        let file = try c.file(0)
        let message = try Outgoing(c, at: c.arg(1))
        let flags = c.int(2)
        let whole = message.data.count
        if flags & SocketSyscalls.MSG_DONTWAIT != 0 {
            let r = try c.host { _ throws(Errno) -> Int64 in
                guard let h = file.hostFD else { throw .badf }
                return message.data.withUnsafeBytes { message.send(h, $0, first: true, flags: flags) }
            }
            try FileSyscalls.echo(c, file, message.data, r)
            if r == Errno.pipe.result && flags & SocketSyscalls.MSG_NOSIGNAL == 0 { HostTransfer.brokenPipe(c) }
            return .result(r)
        }
        return try HostTransfer.write(c, file, message.data, flags: flags, part: { h, part, first in
            message.send(h, part, first: first, flags: flags | SocketSyscalls.MSG_DONTWAIT)
        }, plain: { h, part in
            // Only the call's first host part comes here: nothing was written yet.
            message.send(h, part, first: part.count == whole, flags: flags)
        })
    }

    /// A message to send: everything read from the guest before the host part.
    struct Outgoing {
        var name: [UInt8]
        var data: [UInt8]
        var control: [UInt8]
        /// Where each SCM_RIGHTS descriptor sits in `control`, and its file.
        var rights: [(offset: Int, file: OpenFile)]
        /// Where the host call of a Unix socket path in `name` goes (`UnixSocketPath`).
        var target: UnixSocketPath.Target

        init(_ c: SyscallCall, at address: UInt64) throws(Errno) {
            let header = try c.read(address, count: headerSize)
            let nameAddress = Bytes.u64(header, at: 0), nameLength = Int(Bytes.u32(header, at: 8))
            name = nameAddress == 0 || nameLength == 0 ? [] : try c.read(nameAddress, count: min(nameLength, 128))
            guard nameLength <= 128 || nameAddress == 0 else { throw .inval }
            target = UnixSocketPath.target(name, c, binding: false)
            let vectors = try iovecs(c, at: Bytes.u64(header, at: 16), count: Bytes.u64(header, at: 24))
            data = []
            for (base, length) in vectors {
                let take = min(length, maxTransfer - data.count)
                data += try c.read(base, count: take)
            }
            let controlAddress = Bytes.u64(header, at: 32), controlLength = Bytes.u64(header, at: 40)
            guard controlLength <= UInt64(maxControl) else { throw Errno(ENOBUFS) }
            control = controlLength == 0 ? [] : try c.read(controlAddress, count: Int(controlLength))
            rights = []
            var at = 0
            while at + 16 <= control.count {
                let length = Bytes.u64(control, at: at)
                guard length >= 16, length <= UInt64(control.count - at) else { throw .inval }
                let level = Int32(bitPattern: Bytes.u32(control, at: at + 8)), type = Int32(bitPattern: Bytes.u32(control, at: at + 12))
                if level == SOL_SOCKET && type == SCM_RIGHTS {
                    for k in 0..<(Int(length) - 16) / 4 {
                        let offset = at + 16 + 4 * k
                        guard let f = c.process.files[Int32(bitPattern: Bytes.u32(control, at: offset))] else { throw .badf }
                        rights.append((offset, f))
                    }
                }
                at += (Int(length) + 7) & ~7
            }
        }

        /// The host sendmsg of `part` of the data (all of it, or what a
        /// blocking send has left), with the address and the ancillary data
        /// (host descriptors in SCM_RIGHTS) when it is the `first` part.
        func send(_ h: Int32, _ part: UnsafeRawBufferPointer, first: Bool, flags: Int32) -> Int64 {
            var control = first ? self.control : []
            if first {
                for (offset, file) in rights {
                    guard let fd = file.hostFD else { return Errno.badf.result }
                    file.mayBeHeldOutside()
                    control.replaceSubrange(offset..<offset + 4, with: Bytes.i32(fd))
                }
            }
            return UnixSocketPath.resolving(first ? target : .asIs([])) { name in
                var name = name
                return name.withUnsafeMutableBytes { n in
                control.withUnsafeMutableBytes { ctl in
                    var vector = iovec(iov_base: UnsafeMutableRawPointer(mutating: part.baseAddress), iov_len: part.count)
                    return withUnsafeMutablePointer(to: &vector) { v in
                        var m = header(name: n, vector: v, control: ctl)
                        return withUnsafePointer(to: &m) { hostSyscall(SYS.sendmsg, Int(h), Int(bitPattern: $0), Int(flags | SocketSyscalls.MSG_NOSIGNAL)) }
                    }
                }
            } }
        }
    }

    /// A message to receive into: the guest's buffers, checked writable.
    struct Incoming {
        let header: UInt64
        let nameAddress: UInt64, nameCapacity: Int
        let vectors: [(UInt64, Int)]
        let controlAddress: UInt64, controlCapacity: Int

        init(_ c: SyscallCall, at address: UInt64) throws(Errno) {
            header = address
            let raw = try c.read(address, count: headerSize)
            try c.checkWritable(address, count: headerSize)
            nameAddress = Bytes.u64(raw, at: 0)
            let nameLength = Int32(bitPattern: Bytes.u32(raw, at: 8))
            guard nameLength >= 0 else { throw .inval }
            nameCapacity = nameAddress == 0 ? 0 : min(Int(nameLength), 128)
            if nameCapacity > 0 { try c.checkWritable(nameAddress, count: nameCapacity) }
            var budget = maxTransfer
            vectors = try iovecs(c, at: Bytes.u64(raw, at: 16), count: Bytes.u64(raw, at: 24)).map { v in
                defer { budget -= min(budget, v.1) }
                return (v.0, min(v.1, budget))
            }
            for (base, length) in vectors { try c.checkWritable(base, count: length) }
            controlAddress = Bytes.u64(raw, at: 32)
            controlCapacity = controlAddress == 0 ? 0 : Int(min(Bytes.u64(raw, at: 40), UInt64(maxControl)))
            if controlCapacity > 0 { try c.checkWritable(controlAddress, count: controlCapacity) }
        }

        var total: Int { vectors.reduce(0) { $0 + $1.1 } }

        /// What one host recvmsg returned, before it reaches the guest.
        struct Received {
            var result: Int64
            var data: [UInt8]
            var name: [UInt8]
            var nameLength: UInt32
            var control: [UInt8]
            var flags: Int32

            /// Whether the control data holds descriptors, or was cut
            /// (MSG_CTRUNC): a stream receive stops after such a message.
            var carriesRights: Bool {
                if flags & 0x8 != 0 { return true }
                var cursor = 0
                while cursor + 16 <= control.count {
                    let length = Int(Bytes.u64(control, at: cursor))
                    guard length >= 16, length <= control.count - cursor else { return false }
                    if Int32(bitPattern: Bytes.u32(control, at: cursor + 8)) == SOL_SOCKET,
                       Int32(bitPattern: Bytes.u32(control, at: cursor + 12)) == SCM_RIGHTS { return true }
                    cursor += (length + 7) & ~7
                }
                return false
            }
        }

        /// The host recvmsg into buffers of the guest's sizes (`room` bytes
        /// of data), received descriptors close-on-exec in detrec.
        func hostReceive(_ h: Int32, flags: Int32, room: Int? = nil) -> Received {
            var data = [UInt8](repeating: 0, count: room ?? total)
            var name = [UInt8](repeating: 0, count: nameCapacity)
            var control = [UInt8](repeating: 0, count: controlCapacity)
            var m = msghdr()
            let n: Int64 = name.withUnsafeMutableBytes { nb in
                data.withUnsafeMutableBytes { d in
                    control.withUnsafeMutableBytes { ctl in
                        var vector = iovec(iov_base: d.baseAddress, iov_len: d.count)
                        return withUnsafeMutablePointer(to: &vector) { v in
                            m = MessageSyscalls.header(name: nb, vector: v, control: ctl)
                            return withUnsafeMutablePointer(to: &m) {
                                hostSyscall(SYS.recvmsg, Int(h), Int(bitPattern: $0), Int(flags | MSG_CMSG_CLOEXEC))
                            }
                        }
                    }
                }
            }
            guard n >= 0 else { return Received(result: n, data: [], name: [], nameLength: 0, control: [], flags: 0) }
            // MSG_TRUNC may report more than the buffers hold.
            data.removeSubrange(min(Int(n), data.count)...)
            control.removeSubrange(min(Int(m.msg_controllen), control.count)...)
            return Received(result: n, data: data, name: name, nameLength: UInt32(m.msg_namelen), control: control,
                            flags: m.msg_flags)
        }

        /// The host recvmsg; writes data, address, ancillary data (with
        /// guest numbers for received descriptors, whose host descriptors
        /// go to `received`) and the header's lengths and flags.
        func receive(_ h: Int32, flags: Int32, _ effects: inout HostEffects, numbering probe: inout FileTable,
                     _ received: inout [Int32]) throws(Errno) -> Int64 {
            let got = hostReceive(h, flags: flags)
            guard got.result >= 0 else { return got.result }
            try deliver(got, guestFlags: flags, &effects, numbering: &probe, &received)
            return got.result
        }

        /// Writes what `got` holds to the guest's message (`guestFlags`: the
        /// call's flags, for MSG_CMSG_CLOEXEC).
        func deliver(_ got: Received, guestFlags flags: Int32, _ effects: inout HostEffects, numbering probe: inout FileTable,
                     _ received: inout [Int32]) throws(Errno) {
            let data = got.data
            var control = got.control
            var at = 0
            for (base, length) in vectors where at < data.count {
                let take = min(length, data.count - at)
                try effects.write(base, data[at..<at + take])
                at += take
            }
            var controlLength = control.count
            var truncated = false
            // Received descriptors get the guest numbers they will have.
            var cursor = 0
            scan: while cursor + 16 <= controlLength {
                let length = Int(Bytes.u64(control, at: cursor))
                guard length >= 16, length <= controlLength - cursor else { break }
                if Int32(bitPattern: Bytes.u32(control, at: cursor + 8)) == SOL_SOCKET,
                   Int32(bitPattern: Bytes.u32(control, at: cursor + 12)) == SCM_RIGHTS {
                    let count = (length - 16) / 4
                    for k in 0..<count {
                        let offset = cursor + 16 + 4 * k
                        let hostFD = Int32(bitPattern: Bytes.u32(control, at: offset))
                        guard let fd = probe.lowestFree() else {
                            // No number left under RLIMIT_NOFILE (scm_detach_fds): the
                            // rest are closed, the message ends with the k installed
                            // (none: no SCM_RIGHTS message at all), MSG_CTRUNC is set.
                            for rest in k..<count { Glibc.close(Int32(bitPattern: Bytes.u32(control, at: cursor + 16 + 4 * rest))) }
                            truncated = true
                            if k > 0 {
                                control.replaceSubrange(cursor..<cursor + 8, with: Bytes.u64(UInt64(16 + 4 * k)))
                                controlLength = min(controlLength, cursor + ((16 + 4 * k + 7) & ~7))
                            } else {
                                controlLength = cursor
                            }
                            break scan
                        }
                        probe.install(OpenFile(hostFD: nil, path: ""), at: fd, closeOnExec: false)
                        received.append(hostFD)
                        control.replaceSubrange(offset..<offset + 4, with: Bytes.i32(fd))
                    }
                }
                cursor += (length + 7) & ~7
            }
            if nameCapacity > 0 { try effects.write(nameAddress, Array(got.name.prefix(min(Int(got.nameLength), nameCapacity)))) }
            if controlLength > 0 { try effects.write(controlAddress, Array(control.prefix(controlLength))) }
            // With no msg_name Linux leaves msg_namelen alone (____sys_recvmsg).
            if nameAddress != 0 { try effects.write(header + 8, Bytes.u32(got.nameLength)) }
            try effects.write(header + 40, Bytes.u64(UInt64(controlLength)))
            // The flag detrec always adds shows only when the guest asked for it, as Linux's does.
            try effects.write(header + 48, Bytes.i32(got.flags & ~MSG_CMSG_CLOEXEC | flags & MSG_CMSG_CLOEXEC | (truncated ? 0x8 : 0)))   // MSG_CTRUNC
        }

        /// Installs the descriptors the guest's control buffer now names
        /// (alike in both modes; host descriptors only while recording).
        func install(_ c: SyscallCall, received: [Int32], closeOnExec: Bool) throws(Errno) {
            guard controlCapacity > 0 else { return }
            let header = try c.read(self.header, count: headerSize)
            let length = min(Int(Bytes.u64(header, at: 40)), controlCapacity)
            guard length >= 16 else { return }
            let control = try c.read(controlAddress, count: length)
            var index = 0
            var cursor = 0
            while cursor + 16 <= control.count {
                let size = Int(Bytes.u64(control, at: cursor))
                guard size >= 16, size <= control.count - cursor else { break }
                if Int32(bitPattern: Bytes.u32(control, at: cursor + 8)) == SOL_SOCKET,
                   Int32(bitPattern: Bytes.u32(control, at: cursor + 12)) == SCM_RIGHTS {
                    for k in 0..<(size - 16) / 4 {
                        let fd = Int32(bitPattern: Bytes.u32(control, at: cursor + 16 + 4 * k))
                        let host = index < received.count ? received[index] : nil
                        index += 1
                        c.process.files.install(OpenFile(hostFD: c.world.isReplaying ? nil : host, path: "socket:"), at: fd,
                                                closeOnExec: closeOnExec)
                    }
                }
                cursor += (size + 7) & ~7
            }
        }
    }

    /// An iovec array at `address`, checked (EMSGSIZE past UIO_MAXIOV).
    static func iovecs(_ c: SyscallCall, at address: UInt64, count: UInt64) throws(Errno) -> [(UInt64, Int)] {
        guard count <= UInt64(maxVectors) else { throw Errno(EMSGSIZE) }
        let raw = count == 0 ? [] : try c.read(address, count: Int(count) * 16)
        var out: [(UInt64, Int)] = []
        var total = 0
        for k in 0..<Int(count) {
            let base = Bytes.u64(raw, at: k * 16), length = Bytes.u64(raw, at: k * 16 + 8)
            guard length <= UInt64(Int.max), total <= Int.max - Int(length) else { throw .inval }
            total += Int(length)
            out.append((base, Int(length)))
        }
        return out
    }

    /// The struct mmsghdr array of sendmmsg/recvmmsg (vlen at most
    /// UIO_MAXIOV): each header read by `make`, each msg_len checked writable.
    static func headers<Message>(_ c: SyscallCall, _ make: (UInt64) throws(Errno) -> Message) throws(Errno) -> [Message] {
        let count = min(Int(UInt32(truncatingIfNeeded: c.arg(2))), maxVectors)
        var messages: [Message] = []
        for i in 0..<count {
            try c.checkWritable(lengthField(c.arg(1), i), count: 4)
            messages.append(try make(c.arg(1) + UInt64(i * multiSize)))
        }
        return messages
    }

    /// Where the `i`-th struct mmsghdr's msg_len is.
    static func lengthField(_ base: UInt64, _ i: Int) -> UInt64 { base &+ UInt64(i * multiSize + headerSize) }

    /// sendmmsg: each message sent in turn; msg_len of each sent one
    /// written back. An error after the first message ends the call with
    /// the count sent, as Linux's. On a blocking socket while other threads
    /// could run, the messages go out without waiting and the thread parks
    /// until there is room for the rest (as `HostTransfer.write` does for
    /// one buffer), so a reader thread of the same recording gets to run.
    static func sendmmsg(_ c: SyscallCall) throws -> SyscallOutcome {
        let file = try c.file(0)
        let base = c.arg(1)
        let messages = try headers(c) { address throws(Errno) in try Outgoing(c, at: address) }
        let flags = c.int(3)
        let thread = c.process.current
        var progress = MultiProgress(thread.transferred)
        var finished: Int64?
        var failure: Int64?
        if c.interrupted {
            finished = progress.sent(partial: true) > 0 ? Int64(progress.sent(partial: true)) : Errno.intr.result
        } else if flags & SocketSyscalls.MSG_DONTWAIT == 0 {
            let readiness = HostReadiness(fd: file.hostFD ?? -1, events: Int16(POLLOUT))
            let parked = c.park(.host(readiness)) {
                guard HostTransfer.mayWait(file), let h = file.hostFD else { return true }
                while progress.message < messages.count {
                    let m = messages[progress.message]
                    let n = m.data[progress.offset...].withUnsafeBytes {
                        m.send(h, $0, first: progress.offset == 0, flags: flags | SocketSyscalls.MSG_DONTWAIT)
                    }
                    if n == Errno.again.result { thread.transferred = progress.raw; return false }
                    if n < 0 {
                        failure = n
                        finished = progress.message > 0 ? Int64(progress.message) : n
                        return true
                    }
                    progress.advance(by: Int(n), of: m.data.count)
                    thread.transferred = progress.raw
                }
                finished = Int64(messages.count)
                return true
            }
            if let parked { return parked }
        }
        let sentMessages = progress
        let process = c.process
        let r = try c.host { effects throws(Errno) -> Int64 in
            // The messages earlier attempts sent went whole.
            let done = min(sentMessages.message, messages.count)
            for i in 0..<done {
                try effects.write(lengthField(base, i), Bytes.u32(UInt32(truncatingIfNeeded: messages[i].data.count)))
            }
            if let finished {
                // An interrupted one counts with what it sent.
                if finished > Int64(done) { try effects.write(lengthField(base, done), Bytes.u32(UInt32(truncatingIfNeeded: sentMessages.offset))) }
                return finished
            }
            guard let h = file.hostFD else { throw .badf }
            var sent = Int64(done)
            var offset = sentMessages.offset
            guard HostTransfer.mayWait(file), flags & SocketSyscalls.MSG_DONTWAIT == 0 else {
                // A socket that never waits: one host send each.
                for i in done..<messages.count {
                    let m = messages[i]
                    let n = m.data[offset...].withUnsafeBytes { m.send(h, $0, first: offset == 0, flags: flags) }
                    if n < 0 { failure = n; return sent > 0 ? sent : n }
                    try effects.write(lengthField(base, i), Bytes.u32(UInt32(truncatingIfNeeded: Int(n) + offset)))
                    offset = 0
                    sent += 1
                }
                return sent
            }
            // Nothing else could run: each message goes without waiting and
            // detrec waits for room itself, but no longer than until a timer
            // of the process would interrupt the wait (as `HostTransfer.alone`
            // does for write): the message it cut counts with what it sent
            // (Linux's sendmsg returns the partial count), else the call
            // returns the messages sent before, or EINTR.
            for i in done..<messages.count {
                let m = messages[i]
                while true {
                    let n = m.data[offset...].withUnsafeBytes {
                        m.send(h, $0, first: offset == 0, flags: flags | SocketSyscalls.MSG_DONTWAIT)
                    }
                    if n >= 0 {
                        offset += Int(n)
                        if offset >= m.data.count { break }
                        continue
                    }
                    if n != Errno.again.result {
                        if offset > 0 { break }
                        failure = n
                        return sent > 0 ? sent : n
                    }
                    guard TimerSyscalls.waitReady(process, fd: h, events: Int16(POLLOUT)) else {
                        if offset > 0 {
                            try effects.write(lengthField(base, i), Bytes.u32(UInt32(truncatingIfNeeded: offset)))
                            return sent + 1
                        }
                        return sent > 0 ? sent : Errno.intr.result
                    }
                }
                try effects.write(lengthField(base, i), Bytes.u32(UInt32(truncatingIfNeeded: offset)))
                offset = 0
                sent += 1
            }
            return sent
        }
        // What was sent, from each msg_len (written alike in both modes).
        var sentBytes: [UInt8] = []
        for (i, m) in messages.prefix(max(0, Int(r))).enumerated() {
            let n: UInt32 = try c.readValue(lengthField(base, i))
            sentBytes += m.data.prefix(Int(n))
        }
        try FileSyscalls.echo(c, file, sentBytes, Int64(sentBytes.count))
        if (r == Errno.pipe.result || failure == Errno.pipe.result) && flags & SocketSyscalls.MSG_NOSIGNAL == 0 {
            HostTransfer.brokenPipe(c)
        }
        return .result(r)
    }

    /// How far a blocking sendmmsg got in earlier attempts, kept in the
    /// thread's `transferred` (the message index above bit 40, the bytes of
    /// it sent below): a message of no bytes still counts as one sent.
    struct MultiProgress {
        var message: Int
        var offset: Int
        init(_ raw: Int64) {
            message = Int(raw >> 40)
            offset = Int(raw & (1 << 40 - 1))
        }
        var raw: Int64 { Int64(message) << 40 | Int64(offset) }
        mutating func advance(by n: Int, of length: Int) {
            offset += n
            if offset >= length { message += 1; offset = 0 }
        }
        /// Messages sent so far, with a partly sent one when `partial`.
        func sent(partial: Bool) -> Int { message + (partial && offset > 0 ? 1 : 0) }
    }

    /// recvmmsg: messages received in turn in one host part (after the
    /// first, without waiting when MSG_WAITFORONE is set); the timeout is
    /// looked at after each message, as Linux does.
    static func recvmmsg(_ c: SyscallCall) throws -> SyscallOutcome {
        let file = try c.file(0)
        let base = c.arg(1)
        let messages = try headers(c) { address throws(Errno) in try Incoming(c, at: address) }
        let count = messages.count
        let flags = c.int(3)
        let timeout = try DescriptorWait.timespec(c, at: c.arg(4))
        if flags & SocketSyscalls.MSG_DONTWAIT == 0, let parked = c.waitUntilReady(file, events: Int16(POLLIN)) { return parked }
        var received: [[Int32]] = Array(repeating: [], count: count)
        let end = timeout.map { MonotonicInstant.now() + $0 }
        let r = try c.host { effects throws(Errno) -> Int64 in
            guard let h = file.hostFD else { throw .badf }
            var got: Int64 = 0
            var probe = c.process.files
            for (i, m) in messages.enumerated() {
                var f = flags & ~MSG_WAITFORONE
                if i > 0 && flags & MSG_WAITFORONE != 0 { f |= SocketSyscalls.MSG_DONTWAIT }
                let n = try m.receive(h, flags: f, &effects, numbering: &probe, &received[i])
                if n < 0 { return got > 0 ? got : n }
                try effects.write(lengthField(base, i), Bytes.u32(UInt32(truncatingIfNeeded: n)))
                got += 1
                if let end, end.hasPassed { break }
            }
            return got
        }
        for i in 0..<max(0, Int(min(r, Int64(count)))) {
            try messages[i].install(c, received: received[i], closeOnExec: flags & MSG_CMSG_CLOEXEC != 0)
        }
        return .result(r)
    }
}
