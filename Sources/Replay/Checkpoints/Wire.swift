import Glibc

/// The bytes replay processes send each other (checkpoint requests, probe
/// answers, the gdb session handed to a restored replayer): little-endian
/// words and length-prefixed strings in a frame with its length first, and
/// file descriptors beside it (SCM_RIGHTS) over an AF_UNIX stream socket.
struct WireWriter {
    var bytes: [UInt8] = []

    mutating func put(_ v: UInt64) { for i in 0..<8 { bytes.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) } }
    mutating func put(_ v: Int) { put(UInt64(bitPattern: Int64(v))) }
    mutating func put(_ v: Int32) { put(Int(v)) }
    mutating func put(_ v: Bool) { put(v ? 1 : 0) }
    mutating func put(_ s: String) {
        let u = Array(s.utf8)
        put(u.count)
        bytes += u
    }
    mutating func put(_ v: UInt64?) {
        put(v != nil)
        put(v ?? 0)
    }
}

/// Reads what `WireWriter` wrote; every read is bounds-checked (a short or
/// damaged message is a `WireError`, never a trap).
struct WireReader {
    private let bytes: [UInt8]
    private var at = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var isAtEnd: Bool { at >= bytes.count }

    mutating func word() throws(WireError) -> UInt64 {
        guard bytes.count - at >= 8 else { throw WireError("a message ended early") }
        var v: UInt64 = 0
        for i in 0..<8 { v |= UInt64(bytes[at + i]) << (8 * UInt64(i)) }
        at += 8
        return v
    }

    mutating func int() throws(WireError) -> Int { Int(Int64(bitPattern: try word())) }

    mutating func int32() throws(WireError) -> Int32 {
        guard let v = Int32(exactly: try int()) else { throw WireError("a value out of range") }
        return v
    }

    mutating func bool() throws(WireError) -> Bool { try word() != 0 }

    mutating func count(limit: Int = 1 << 20) throws(WireError) -> Int {
        let n = try int()
        guard n >= 0, n <= limit else { throw WireError("a count out of range (\(n))") }
        return n
    }

    mutating func string() throws(WireError) -> String {
        let n = try count()
        guard bytes.count - at >= n else { throw WireError("a message ended early") }
        defer { at += n }
        return String(decoding: bytes[at..<at + n], as: UTF8.self)
    }

    mutating func optionalWord() throws(WireError) -> UInt64? {
        let present = try bool()
        let v = try word()
        return present ? v : nil
    }
}

struct WireError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = "checkpoint message: " + d }
}

/// One end of a control socket between replay processes.
enum WireSocket {
    /// A connected pair (both ends close on exec).
    static func pair() throws(WireError) -> (Int32, Int32) {
        var fds: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else {
            throw WireError("socketpair: \(String(cString: strerror(errno)))")
        }
        return (fds[0], fds[1])
    }

    /// Sends one frame and `fds` with its first byte.
    static func send(_ fd: Int32, _ payload: [UInt8], fds: [Int32] = []) throws(WireError) {
        var frame = WireWriter()
        frame.put(payload.count)
        let all = frame.bytes + payload
        var done = 0
        var first = true
        while done < all.count {
            let n: Int = all[done...].withUnsafeBytes { buf -> Int in
                var iov = iovec(iov_base: UnsafeMutableRawPointer(mutating: buf.baseAddress), iov_len: buf.count)
                var msg = msghdr()
                msg.msg_iov = withUnsafeMutablePointer(to: &iov) { $0 }
                msg.msg_iovlen = 1
                guard first, !fds.isEmpty else { return Glibc.sendmsg(fd, &msg, Int32(MSG_NOSIGNAL)) }
                let space = cmsgSpace(fds.count)
                let control = UnsafeMutableRawPointer.allocate(byteCount: space, alignment: 8)
                defer { control.deallocate() }
                memset(control, 0, space)
                let header = control.assumingMemoryBound(to: cmsghdr.self)
                header.pointee.cmsg_len = cmsgLength(fds.count)
                header.pointee.cmsg_level = SOL_SOCKET
                header.pointee.cmsg_type = Int32(SCM_RIGHTS)
                let data = (control + MemoryLayout<cmsghdr>.size).assumingMemoryBound(to: Int32.self)
                for (i, f) in fds.enumerated() { data[i] = f }
                msg.msg_control = control
                msg.msg_controllen = space
                return withExtendedLifetime(iov) { Glibc.sendmsg(fd, &msg, Int32(MSG_NOSIGNAL)) }
            }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw WireError("send: \(String(cString: strerror(errno)))") }
            done += n
            first = false
        }
    }

    /// Receives one frame and the descriptors that came with it; nil at
    /// the end of the stream (the other side closed).
    static func receive(_ fd: Int32) throws(WireError) -> (payload: [UInt8], fds: [Int32])? {
        var fds: [Int32] = []
        guard let head = try read(fd, 8, fds: &fds) else { return nil }
        var r = WireReader(head)
        let n = try r.count(limit: 64 << 20)
        guard let body = try read(fd, n, fds: &fds) else { throw WireError("a frame ended early") }
        return (body, fds)
    }

    private static func read(_ fd: Int32, _ count: Int, fds: inout [Int32]) throws(WireError) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: count)
        var done = 0
        let maxFDs = 64
        let space = cmsgSpace(maxFDs)
        let control = UnsafeMutableRawPointer.allocate(byteCount: space, alignment: 8)
        defer { control.deallocate() }
        while done < count {
            let n: Int = out.withUnsafeMutableBytes { buf -> Int in
                var iov = iovec(iov_base: buf.baseAddress! + done, iov_len: count - done)
                var msg = msghdr()
                msg.msg_iov = withUnsafeMutablePointer(to: &iov) { $0 }
                msg.msg_iovlen = 1
                msg.msg_control = control
                msg.msg_controllen = space
                let n = withExtendedLifetime(iov) { Glibc.recvmsg(fd, &msg, Int32(MSG_CMSG_CLOEXEC)) }
                if n > 0, msg.msg_controllen >= MemoryLayout<cmsghdr>.size {
                    let header = control.assumingMemoryBound(to: cmsghdr.self)
                    if header.pointee.cmsg_level == SOL_SOCKET, header.pointee.cmsg_type == Int32(SCM_RIGHTS) {
                        let k = (Int(header.pointee.cmsg_len) - MemoryLayout<cmsghdr>.size) / 4
                        let data = (control + MemoryLayout<cmsghdr>.size).assumingMemoryBound(to: Int32.self)
                        for i in 0..<max(0, min(k, maxFDs)) { fds.append(data[i]) }
                    }
                }
                return n
            }
            if n < 0 && errno == EINTR { continue }
            if n == 0 && done == 0 { return nil }
            guard n > 0 else { throw WireError("receive: \(n == 0 ? "the other side closed" : String(cString: strerror(errno)))") }
            done += n
        }
        return out
    }

    private static func cmsgLength(_ n: Int) -> Int { MemoryLayout<cmsghdr>.size + 4 * n }
    private static func cmsgSpace(_ n: Int) -> Int { MemoryLayout<cmsghdr>.size + ((4 * n + 7) & ~7) }
}
