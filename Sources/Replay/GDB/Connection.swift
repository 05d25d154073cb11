import Glibc

/// One gdb connection: the socket, the packet decoder, acknowledgement mode,
/// and a non-blocking look for gdb's interrupt byte while the replay runs.
final class GDBConnection {
    let fd: Int32
    private var decoder = PacketDecoder()
    private var pending: [PacketDecoder.Item] = []
    /// After `QStartNoAckMode`: no `+`/`-` either way.
    var noAck = false
    private var lastSent: [UInt8] = []
    /// gdb closed its end.
    private(set) var closed = false

    init(fd: Int32) { self.fd = fd }
    deinit { Glibc.close(fd) }

    /// Blocks for the next item from gdb; nil when it hung up.
    func next() -> PacketDecoder.Item? {
        while true {
            if !pending.isEmpty { return pending.removeFirst() }
            if let item = decoder.next() { return item }
            if closed || !receive(flags: 0) { return nil }
        }
    }

    /// Reads what is there; false at end of stream or on error.
    private func receive(flags: Int32) -> Bool {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, flags) }
            if n > 0 {
                decoder.feed(Array(buffer[0..<n]))
                return true
            }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { return false }
            closed = true
            return false
        }
    }

    /// True when gdb sent its interrupt (0x03) or hung up since the replay
    /// resumed; packets that arrived meanwhile wait their turn.
    func takeInterrupt() -> Bool {
        while receive(flags: Int32(MSG_DONTWAIT)) {}
        while let item = decoder.next() { pending.append(item) }
        if let i = pending.firstIndex(of: .interrupt) {
            pending.remove(at: i)
            return true
        }
        return closed
    }

    func send(_ payload: String) { send(Array(payload.utf8)) }

    func send(_ payload: [UInt8]) {
        lastSent = Packet.frame(payload)
        write(lastSent)
    }

    /// Sends the last packet again (gdb answered `-`).
    func resend() { if !lastSent.isEmpty { write(lastSent) } }

    func acknowledge(_ good: Bool) { if !noAck { write([UInt8(ascii: good ? "+" : "-")]) } }

    private func write(_ bytes: [UInt8]) {
        var done = 0
        while done < bytes.count {
            let n = bytes[done...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { closed = true; return }
            done += n
        }
    }
}
